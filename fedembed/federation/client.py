"""One client's round: load the shard, train locally from the global state, build the update."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from fedembed import aggregate, config as config_mod, models
from fedembed.data.shards import load_shard
from fedembed.federation.wire import TrainInstruction
from fedembed.updates import ClientUpdate, delta, run_pipeline, stages_for


def train_round(global_tables: dict[str, np.ndarray], counts: np.ndarray, ins: TrainInstruction,
                partition_id: int, data_path: str | None = None) -> ClientUpdate:
    t0 = time.perf_counter()
    cfg = config_mod.from_dict(ins.config)
    torch.set_num_threads(max(1, int(cfg.simulation.num_cpus_per_client)))
    shard_dir = Path(data_path) if data_path else Path(ins.shard_dir)
    ids, bounds = load_shard(shard_dir, partition_id)
    family = models.make(cfg)
    seed = int(np.random.SeedSequence([cfg.seed, ins.round, partition_id]).generate_state(1)[0])
    result = family.train_local(global_tables, ids, bounds, counts,
                                ins.lr_start, ins.lr_end, seed)
    rule = aggregate.make(cfg)
    update = delta(result.tables, global_tables, rule.client_weights(result.row_counts, result.examples))
    update.metrics = {"loss": result.loss, "examples": float(result.examples), "words": float(result.words),
                      "train_seconds": time.perf_counter() - t0}
    return run_pipeline(update, stages_for(cfg))
