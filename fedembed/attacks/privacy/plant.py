"""Data stage of the privacy attacks: plant canaries in one client's shard, hold sentences out.

`plant` runs once the shards are written (fedembed/data/prepare.py calls it), so the
federation and the gensim baseline train on exactly what it records in
`<run>/privacy_attacks/planted.npz`:

- canaries (Carlini et al. 2019): random sequences of vocabulary words, drawn i.i.d. and
  uniformly; the first `canaries` are inserted `canary_repetitions` times each at random
  places in the target client's shard, the next `canaries` are never inserted (controls,
  for the exposure a canary gets by chance) and the remaining `candidates` are the
  reference set each one is ranked against. Which draws get planted is random, so planted
  and reference canaries come from one distribution: the game the empirical ε audits.
- non-members for membership inference: `non_members` sentences drawn uniformly from
  every client's data and removed before training.

The draws use the scenario's seed: the planted set is the auditor's, not a secret.
"""
from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedembed.data.shards import (PACKED_ABOVE, Manifest, is_packed, load_shard, load_units, shard_paths,
                                  units_path)
from fedembed.vocab import Vocabulary

log = logging.getLogger(__name__)
ATTACK_DIR = "privacy_attacks"
PLANTED = "planted.npz"
_SEED_TAG = 0x5EED_A77A   # keeps these draws apart from the partitioner's, which use the bare seed


@dataclass
class Planted:
    target: int
    repetitions: int
    inserted: np.ndarray          # [n, L] token ids of the planted canaries
    controls: np.ndarray          # [n, L] drawn like them, never planted
    references: np.ndarray        # [m, L] the candidate set, never planted
    canary_sentences: np.ndarray  # sentence indices of the inserted copies in the target's shard
    heldout_ids: np.ndarray       # non-members: token ids, concatenated
    heldout_bounds: np.ndarray    # and their end offsets

    def heldout(self) -> list[np.ndarray]:
        starts = np.concatenate(([0], self.heldout_bounds[:-1])) if len(self.heldout_bounds) else []
        return [self.heldout_ids[s:e] for s, e in zip(starts, self.heldout_bounds)]

    def save(self, run_dir: Path) -> None:
        d = Path(run_dir) / ATTACK_DIR
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / (PLANTED + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, **{k: np.asarray(v) for k, v in self.__dict__.items()})
        tmp.replace(d / PLANTED)

    @classmethod
    def load(cls, run_dir: Path) -> "Planted | None":
        path = Path(run_dir) / ATTACK_DIR / PLANTED
        if not path.is_file():
            return None
        with np.load(path) as z:
            return cls(**{k: (z[k].item() if z[k].ndim == 0 else z[k]) for k in z.files})


def _rng(cfg) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, _SEED_TAG])


def _split(ids: np.ndarray, bounds: np.ndarray) -> list[np.ndarray]:
    starts = np.concatenate(([0], bounds[:-1]))
    return [ids[s:e] for s, e in zip(starts, bounds)]


def _write(shard_dir: Path, client: int, sentences: list[np.ndarray], units: np.ndarray) -> tuple[int, int, int]:
    """Rewrite one shard (ids, bounds, units) from its sentences; returns (tokens, sentences, units).

    Unit indices are renumbered 0..k-1 (order kept): a unit whose sentences were all held out
    must not linger as an empty sample of record-level DP."""
    ids_path, bounds_path = shard_paths(shard_dir, client)
    units = np.unique(units, return_inverse=True)[1].reshape(-1)
    ids = np.concatenate(sentences).astype(np.int32) if sentences else np.empty(0, np.int32)
    bounds = np.cumsum([len(s) for s in sentences], dtype=np.int64)
    for path, arr in ((ids_path, ids), (bounds_path, bounds), (units_path(shard_dir, client), units.astype(np.int32))):
        tmp = path.with_name(path.name + ".tmp")
        arr.tofile(tmp)
        tmp.replace(path)
    return len(ids), len(sentences), len(np.unique(units))


