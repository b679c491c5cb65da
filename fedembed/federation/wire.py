"""What travels in Flower messages, in one place: record names and (de)serialisation.

Down: the global tables (`ArrayRecord` "global") and a `ConfigRecord` "train" with the
round's learning-rate range, seed and the resolved scenario. Up: the weighted delta
("update"), the per-row weights ("weights") and a `MetricRecord` "metrics"; a sparse upload
(`federation.sparse_upload`, plain path) sends only touched rows of both, their indices in
"rows". With record-level DP on, a `ConfigRecord` "record_dp" carries the node's accountant
state up in every plain reply, and down to a node that lost it (a resumed run) when the server
puts it in `TrainInstruction`. A secure (SecAgg+) reply is the masked vector alone
(fedembed/federation/secure_client.py): no metrics, no accountant state.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from fedembed.federation import sparse as sparse_mod

GLOBAL, VOCAB, TRAIN, UPDATE, WEIGHTS, METRICS = "global", "vocab", "train", "update", "weights", "metrics"
NODE = "node"
RECORD_DP = "record_dp"   # ConfigRecord: a node's record-level DP accountant state (up; down on resume)
ROWS = "rows"             # ArrayRecord: a sparse upload's row indices (fedembed/federation/sparse.py)
FAMILY_STATE = "family_state"  # ArrayRecord in a node's `context.state` only: the family's private arrays


@dataclass
class TrainInstruction:
    round: int
    lr_start: float
    lr_end: float
    seed: int
    config: dict[str, Any]       # the resolved scenario (fedembed.config.Config.to_dict()), with
                                 # privacy.clip set to this round's C (adaptive clipping moves it)
    shard_dir: str               # where simulated clients find their shard ("" = node's own data)
    record_dp: dict[str, Any] | None = None  # the node's record-level accountant state, as the server last saw it
    vocab_fingerprint: str = ""  # the server's vocabulary (words and counts): a device checks the one it builds
    config_text: str = ""        # `config` as it came (JSON): what a client parses, with a cache


def arrays(tables: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in tables.items()})


def from_arrays(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: a.numpy() for k, a in record.items()}


def train_content(global_record: ArrayRecord, vocab_record: ArrayRecord, ins: TrainInstruction) -> RecordDict:
    """`vocab_record` holds the public word counts (subsampling and negatives need them)."""
    cfg = ConfigRecord({"round": ins.round, "lr_start": ins.lr_start, "lr_end": ins.lr_end, "seed": ins.seed,
                        "config": json.dumps(ins.config), "shard_dir": ins.shard_dir,
                        "vocab_fingerprint": ins.vocab_fingerprint})
    content = RecordDict({GLOBAL: global_record, VOCAB: vocab_record, TRAIN: cfg})
    return with_record_dp(content, ins.record_dp) if ins.record_dp is not None else content


def parse_train(content: RecordDict) -> tuple[dict[str, np.ndarray], np.ndarray, TrainInstruction]:
    c = content.config_records[TRAIN]
    text = str(c["config"])
    ins = TrainInstruction(int(c["round"]), float(c["lr_start"]), float(c["lr_end"]), int(c["seed"]),
                           json.loads(text), str(c["shard_dir"]), parse_record_dp(content),
                           str(c.get("vocab_fingerprint", "")), text)
    counts = content.array_records[VOCAB]["counts"].numpy()
    return from_arrays(content.array_records[GLOBAL]), counts, ins


def node_content(partition_id: int, num_partitions: int) -> RecordDict:
    return RecordDict({NODE: ConfigRecord({"partition_id": partition_id, "num_partitions": num_partitions})})


def parse_node(content: RecordDict) -> tuple[int, int]:
    c = content.config_records[NODE]
    return int(c["partition_id"]), int(c["num_partitions"])


def reply_content(tables: dict[str, np.ndarray], weights: dict[str, np.ndarray],
                  metrics: dict[str, float], record_dp: dict[str, Any] | None = None,
                  sparse: bool = False) -> RecordDict:
    """`sparse`: only the rows with a non-zero update or weight, plus their indices (same sums)."""
    sparse = sparse and set(weights) == set(tables)  # anything else goes dense, for the server to refuse
    if sparse:
        tables, weights, rows = sparse_mod.pack(tables, weights)
    records = {UPDATE: arrays(tables), WEIGHTS: arrays(weights), **({ROWS: arrays(rows)} if sparse else {})}
    content = RecordDict({**records, METRICS: MetricRecord({k: float(v) for k, v in metrics.items()})})
    return with_record_dp(content, record_dp) if record_dp is not None else content


def with_record_dp(content: RecordDict, state: dict[str, Any]) -> RecordDict:
    """`content` plus a node's record-level accountant state (a shallow copy: one train message
    is shared by every node, each node's state is its own)."""
    out = RecordDict(dict(content.items()))
    put_record_dp(out, state)
    return out


