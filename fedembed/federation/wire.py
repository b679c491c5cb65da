"""What travels in Flower messages, in one place: record names and (de)serialisation.

Down: the global tables (`ArrayRecord` "global") and a `ConfigRecord` "train" with the
round's learning-rate range, seed and the resolved scenario. Up: the weighted delta
("update"), the per-row weights ("weights") and a `MetricRecord` "metrics".
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

GLOBAL, VOCAB, TRAIN, UPDATE, WEIGHTS, METRICS = "global", "vocab", "train", "update", "weights", "metrics"
NODE = "node"


@dataclass
class TrainInstruction:
    round: int
    lr_start: float
    lr_end: float
    seed: int
    config: dict[str, Any]       # the resolved scenario (fedembed.config.Config.to_dict())
    shard_dir: str               # where simulated clients find their shard ("" = node's own data)


def arrays(tables: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in tables.items()})


def from_arrays(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: a.numpy() for k, a in record.items()}


def train_content(global_record: ArrayRecord, vocab_record: ArrayRecord, ins: TrainInstruction) -> RecordDict:
    """`vocab_record` holds the public word counts (subsampling and negatives need them)."""
    cfg = ConfigRecord({"round": ins.round, "lr_start": ins.lr_start, "lr_end": ins.lr_end, "seed": ins.seed,
                        "config": json.dumps(ins.config), "shard_dir": ins.shard_dir})
    return RecordDict({GLOBAL: global_record, VOCAB: vocab_record, TRAIN: cfg})


def parse_train(content: RecordDict) -> tuple[dict[str, np.ndarray], np.ndarray, TrainInstruction]:
    c = content.config_records[TRAIN]
    ins = TrainInstruction(int(c["round"]), float(c["lr_start"]), float(c["lr_end"]), int(c["seed"]),
                           json.loads(str(c["config"])), str(c["shard_dir"]))
    counts = content.array_records[VOCAB]["counts"].numpy()
    return from_arrays(content.array_records[GLOBAL]), counts, ins


def node_content(partition_id: int, num_partitions: int) -> RecordDict:
    return RecordDict({NODE: ConfigRecord({"partition_id": partition_id, "num_partitions": num_partitions})})


def parse_node(content: RecordDict) -> tuple[int, int]:
    c = content.config_records[NODE]
    return int(c["partition_id"]), int(c["num_partitions"])


def reply_content(tables: dict[str, np.ndarray], weights: dict[str, np.ndarray],
                  metrics: dict[str, float]) -> RecordDict:
    return RecordDict({UPDATE: arrays(tables), WEIGHTS: arrays(weights),
                       METRICS: MetricRecord({k: float(v) for k, v in metrics.items()})})


def parse_reply(content: RecordDict) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, float]]:
    for name in (UPDATE, WEIGHTS):
        if name not in content.array_records:
            from fedembed.errors import UpdateError
            raise UpdateError(f"reply has no {name!r} record")
    metrics = dict(content.metric_records[METRICS]) if METRICS in content.metric_records else {}
    return (from_arrays(content.array_records[UPDATE]), from_arrays(content.array_records[WEIGHTS]),
            {k: float(v) for k, v in metrics.items()})


def nbytes(content: RecordDict) -> int:
    return sum(r.count_bytes() for r in content.array_records.values())
