"""The floor under a deployed round's transfers: one HTTPS request moving a table-sized body.

Flower 1.42's SuperLink serves the Fleet and Runtime APIs with FastAPI on uvicorn, over TLS,
and its clients use httpx. This times the same stack with nothing on top — a FastAPI app that
returns (pull) or accepts (push) `--mb` megabytes, behind TLS from `fedembed certs` — so that
a deployed node's logged pull and push times (docs/BENCHMARKS.md, "Deployment") can be read
against what the transport itself costs on this machine.

    python bench/http_floor.py                 # 3.5 MB (one of the default bench's two tables), 30 requests each

Loopback only; the server is a child process, stopped at the end. Prints medians and MB/s and
writes bench/out/http_floor.json.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fastapi import Request, Response   # module level: the routes' annotations are resolved here

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _serve(port: int, size: int, cert: str, key: str) -> None:
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()
    body = b"x" * size

    @app.post("/pull")
    async def pull(request: Request) -> Response:
        await request.body()
        return Response(content=body, media_type="application/protobuf")

    @app.post("/push")
    async def push(request: Request) -> Response:
        await request.body()
        return Response(content=b"ok", media_type="application/protobuf")

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", ssl_certfile=cert, ssl_keyfile=key)


def main() -> int:
    import httpx

    from fedembed.deploy.certs import generate
    from fedembed.deploy.processes import free_port

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=3.5)
    ap.add_argument("--requests", type=int, default=30)
    args = ap.parse_args()
    size = int(args.mb * 1e6)
    with tempfile.TemporaryDirectory() as tmp:
        tls = generate(Path(tmp))
        port = free_port()
        server = mp.get_context("spawn").Process(target=_serve, args=(port, size, str(tls.server_cert),
                                                                     str(tls.server_key)), daemon=True)
        server.start()
        result: dict = {"mb": args.mb, "requests": args.requests}
        try:
            with httpx.Client(verify=str(tls.ca_cert), base_url=f"https://localhost:{port}") as client:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        client.post("/push", content=b"")
                        break
                    except httpx.TransportError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.2)
                payload = b"y" * size
                for name, path, data in (("pull", "/pull", b""), ("push", "/push", payload)):
                    times = []
                    for _ in range(args.requests):
                        t0 = time.perf_counter()
                        response = client.post(path, content=data)
                        got = response.read()
                        times.append(time.perf_counter() - t0)
                        response.raise_for_status()
                        if name == "pull" and len(got) != size:
                            raise RuntimeError(f"pulled {len(got)} bytes, expected {size}")
                    med = statistics.median(times)
                    result[name] = {"median_ms": 1e3 * med, "mb_per_s": args.mb / med}
                    print(f"{name} {args.mb} MB over HTTPS: median {1e3 * med:.1f} ms ({args.mb / med:.0f} MB/s)")
        finally:
            server.terminate()
            server.join(10)
    out = ROOT / "bench" / "out" / "http_floor.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
