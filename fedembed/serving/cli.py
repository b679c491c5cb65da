"""`fedembed serve RUN_DIR`: the subcommand, kept here so fedembed/cli.py only registers it.

Its flags are checked, and the BLAS thread count set, before anything loads numpy: OpenBLAS
reads its thread count once, when numpy is imported, so this module and what builds the
parser import nothing heavy (tests/test_cli_startup.py holds them to it).
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import threading
from pathlib import Path

from fedembed.errors import FedembedError
from fedembed.serving.limits import (DEFAULT_MAX_BATCH, DEFAULT_MAX_CONCURRENT_RPCS, DEFAULT_MAX_MESSAGE_BYTES,
                                     MAX_BATCH, MAX_MESSAGE_BYTES, Limits)

log = logging.getLogger(__name__)
MIB = 1024 * 1024
BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def add_serve_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    s = sub.add_parser("serve", help="serve a trained run's vectors over gRPC (EmbeddingService + health)")
    s.add_argument("run_dir", help="run directory (embeddings.bin/.txt + report.json) or a vectors file")
    s.add_argument("--port", type=int, required=True, help="TCP port; 0 picks a free one (printed)")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1; any other without TLS is warned about)")
    s.add_argument("--tls-cert", help="PEM certificate chain; with --tls-key serves TLS only")
    s.add_argument("--tls-key", help="PEM private key of --tls-cert")
    s.add_argument("--tls-client-ca", help="PEM CA that client certificates must chain to (mutual TLS)")
    s.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH,
                   help=f"most words / pairs / k per request (default {DEFAULT_MAX_BATCH})")
    s.add_argument("--max-message-mb", type=float, default=DEFAULT_MAX_MESSAGE_BYTES / MIB,
                   help=f"largest request or response in MiB (default {DEFAULT_MAX_MESSAGE_BYTES // MIB}, "
                        f"at most {MAX_MESSAGE_BYTES // MIB})")
    s.add_argument("--max-concurrent", type=int, default=DEFAULT_MAX_CONCURRENT_RPCS,
                   help=f"calls admitted at once; the next is refused RESOURCE_EXHAUSTED instead of queueing "
                        f"(default {DEFAULT_MAX_CONCURRENT_RPCS})")
    s.add_argument("--workers", type=int, default=4, help="server threads (default 4)")
    s.add_argument("--blas-threads", type=int, default=1,
                   help="BLAS threads per query (default 1: concurrent queries each spinning up several "
                        "BLAS threads contend for the cores; see docs/BENCHMARKS.md, Serving)")
    s.set_defaults(func=serve_command)


def limits_from(args: argparse.Namespace) -> Limits:
    """The flags' Limits, or FedembedError naming the flag (NaN, infinities and sizes gRPC cannot
    take included)."""
    if not 1 <= args.max_batch <= MAX_BATCH:
        raise FedembedError(f"--max-batch must be 1 to {MAX_BATCH}, got {args.max_batch}")
    mb = args.max_message_mb
    lo, hi = 0.001, MAX_MESSAGE_BYTES // MIB  # 0.001 MiB is above MIN_MESSAGE_BYTES
    if not (math.isfinite(mb) and lo <= mb <= hi):
        raise FedembedError(f"--max-message-mb must be between {lo:g} and {hi} (MiB), got {mb:g}")
    if args.max_concurrent < 1:
        raise FedembedError(f"--max-concurrent must be at least 1, got {args.max_concurrent}")
    return Limits(args.max_batch, min(int(mb * MIB), MAX_MESSAGE_BYTES), args.max_concurrent)


def check_arguments(args: argparse.Namespace) -> None:
    """Every flag mistake, before anything is loaded."""
    if args.blas_threads < 1:
        raise FedembedError(f"--blas-threads must be at least 1, got {args.blas_threads}")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise FedembedError("--tls-cert and --tls-key go together")
    if args.tls_client_ca and not args.tls_cert:
        raise FedembedError("--tls-client-ca needs --tls-cert and --tls-key")
    if not 0 <= args.port <= 65535:
        raise FedembedError(f"--port must be 0..65535, got {args.port}")
    if args.workers < 1:
        raise FedembedError(f"--workers must be at least 1, got {args.workers}")
    if not args.host:
        raise FedembedError("--host is empty")


def _limit_blas_threads(n: int) -> None:
    """OpenBLAS/OpenMP read their thread count when numpy loads, so set it before that; once
    numpy is loaded (serve called in-process) the environment is left alone."""
    if "numpy" in sys.modules:
        log.warning("numpy is already loaded; --blas-threads %d does not take effect", n)
        return
    for var in BLAS_ENV:
        os.environ[var] = str(n)


def serve_command(args: argparse.Namespace) -> int:
    check_arguments(args)
    limits = limits_from(args)
    if not Path(args.run_dir).exists():  # load_model says so too, after loading gRPC, numpy and gensim
        raise FedembedError(f"no run directory or vectors file at {args.run_dir}")
    _limit_blas_threads(args.blas_threads)
    from fedembed.serving.model import load_model
    from fedembed.serving.server import EmbeddingServer
    from fedembed.serving.tls import Tls

    tls = Tls(Path(args.tls_cert), Path(args.tls_key),
              Path(args.tls_client_ca) if args.tls_client_ca else None) if args.tls_cert else None
    if tls is not None:
        tls.check()  # before loading a large model
    model = load_model(args.run_dir)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server = EmbeddingServer(model, args.host, args.port, limits, tls, args.workers)
    print(f"serving {model.source} ({len(model.index)} words x {model.index.dim}, {model.privacy.guarantee}) "
          f"on {server.address}{' with TLS' if tls else ''}", flush=True)
    while not stop.wait(0.5):
        pass
    server.stop(grace=2.0)
    print("stopped", flush=True)
    return 0
