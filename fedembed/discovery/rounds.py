"""The server's discovery rounds over Flower's Grid, before training: candidates down, noisy sum back.

`ensure` runs once per run: the simulated clients' own words are written (local_words.py), the
rounds run until the protocol is done, and the discovered words become the run's `vocab.tsv`,
which preparation then uses as it uses a public vocabulary. After every round the state is
saved (`discovery/state.json`): a killed run resumes at the next round, and a run whose
vocabulary exists spends nothing again. Which clients vote is a Poisson draw from secret
randomness at the params' rate (every client by default); the round's number for SecAgg+ is
ROUND_BASE + the attempts so far (an aborted secure round is retried under a new number),
apart from training's 1, 2, …
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from fedembed.discovery import local_words, protocol, wire
from fedembed.discovery.alphabet import Alphabet
from fedembed.discovery.params import DiscoveryParams, resolve
from fedembed.discovery.protocol import DiscoveryState
from fedembed.discovery.transport import PlainVotes, SecureVotes
from fedembed.errors import CorpusError, FedembedError
from fedembed.vocab import Vocabulary

log = logging.getLogger(__name__)

ROUND_BASE = 1_000_000
MAX_ABORTS = 3          # secure rounds of one step that may abort in a row before the run stops


def state_path(run_dir: Path) -> Path:
    return Path(run_dir) / "discovery" / "state.json"


def scenario_key(cfg) -> dict:
    """What the discovery's outcome depends on: a saved state made under other settings is not resumed."""
    d = cfg.to_dict()
    return {k: d[k] for k in ("seed", "data", "vocab", "partition", "secagg")} | {
        "privacy": {k: d["privacy"][k] for k in ("delta", "accountant")}}


def load_state(cfg, run_dir: Path) -> DiscoveryState:
    path = state_path(run_dir)
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("scenario") == scenario_key(cfg):
            return DiscoveryState.from_dict(saved["state"])
        log.warning("%s was made under other settings: the discovery starts over", path)
    return DiscoveryState()


def save_state(cfg, run_dir: Path, state: DiscoveryState) -> None:
    path = state_path(run_dir)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"scenario": scenario_key(cfg), "state": state.to_dict()}), encoding="utf-8")
    tmp.replace(path)


def vocabulary(state: DiscoveryState, max_size: int = 0) -> Vocabulary:
    """The discovered words, most voted first; counts by Zipf's law on that rank (as a word list
    without counts gets them: fedembed.vocab.read_word_list), since no one reveals a count."""
    words = [w for w, _ in state.vocabulary()]
    if max_size:
        words = words[:max_size]
    top = 10 * len(words)
    return Vocabulary(words, np.array([max(1, top // (r + 1)) for r in range(len(words))], dtype=np.int64))


def ensure(grid, cfg, run_dir: Path, nodes: dict[int, int] | None = None) -> Vocabulary:
    """The run's discovered vocabulary (`run_dir/vocab.tsv`): found now, or as a resumed run left it."""
    from fedembed.federation.server import discover_partitions
    from fedembed.privacy.sampling import poisson_sample, secret_rng

    run_dir = Path(run_dir)
    state = load_state(cfg, run_dir)
    if state.done and (run_dir / "vocab.tsv").is_file():
        return Vocabulary.load(run_dir / "vocab.tsv")
    params = resolve(cfg)
    words_dir, manifest = local_words.prepare(cfg, run_dir)
    nodes = nodes if nodes is not None else discover_partitions(grid, cfg.partition.num_clients)
    active = [p for p in manifest.active if p in nodes]
    transport = SecureVotes(cfg) if cfg.secagg.enabled else PlainVotes(cfg)
    alphabet = Alphabet(params.alphabet, params.max_length)
    aborts = 0
    while not state.done:
        aborts = _round(grid, cfg, params, state, transport, nodes, active, alphabet, str(words_dir.resolve()),
                        poisson_sample(active, params.sample_rate, secret_rng()), aborts)
        save_state(cfg, run_dir, state)
    vocab = vocabulary(state, cfg.vocab.max_size)
    if len(vocab) == 0:
        raise CorpusError(f"the discovery found no word held by enough clients (vocab.discovery.epsilon = "
                          f"{cfg.vocab.discovery.epsilon:g}, {len(active)} clients): raise the epsilon or the clients")
    log.info("discovery: %d words in %d rounds", len(vocab), len(state.rounds))
    vocab.save(run_dir / "vocab.tsv")
    return vocab


def _round(grid, cfg, params: DiscoveryParams, state: DiscoveryState, transport, nodes, active, alphabet,
           words_dir: str, voters: list[int], aborts: int) -> int:
    """One round: offer the candidates, take the noisy sum in. Returns the count of aborts in a row."""
    dom = protocol.domain(state, params)
    z = protocol.noise_multiplier(state, params)
    t0 = time.perf_counter()
    state.attempts += 1           # every attempt its own round number: a retry draws fresh (test) dropouts
    got = transport.collect(grid, nodes, ROUND_BASE + state.attempts - 1, voters,
                            wire.vote_content(state.step, dom, alphabet, words_dir), dom.size, z)
    if got.noisy is None:
        if aborts + 1 >= MAX_ABORTS:
            raise FedembedError(f"discovery round {state.step}: secure aggregation aborted {MAX_ABORTS} times in a "
                                f"row ({got.aborted})")
        return aborts + 1
    protocol.absorb(state, params, dom, got.noisy, got.noise_multiplier,
                    {"noise_multiplier": got.noise_multiplier, "calibrated_noise_multiplier": z,
                     "sample_rate": params.sample_rate, "voters": got.voters, "asked": len(voters),
                     "transport": transport.name, "seconds": round(time.perf_counter() - t0, 4), "wire": got.record})
    r = state.rounds[-1]
    log.info("discovery round %d (%s): %d slots, %d voters, z = %.3g; %s", r["step"], r["kind"], r["slots"],
             r["voters"], r["noise_multiplier"],
             f"{r['prefixes']} prefixes, {len(state.candidates)} candidates" if r["kind"] == "trie"
             else f"{r['kept']} words kept")
    return 0
