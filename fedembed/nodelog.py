"""Lines a client node shows in its log: Flower's (what a SuperNode's log shows) and ours.

Every deployed ClientApp reports its round's peak memory here; a device reports tokenizing
its corpus (fedembed/data/device.py).
"""
from __future__ import annotations

import logging
import os
import resource
import sys

log = logging.getLogger(__name__)

MEMORY_ENV = "FEDEMBED_LOG_MEMORY"  # "1": log the peak memory of every round also without a data-path


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def report(message: str) -> None:
    """To Flower's log (what the SuperNode's log shows) and to ours."""
    from logging import INFO

    from flwr.common.logger import log as flwr_log

    flwr_log(INFO, message)
    log.debug(message)


def log_round_memory(rnd: int, partition_id: int, seconds: float, data_path: str | None) -> None:
    """One line per round with the ClientApp's peak memory (the node's peak so far in process;
    under `flower-supernode` each round is a fresh process, so that round's peak). Only on a deployed node (one with
    its own `data-path`, or started with FEDEMBED_LOG_MEMORY=1 as `fedembed deploy` does): in
    simulation many clients share a process and the figure would mean little."""
    if not data_path and os.environ.get(MEMORY_ENV) != "1":
        return
    report(f"fedembed client: partition {partition_id} round {rnd}: trained in {seconds:.1f}s, "
           f"peak memory {peak_rss_mb():.1f} MB (ru_maxrss)")