def put_record_dp(content: RecordDict, state: dict[str, Any]) -> None:
    """Store a node's accountant state in `content`: a message, or the node's `context.state`."""
    content[RECORD_DP] = record_dp_record(state)


def record_dp_record(state: dict[str, Any]) -> ConfigRecord:
    return ConfigRecord({"state": json.dumps(state)})


def parse_record_dp(content: RecordDict) -> dict[str, Any] | None:
    """The accountant state in a message or in a node's `context.state`; None when there is none."""
    record = content.config_records.get(RECORD_DP)
    return json.loads(str(record["state"])) if record is not None else None


def family_state(node_state: RecordDict) -> dict[str, np.ndarray]:
    """The family's private arrays kept in a node's `context.state` (e.g. a user's row); {} at first."""
    record = node_state.array_records.get(FAMILY_STATE)
    return from_arrays(record) if record is not None else {}


def put_family_state(node_state: RecordDict, state: dict[str, np.ndarray]) -> None:
    """Keep the family's private arrays in the node's `context.state` (never put into a message)."""
    if state:
        node_state[FAMILY_STATE] = arrays(state)


def _reply_parts(content: RecordDict) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, float]]:
    from fedembed.errors import UpdateError

    for name in (UPDATE, WEIGHTS):
        if name not in content.array_records:
            raise UpdateError(f"reply has no {name!r} record")
    metrics = dict(content.metric_records[METRICS]) if METRICS in content.metric_records else {}
    for k, v in metrics.items():
        if isinstance(v, list):
            raise UpdateError(f"reply's metric {k!r} is a list, expected a number")
    return _reply_arrays(content, UPDATE), _reply_arrays(content, WEIGHTS), {k: float(v) for k, v in metrics.items()}


def _reply_arrays(content: RecordDict, name: str) -> dict[str, np.ndarray]:
    """A reply's record as arrays; bytes that are no array (garbage, a pickled object) are an
    UpdateError, like any other malformed reply, not an exception that ends the round."""
    try:
        return from_arrays(content.array_records[name])
    except (ValueError, TypeError, EOFError, OSError) as exc:
        from fedembed.errors import UpdateError
        raise UpdateError(f"reply's {name!r} record holds an unreadable array ({' '.join(str(exc).split())})") from exc


def parse_reply(content: RecordDict, shapes: dict[str, tuple[int, ...]] | None = None
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, float]]:
    """Dense tables and weights; a sparse reply is checked and expanded against `shapes`."""
    tables, weights, metrics = _reply_parts(content)
    if ROWS in content.array_records:
        tables, weights = sparse_mod.unpack(tables, weights, _reply_arrays(content, ROWS), shapes)
    return tables, weights, metrics


def parse_sparse_reply(content: RecordDict, shapes: dict[str, tuple[int, ...]]
                       ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray],
                                  dict[str, float]] | None:
    """A sparse reply as it came, checked against `shapes`: (rows' values, their weights, row
    indices, metrics); None for a dense reply. For sinks that add rows in place
    (`Accumulator.add_rows`) instead of expanding every reply to dense tables."""
    if ROWS not in content.array_records:
        return None
    values, weights, metrics = _reply_parts(content)
    rows = _reply_arrays(content, ROWS)
    sparse_mod.check(values, weights, rows, shapes)
    return values, weights, rows, metrics


def sparse_upload(config: dict[str, Any]) -> bool:
    """Whether a client sends rows only: `federation.sparse_upload` on the plain path (secure
    aggregation sums dense masked vectors, so it always gets dense ones)."""
    return bool(config.get("federation", {}).get("sparse_upload")) and not config.get("secagg", {}).get("enabled")


def nbytes(content: RecordDict) -> int:
    return sum(r.count_bytes() for r in content.array_records.values())