def _hold_out(cfg, manifest: Manifest, rng: np.random.Generator,
              edits: dict[int, tuple[list[np.ndarray], np.ndarray]]) -> list[np.ndarray]:
    """Remove `non_members` sentences (of ≥ 2 tokens) drawn uniformly over the active clients.

    A sentence whose text occurs more than once in the corpus is never held out: its twin
    would stay in training and make a "non-member" a member."""
    want = cfg.privacy_attacks.non_members
    seen = Counter(s.tobytes() for c in manifest.active for s in edits[c][0])
    pool: list[tuple[int, int]] = []
    for c in manifest.active:
        sents, _ = edits[c]
        pool += [(c, i) for i, s in enumerate(sents) if len(s) >= 2 and seen[s.tobytes()] == 1]
    take = min(want, len(pool) // 2)   # leave at least as many members as non-members
    if take < want:
        log.warning("privacy_attacks.non_members = %d, but only %d sentences can be held out of %d eligible",
                    want, take, len(pool))
    chosen = sorted((pool[i] for i in rng.choice(len(pool), size=take, replace=False)), reverse=True)
    heldout = []
    for c, i in chosen:   # descending indices: deleting one never shifts the next
        sents, units = edits[c]
        heldout.append(sents.pop(i))
        edits[c] = (sents, np.delete(units, i))
    return heldout[::-1]


def _insert(cfg, rng: np.random.Generator, sents: list[np.ndarray], units: np.ndarray,
            inserted: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """The canaries' copies at uniformly random places among the client's sentences, each its own unit."""
    reps = cfg.privacy_attacks.canary_repetitions
    copies = np.repeat(np.arange(len(inserted)), reps)
    total = len(sents) + len(copies)
    slots = np.zeros(total, dtype=bool)
    slots[rng.choice(total, size=len(copies), replace=False)] = True
    rng.shuffle(copies)
    out: list[np.ndarray] = []
    out_units = np.empty(total, dtype=np.int64)
    next_unit = int(units.max()) + 1 if len(units) else 0
    own, planted = iter(range(len(sents))), iter(copies)
    for j in range(total):
        if slots[j]:
            out.append(inserted[next(planted)].astype(np.int32))
            out_units[j] = next_unit
            next_unit += 1
        else:
            i = next(own)
            out.append(sents[i])
            out_units[j] = units[i]
    return out, out_units, np.flatnonzero(slots)


def plant(cfg, vocab: Vocabulary, run_dir: Path, shard_dir: Path, manifest: Manifest) -> Manifest:
    """Edit the shards for the attacks the scenario turns on; returns the manifest that matches them."""
    a = cfg.privacy_attacks
    if not (a.canary or a.membership):
        return manifest
    if is_packed(shard_dir):
        from fedembed.errors import ConfigError
        raise ConfigError(f"privacy_attacks.canary / membership edit each client's shard, which a federation of "
                          f"more than {PACKED_ABOVE} clients keeps packed together: use fewer clients for them")
    rng = _rng(cfg)
    touched = set(manifest.active) if a.membership else set()
    if a.canary:
        touched.add(a.target_client)
    edits: dict[int, tuple[list[np.ndarray], np.ndarray]] = {}
    for c in sorted(touched):
        ids, bounds = load_shard(shard_dir, c)
        edits[c] = (_split(ids, bounds), load_units(shard_dir, c, len(bounds)))
    heldout = _hold_out(cfg, manifest, rng, edits) if a.membership else []
    n, length = a.canaries, a.canary_length
    draws = rng.integers(0, len(vocab), size=(2 * n + a.candidates, length)) if a.canary else np.empty((0, length))
    inserted, controls, refs = draws[:n], draws[n:2 * n], draws[2 * n:]
    canary_sentences = np.empty(0, dtype=np.int64)
    if a.canary:
        sents, units = edits[a.target_client]
        sents, units, canary_sentences = _insert(cfg, rng, sents, units, inserted)
        edits[a.target_client] = (sents, units)
    tokens, sentences, unit_counts = list(manifest.tokens), list(manifest.sentences), list(manifest.units)
    for c, (sents, units) in edits.items():
        tokens[c], sentences[c], unit_counts[c] = _write(shard_dir, c, sents, units)
    skipped = [c for c in range(manifest.num_clients) if tokens[c] < cfg.partition.min_tokens]
    hb = np.cumsum([len(s) for s in heldout], dtype=np.int64)
    Planted(a.target_client, a.canary_repetitions, inserted.astype(np.int64), controls.astype(np.int64),
            refs.astype(np.int64), canary_sentences.astype(np.int64),
            np.concatenate(heldout).astype(np.int32) if heldout else np.empty(0, np.int32), hb).save(run_dir)
    _write_readable(run_dir, vocab, inserted, controls)
    log.info("privacy attacks: %d canaries x %d planted in client %d, %d sentences held out",
             len(inserted), a.canary_repetitions, a.target_client, len(heldout))
    return dataclasses.replace(manifest, tokens=tokens, sentences=sentences, units=unit_counts, skipped=skipped)


def _write_readable(run_dir: Path, vocab: Vocabulary, inserted: np.ndarray, controls: np.ndarray) -> None:
    lines = [f"{kind}\t{' '.join(vocab.words[i] for i in row)}"
             for kind, rows in (("planted", inserted), ("control", controls)) for row in rows]
    (Path(run_dir) / ATTACK_DIR / "canaries.tsv").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
