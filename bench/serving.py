"""Serving latency and throughput: NearestNeighbors k=10 over 100,000 x 100 vectors.

The server runs in its own process, started exactly as a user starts it: the `fedembed`
command installed next to this Python, `fedembed serve RUN --port 0` with its defaults (flags
only for what is asked here), in this shell's environment as it was before this script set
anything. `--compare-blas-threads N` then starts a second server with `--blas-threads N` and
measures it the same way, for ratios taken in the same run. This process is the
load generator: `concurrency` asyncio tasks on one grpc.aio channel, each a closed loop
(send, wait for the answer, send the next), so at most `concurrency` requests are ever in
flight (a bounded load). Latency
is measured by the client around each blocking call over loopback, so it includes gRPC,
protobuf and both Pythons, not only the index. Each concurrency level runs for `--seconds`
after a warm-up; queries are random vocabulary words (the word itself excluded), or random
vectors with `--query vector`.

    python bench/serving.py                                    # 100k x 100, k=10, concurrency 1 2 4
    python bench/serving.py --compare-blas-threads 2           # and a server with 2 BLAS threads
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
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

USER_ENV = dict(os.environ)  # the server gets the environment a user's shell would give it
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # this process only: index_only runs as the server's default

import numpy as np  # noqa: E402

import grpc  # noqa: E402

from fedembed.serving import ExactIndex  # noqa: E402
from fedembed.serving._proto import embedding_service_pb2 as pb  # noqa: E402
from fedembed.serving._proto import embedding_service_pb2_grpc as pb_grpc  # noqa: E402
from fedembed.serving.testing import write_run_dir  # noqa: E402


def fedembed_command() -> list[str]:
    """The `fedembed` script installed with this Python (what a user types), else `python -m`."""
    script = Path(sys.executable).with_name("fedembed")
    if script.is_file():
        return [str(script)]
    found = shutil.which("fedembed", path=os.path.dirname(sys.executable))
    return [found] if found else [sys.executable, "-m", "fedembed.cli"]


def start_server(run_dir: Path, flags: list[str]) -> tuple[subprocess.Popen, str, list[str]]:
    """`fedembed serve RUN --port 0 FLAGS` in the user's environment; its address and command."""
    argv = [*fedembed_command(), "serve", str(run_dir), "--port", "0", *flags]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=USER_ENV)
    line = proc.stdout.readline()
    m = re.search(r" on (\S+:\d+)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"server did not start: {line!r} {proc.stderr.read()}")
    return proc, m.group(1), ["fedembed", *argv[len(fedembed_command()):]]


def threads(pid: int) -> int | None:
    """The server's OS threads (gRPC's, its workers' and OpenBLAS's: one more per extra BLAS thread)."""
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return None


def measure(proc: subprocess.Popen, address: str, queries: list, args: argparse.Namespace) -> list[dict]:
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
        level["server_threads"] = threads(proc.pid)
        levels.append(level)
        print(json.dumps(level), flush=True)
    return levels


def serve_and_measure(run_dir: Path, flags: list[str], queries: list, args: argparse.Namespace) -> dict:
    proc, address, command = start_server(run_dir, flags)
    try:
        print(f"# {' '.join(command)}", flush=True)
        levels = measure(proc, address, queries, args)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    warned = [line for line in err.splitlines() if "does not take effect" in line]
    return {"command": " ".join(command), "blas_warning": warned[0] if warned else None, "levels": levels}


def ratios(base: list[dict], other: list[dict]) -> list[dict]:
    """other / base per concurrency level: how much worse the compared server is."""
    keys = ("qps", "p50_ms", "p99_ms", "server_cpu_ms_per_request")
    return [{"concurrency": b["concurrency"],
             **{k: round(o[k] / b[k], 2) for k in keys if b.get(k) and o.get(k) is not None}}
            for b, o in zip(base, other)]


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
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per concurrency level")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--workers", type=int, help="the server's --workers (default: fedembed serve's)")
    p.add_argument("--blas-threads", type=int, help="the server's --blas-threads (default: fedembed serve's)")
    p.add_argument("--compare-blas-threads", type=int, metavar="N",
                   help="also measure a server started with --blas-threads N, and the ratios")
    p.add_argument("--query", choices=["word", "vector"], default="word")
    p.add_argument("--out", default="bench/out/serving.json")
    args = p.parse_args()

    rng = np.random.default_rng(42)
    words = [f"w{i}" for i in range(args.vocab)]
    vectors = rng.normal(size=(args.vocab, args.dim)).astype(np.float32)
    result: dict = {"vocab": args.vocab, "dim": args.dim, "k": args.k, "index": "exact", "query": args.query,
                    "seconds_per_level": args.seconds,
                    "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                "python": platform.python_version(),
                                "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]},
                    "index_only": index_only(vectors, words, args.k)}
    with tempfile.TemporaryDirectory(prefix="fedembed-serving-bench-") as tmp:
        run_dir = write_run_dir(Path(tmp) / "run", words, vectors, name="serving-bench")
        queries: list = (words if args.query == "word"
                         else list(rng.normal(size=(1000, args.dim)).astype(np.float32)))
        flags = [*(["--workers", str(args.workers)] if args.workers else []),
                 *(["--blas-threads", str(args.blas_threads)] if args.blas_threads else []),
                 *(["--max-batch", str(args.k)] if args.k > 1024 else [])]
        served = serve_and_measure(run_dir, flags, queries, args)
        result.update(server=served["command"], blas_warning=served["blas_warning"], levels=served["levels"])
        if args.compare_blas_threads:
            other = serve_and_measure(run_dir, [*flags, "--blas-threads", str(args.compare_blas_threads)],
                                      queries, args)
            result["compared"] = {**other, "ratio_to_default": ratios(served["levels"], other["levels"])}
    result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
