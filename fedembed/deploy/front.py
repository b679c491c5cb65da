"""The SuperLink's one door to the network: a TLS front that forwards Flower's Fleet API and nothing else.

Flower 1.42's `flower-superlink` serves a single FastAPI app on its one `--host/--port`
(flwr/superlink/main.py, `create_app`):

  /v1/fleet/...     Fleet API: the SuperNodes (signed requests under --enable-supernode-auth)
  /v1/control/...   Control API: the `flwr` CLI. `flwr supernode register` is POST
                    /v1/control/register-node, `flwr run` POST /v1/control/start-run. Without OIDC
                    (FLWR_OIDC_ENABLED=1, not in the open-source build) its authentication plugin is
                    Flower's no-op one: whoever reaches it acts as the SuperLink's account.
  /v1/runtime/...   Runtime API: the SuperLink's SuperExec and the ServerApp
  /health, /docs, /openapi.json

`--control-api-address` is deprecated: the Control API is on that port whatever it says. A
SuperLink on `--host 0.0.0.0` therefore lets anyone holding the public CA certificate register
a key of their own and `flwr run` code on the SuperLink's host.

So the SuperLink stays on loopback and this front listens on the network address instead: it
terminates TLS with the SuperLink's own certificate, forwards a request only if it is a POST
to one of the Fleet API's paths (the exact list below, no query, no encoded path; checked
against Flower's Fleet router in tests/test_front.py), to the SuperLink over TLS on loopback,
and answers anything else with 403 and a one-line reason, without forwarding a byte of it.
The SuperNodes' signatures, timestamps and protobuf bodies pass through untouched; the
SuperLink still checks them (with SuperNode auth on, Fleet `register-node` and
`unregister-node` are refused by the SuperLink itself). An unreachable SuperLink is a 502,
which Flower's SuperNode retries like a dropped connection.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import ssl
from pathlib import Path
from typing import Any

import httpx

from fedembed.errors import ConfigError

log = logging.getLogger("fedembed.deploy.front")  # also when run as __main__

FLEET_PATHS = frozenset(f"/v1/fleet/{name}" for name in (
    "register-node", "activate-node", "deactivate-node", "unregister-node", "send-node-heartbeat",
    "pull-messages", "push-messages", "get-run", "get-fab", "push-object", "pull-object",
    "confirm-message-received"))
# Not forwarded either way: they describe one hop, or the proxy re-computes them.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "transfer-encoding", "upgrade", "host", "content-length", "accept-encoding",
                        "content-encoding"})
MAX_BODY = 256 * 2**20    # a request body larger than this is refused (Flower sends objects in 5 MB chunks)
UPSTREAM_TIMEOUT = 120.0


def allowed(method: str, path: str, query: bytes = b"", raw_path: bytes | None = None) -> bool:
    """Whether a request may reach the SuperLink: a POST to a Fleet API path, spelled plainly."""
    return (method == "POST" and path in FLEET_PATHS and not query
            and (raw_path is None or raw_path == path.encode("ascii")))


def is_loopback(host: str) -> bool:
    """`localhost` or an address in 127.0.0.0/8 or ::1."""
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_address(value: str, what: str) -> tuple[str, int]:
    """HOST:PORT (IPv6 in brackets) → (host, port); port 0 allowed (any free port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{what} expects HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


class FleetFront:
    """An ASGI app: the Fleet API's requests to `upstream`, 403 for everything else."""

    def __init__(self, upstream: str, ca_cert: Path | None, transport: httpx.AsyncBaseTransport | None = None,
                 max_body: int = MAX_BODY) -> None:
        """`upstream`: the SuperLink's loopback HOST:PORT; `ca_cert` None only for an insecure
        SuperLink (tests); `transport` replaces the network (tests)."""
        host, _ = split_address(upstream, "--superlink")
        if not is_loopback(host):
            raise ConfigError(f"the front forwards to a SuperLink on loopback only, got {upstream!r}: a SuperLink "
                              f"reachable from the network exposes its Control API")
        self.base = f"{'https' if ca_cert is not None else 'http'}://{upstream}"
        self.ca_cert, self.transport, self.max_body = ca_cert, transport, max_body
        self._client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        if self._client is None:     # made in the server's event loop, on first use
            verify: Any = ssl.create_default_context(cafile=str(self.ca_cert)) if self.ca_cert is not None else False
            self._client = httpx.AsyncClient(verify=verify, transport=self.transport,
                                             timeout=httpx.Timeout(UPSTREAM_TIMEOUT),
                                             limits=httpx.Limits(max_connections=200, max_keepalive_connections=50))
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":            # websockets: nothing of Flower's
            await send({"type": "websocket.close", "code": 1008})
            return
        method, path = scope["method"], scope["path"]
        if not allowed(method, path, scope.get("query_string", b""), scope.get("raw_path")):
            who = "%s:%s" % tuple(scope["client"]) if scope.get("client") else "?"
            log.warning("refused %s %s from %s (only the Fleet API is forwarded)", method, path[:200], who)
            await _answer(send, 403, f"fedembed front: only the Fleet API (POST /v1/fleet/...) is served on this "
                                     f"address; {method} {path[:200]} refused")
            return
        body = await _read_body(receive, self.max_body)
        if body is None:
            await _answer(send, 413, f"fedembed front: request body over {self.max_body} bytes refused")
            return
        headers = [(k, v) for k, v in scope["headers"] if k.decode("latin-1").lower() not in HOP_BY_HOP]
        headers.append((b"accept-encoding", b"identity"))
        try:
            r = await self.client().post(self.base + path, content=body, headers=headers)
        except httpx.HTTPError as exc:
            await _answer(send, 502, f"fedembed front: the SuperLink did not answer ({type(exc).__name__})")
            return
        out = [(k, v) for k, v in r.headers.raw if k.decode("latin-1").lower() not in HOP_BY_HOP]
        content = r.content
        out.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": r.status_code, "headers": out})
        await send({"type": "http.response.body", "body": content})

    async def _lifespan(self, receive, send) -> None:
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _read_body(receive, limit: int) -> bytes | None:
    chunks, size = [], 0
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            break
        chunk = event.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not event.get("more_body", False):
            break
    return b"".join(chunks)


async def _answer(send, status: int, detail: str) -> None:
    """A JSON error the `flwr` CLI prints as is ({"detail": ...})."""
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def serve(listen: str, upstream: str, tls_dir: Path) -> None:
    """Run the front on `listen` (HOST:PORT) with the SuperLink's certificate, until a signal."""
    import uvicorn

    from fedembed.deploy import certs

    host, port = split_address(listen, "--listen")
    tls = certs.TlsFiles.in_dir(tls_dir).check()
    app = FleetFront(upstream, tls.ca_cert)
    log.info("fedembed front on %s: forwarding POST /v1/fleet/... to %s, refusing everything else", listen, upstream)
    uvicorn.run(app, host=host, port=port, ssl_certfile=str(tls.server_cert), ssl_keyfile=str(tls.server_key),
                log_level="warning", access_log=False, lifespan="on")


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m fedembed.deploy.front", description=__doc__.splitlines()[0])
    ap.add_argument("--listen", required=True, metavar="HOST:PORT", help="the address devices connect to")
    ap.add_argument("--superlink", required=True, metavar="HOST:PORT", help="the SuperLink, on loopback")
    ap.add_argument("--tls", required=True, metavar="DIR", help="`fedembed certs` directory (server.pem, server.key, "
                                                                "ca.crt)")
    args = ap.parse_args(argv)
    serve(args.listen, args.superlink, Path(args.tls))
    return 0


if __name__ == "__main__":
    import sys

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        sys.exit(main())
    except ConfigError as exc:
        print(f"fedembed front: error: {exc}", file=sys.stderr)
        sys.exit(2)
