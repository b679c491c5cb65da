"""Serving latency and throughput: NearestNeighbors k=10 over 100,000 x 100 vectors.

The server (`fedembed serve`, exact index) runs in its own process; this process is the
load generator: `concurrency` asyncio tasks on one grpc.aio channel, each a closed loop
(send, wait for the answer, send the next), so at most `concurrency` requests are ever in
flight (a bounded load). Latency
is measured by the client around each blocking call over loopback, so it includes gRPC,
protobuf and both Pythons, not only the index. Each concurrency level runs for `--seconds`
after a warm-up; queries are random vocabulary words (the word itself excluded), or random
vectors with `--query vector`.

    python bench/serving.py                                    # 100k x 100, k=10, concurrency 1 2 4
    python bench/serving.py --vocab 20000 --seconds 3          # a quick look

Writes bench/out/serving.json (figures + machine) unless --out says otherwise.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # index_only below: the server's default BLAS threads

import numpy as np  # noqa: E402

import grpc  # noqa: E402

from fedembed.serving import ExactIndex  # noqa: E402
from fedembed.serving._proto import embedding_service_pb2 as pb  # noqa: E402
from fedembed.serving._proto import embedding_service_pb2_grpc as pb_grpc  # noqa: E402
from fedembed.serving.testing import write_run_dir  # noqa: E402


def start_server(run_dir: Path, workers: int, max_batch: int, blas_threads: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "fedembed.cli", "serve", str(run_dir), "--port", "0",
                             "--workers", str(workers), "--max-batch", str(max_batch),
                             "--blas-threads", str(blas_threads)],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = proc.stdout.readline()
    m = re.search(r" on (\S+:\d+)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc, m.group(1)


def load(address: str, queries: list, k: int, concurrency: int, seconds: float, warmup: float) -> dict:
    """Closed-loop load: `concurrency` asyncio tasks on one grpc.aio channel (less client
    overhead than threads fighting over the GIL); latencies of calls started after warm-up."""
    return asyncio.run(_load(address, queries, k, concurrency, seconds, warmup))


async def _load(address: str, queries: list, k: int, concurrency: int, seconds: float, warmup: float) -> dict:
    reqs = [pb.NearestNeighborsRequest(word=q, k=k) if isinstance(q, str)
            else pb.NearestNeighborsRequest(vector=pb.Vector(values=q.tolist()), k=k) for q in queries]
    lat: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.EmbeddingServiceStub(channel)
        await stub.Info(pb.InfoRequest(), timeout=30)
        measure_from = time.perf_counter() + warmup
        stop_at = measure_from + seconds

        async def worker(t: int) -> None:
            nonlocal errors
            rng = np.random.default_rng(t)
            while (t0 := time.perf_counter()) < stop_at:
                try:
                    await stub.NearestNeighbors(reqs[int(rng.integers(len(reqs)))], timeout=30)
                except grpc.aio.AioRpcError:
                    errors += 1
                    continue
                if t0 >= measure_from:
                    lat.append(time.perf_counter() - t0)

        await asyncio.gather(*(worker(t) for t in range(concurrency)))
    ms = np.array(lat) * 1e3
    return {"concurrency": concurrency, "requests": int(ms.size), "errors": errors,
            "qps": round(ms.size / seconds, 1), "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p90_ms": round(float(np.percentile(ms, 90)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "max_ms": round(float(ms.max()), 3), "mean_ms": round(float(ms.mean()), 3)}


def cpu_seconds(pid: int) -> float | None:
    """user + system CPU seconds of a process (Linux /proc), so load-independent cost is known."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def index_only(vectors: np.ndarray, words: list[str], k: int, n: int = 500) -> dict:
    """The index's own cost in this process (no gRPC): what the server adds on top of it."""
    idx = ExactIndex(words, vectors)
    rng = np.random.default_rng(0)
    ts = []
    for _ in range(n):
        w = words[int(rng.integers(len(words)))]
        t0 = time.perf_counter()
        idx.neighbors(w, k)
        ts.append(time.perf_counter() - t0)
    ms = np.array(ts) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vocab", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=100)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--seconds", type=float, default=15.0, help="measured seconds per concurrency level")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--workers", type=int, default=4, help="server threads")
    p.add_argument("--blas-threads", type=int, default=1, help="the server's BLAS threads")
    p.add_argument("--query", choices=["word", "vector"], default="word")
    p.add_argument("--out", default="bench/out/serving.json")
    args = p.parse_args()

    rng = np.random.default_rng(42)
    words = [f"w{i}" for i in range(args.vocab)]
    vectors = rng.normal(size=(args.vocab, args.dim)).astype(np.float32)
    result: dict = {"vocab": args.vocab, "dim": args.dim, "k": args.k, "index": "exact", "query": args.query,
                    "server_workers": args.workers, "server_blas_threads": args.blas_threads,
                    "seconds_per_level": args.seconds,
                    "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                "python": platform.python_version(),
                                "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]},
                    "index_only": index_only(vectors, words, args.k)}
    with tempfile.TemporaryDirectory(prefix="fedembed-serving-bench-") as tmp:
        run_dir = write_run_dir(Path(tmp) / "run", words, vectors, name="serving-bench")
        queries: list = (words if args.query == "word"
                         else list(rng.normal(size=(1000, args.dim)).astype(np.float32)))
        proc, address = start_server(run_dir, args.workers, max(1024, args.k), args.blas_threads)
        try:
            levels = []
            for c in args.concurrency:
                cpu0, self0, t0 = cpu_seconds(proc.pid), time.process_time(), time.perf_counter()
                level = load(address, queries, args.k, c, args.seconds, args.warmup)
                cpu1, self1, wall = cpu_seconds(proc.pid), time.process_time(), time.perf_counter() - t0
                calls = level["requests"] * (args.seconds + args.warmup) / args.seconds  # warm-up calls too
                if cpu0 is not None and cpu1 is not None:
                    level["server_cpu_ms_per_request"] = round((cpu1 - cpu0) / calls * 1e3, 3)
                    level["server_cpu_utilisation"] = round((cpu1 - cpu0) / wall, 2)
                level["client_cpu_ms_per_request"] = round((self1 - self0) / calls * 1e3, 3)
                levels.append(level)
                print(json.dumps(level), flush=True)
            result["levels"] = levels
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
