"""The Fleet-only front (fedembed/deploy/front.py) and the loopback-only SuperLink.

Fast: the front in front of Flower 1.42's own SuperLink app (`flwr.superlink.main.create_app`,
in process, in-memory state), driven by Flower's own HTTP clients: the Control API's
`RegisterNode` (`flwr supernode register`) and `StartRun` (`flwr run`) are refused through the
front and work straight on the app (what a SuperLink on 0.0.0.0 exposed); a Fleet call goes
through. The path filter on hand-made requests; what is forwarded, how an unreachable
SuperLink answers; the SuperLink argv refuses a network bind.

Slow: a real SuperLink on loopback with the front on a veth address, and a second network
namespace as "another machine": a SuperNode there trains through the front in a `flwr run`,
while `flwr supernode register` and `flwr run` from there are refused and the SuperLink's own
port cannot be reached from there at all.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from fedembed.deploy import certs, front
from fedembed.deploy.front import FLEET_PATHS, FleetFront, allowed
from fedembed.errors import ConfigError


@pytest.fixture(scope="module")
def superlink_app():
    """Flower's SuperLink FastAPI app as `flower-superlink` builds it (no auth plugin: no OIDC)."""
    from flwr.superlink.main import create_app

    return create_app()


def _routes(app) -> set[tuple[str, str]]:
    from fastapi.routing import iter_route_contexts

    return {(m, ctx.path) for ctx in iter_route_contexts(app.routes) for m in (getattr(ctx, "methods", None) or ())}


def test_flower_serves_fleet_control_and_runtime_on_one_app_and_the_front_passes_only_fleet(superlink_app):
    routes = _routes(superlink_app)
    paths = {p for _, p in routes}
    assert {p for p in paths if p.startswith("/v1/fleet/")} == FLEET_PATHS       # the list is Flower's, exactly
    assert {"/v1/control/register-node", "/v1/control/start-run", "/v1/runtime/create-task", "/health",
            "/openapi.json", "/docs"} <= paths                                    # ... beside all of this
    assert {m for m, p in routes if p in FLEET_PATHS} == {"POST"}
    passed = {(m, p) for m, p in routes if allowed(m, p)}
    assert passed == {("POST", p) for p in FLEET_PATHS}
    assert len(routes - passed) > 40                                               # Control, Runtime, health, docs


def _status_errors() -> tuple[type[Exception], ...]:
    """Starlette's TestClient raises httpx2's HTTPStatusError where httpx2 is installed (huggingface_hub,
    which the sentence family's stack pins, brings it), httpx's otherwise."""
    try:
        import httpx2
    except ImportError:
        return (httpx.HTTPStatusError,)
    return (httpx.HTTPStatusError, httpx2.HTTPStatusError)


_STATUS_ERRORS = _status_errors()


def _through(app):
    """A sync httpx client (what Flower's clients hold) whose requests go to the ASGI `app`."""
    from starlette.testclient import TestClient

    return TestClient(app, base_url="https://superlink.example:9092")


def _flower_client(cls, app, key=None):
    """Flower's own HTTP client class, its requests going to the ASGI `app`; `key` signs them
    as a SuperNode's."""
    from flwr.supernode.node_auth_http_interceptor import NodeAuthHttpInterceptor

    client = cls("https://superlink.example:9092",
                 interceptors=[NodeAuthHttpInterceptor(key, key.public_key())] if key is not None else [])
    client._client = _through(app)
    return client


def test_control_calls_are_refused_through_the_front_and_fleet_calls_pass(superlink_app):
    from cryptography.hazmat.primitives.asymmetric import ec
    from flwr.proto.control_pb2 import RegisterNodeRequest, StartRunRequest
    from flwr.proto.fab_pb2 import Fab
    from flwr.proto.fleet_pb2 import RegisterNodeFleetRequest
    from flwr.supercore.control import ControlHttpClient
    from flwr.supercore.primitives.asymmetric import public_key_to_bytes
    from flwr.supernode.fleet_http_client import FleetHttpClient

    fronted = FleetFront("127.0.0.1:9093", None, transport=httpx.ASGITransport(superlink_app))
    stranger, other, node_key = (ec.generate_private_key(ec.SECP384R1()) for _ in range(3))
    via_front = _flower_client(ControlHttpClient, fronted)
    register = RegisterNodeRequest(public_key=public_key_to_bytes(stranger.public_key()))
    for call, request in [(via_front.RegisterNode, register),
                          (via_front.StartRun, StartRunRequest(fab=Fab(hash_str="0" * 64, content=b"x")))]:
        with pytest.raises(_STATUS_ERRORS) as refused:
            call(request)
        assert refused.value.response.status_code == 403
        assert "only the Fleet API" in refused.value.response.json()["detail"]
    # The same Control call straight to the SuperLink's app registers the stranger's key: what
    # `--host 0.0.0.0` exposed to anyone with the CA certificate.
    direct = _flower_client(ControlHttpClient, superlink_app)
    assert direct.RegisterNode(RegisterNodeRequest(public_key=public_key_to_bytes(other.public_key()))).node_id > 0
    # A SuperNode's signed Fleet call passes the front, and the SuperLink accepts its signature.
    node = _flower_client(FleetHttpClient, fronted, node_key)
    assert node.RegisterNode(RegisterNodeFleetRequest(public_key=public_key_to_bytes(node_key.public_key()))).node_id


def _call(app, method: str, path: str, raw_path: bytes | None = None, query: bytes = b"", body: bytes = b"",
          headers: list[tuple[bytes, bytes]] | None = None) -> tuple[int, dict, bytes]:
    """One request straight into the ASGI app, spelled exactly as given (no client normalizes it)."""
    scope = {"type": "http", "method": method, "path": path, "raw_path": raw_path if raw_path is not None else
             path.encode(), "query_string": query, "headers": headers or [], "client": ("10.9.8.7", 40000),
             "http_version": "1.1", "scheme": "https"}
    events = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict] = []

    async def receive():
        return events.pop(0) if events else {"type": "http.disconnect"}

    async def send(event):
        sent.append(event)

    asyncio.run(app(scope, receive, send))
    start = sent[0]
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, b"".join(
        e.get("body", b"") for e in sent[1:])


class Upstream:
    """A SuperLink double behind the front: records what reached it."""

    def __init__(self, status: int = 200, fail: bool = False) -> None:
        self.seen: list[httpx.Request] = []
        self.status, self.fail = status, fail

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            if self.fail:
                raise httpx.ConnectError("connection refused", request=request)
            self.seen.append(request)
            return httpx.Response(self.status, content=b"\x08\x07" + request.content,
                                  headers={"content-type": "application/protobuf", "x-flower-version": "1.42.0"})
        return httpx.MockTransport(handle)


@pytest.mark.parametrize("method, path, raw, query", [
    ("POST", "/v1/control/register-node", None, b""),                     # flwr supernode register
    ("POST", "/v1/control/start-run", None, b""),                         # flwr run
    ("POST", "/v1/control/list-nodes", None, b""),
    ("POST", "/v1/runtime/create-task", None, b""),
    ("POST", "/v1/runtime/pull-task-input", None, b""),
    ("GET", "/health", None, b""),
    ("GET", "/docs", None, b""),
    ("GET", "/openapi.json", None, b""),
    ("GET", "/v1/fleet/pull-messages", None, b""),                        # a Fleet path, but not POST
    ("POST", "/v1/fleet/pull-messages", None, b"debug=1"),                # with a query
    ("POST", "/v1/fleet/pull-messages", b"/v1/fleet/pull%2Dmessages", b""),  # percent-encoded
    ("POST", "/v1/fleet/../control/start-run", None, b""),                # dot segments
    ("POST", "/v1/fleet/pull-messages/", None, b""),
    ("POST", "/v1/fleet/", None, b""),
])
def test_everything_but_a_plain_fleet_post_is_refused_and_never_forwarded(method, path, raw, query):
    up = Upstream()
    status, headers, body = _call(FleetFront("127.0.0.1:9093", None, up.transport()), method, path, raw, query)
    assert status == 403 and up.seen == []
    assert json.loads(body)["detail"].startswith("fedembed front: only the Fleet API (POST /v1/fleet/...)")


def test_a_fleet_request_is_forwarded_as_it_came():
    up = Upstream()
    app = FleetFront("127.0.0.1:9093", None, up.transport())
    signed = [(b"content-type", b"application/protobuf"), (b"x-flower-public-key", b"cHVi"),
              (b"x-flower-signature", b"c2ln"), (b"flwr-timestamp", b"2026-01-01T00:00:00+00:00"),
              (b"host", b"superlink.example:9092"), (b"connection", b"keep-alive"), (b"accept-encoding", b"gzip")]
    for path in sorted(FLEET_PATHS):
        status, headers, body = _call(app, "POST", path, body=b"proto", headers=signed)
        assert (status, body) == (200, b"\x08\x07proto")
        assert headers["content-type"] == "application/protobuf" and headers["content-length"] == "7"
    assert [str(r.url) for r in up.seen] == [f"http://127.0.0.1:9093{p}" for p in sorted(FLEET_PATHS)]
    r = up.seen[0]
    assert (r.headers["x-flower-public-key"], r.headers["x-flower-signature"]) == ("cHVi", "c2ln")
    assert r.headers["flwr-timestamp"] == "2026-01-01T00:00:00+00:00" and r.content == b"proto"
    assert r.headers["host"] == "127.0.0.1:9093" and r.headers["accept-encoding"] == "identity"


def test_an_unreachable_superlink_is_a_retryable_502_and_a_huge_body_is_refused():
    status, _, body = _call(FleetFront("127.0.0.1:9093", None, Upstream(fail=True).transport()), "POST",
                            "/v1/fleet/pull-messages")
    assert status == 502 and "did not answer (ConnectError)" in json.loads(body)["detail"]
    up = Upstream()
    status, _, _ = _call(FleetFront("127.0.0.1:9093", None, up.transport(), max_body=4), "POST",
                         "/v1/fleet/push-object", body=b"12345")
    assert status == 413 and up.seen == []


def test_the_superlink_and_the_fronts_upstream_stay_on_loopback(tmp_path):
    from fedembed.deploy.federation import LocalFederation, superlink_argv

    tls = certs.generate(tmp_path / "tls")
    assert "127.0.0.1" in superlink_argv(9093, tls, None)
    for host in ("0.0.0.0", "::", "10.1.2.3", "superlink.example.org"):
        with pytest.raises(ConfigError, match="must listen on loopback.*fedembed front"):
            superlink_argv(9093, tls, None, host=host)
    with pytest.raises(ConfigError, match="loopback only"):
        FleetFront("10.1.2.3:9093", None)
    assert front.is_loopback("127.0.0.2") and front.is_loopback("::1") and not front.is_loopback("0.0.0.0")
    with pytest.raises(ConfigError, match="need an address"):
        LocalFederation(tmp_path / "f0", 1, devices=(tmp_path / "d.pub",))
    fed = LocalFederation(tmp_path / "f1", 1, listen="10.1.2.3:9092").prepare()   # certificate made for the front
    assert "10.1.2.3" in certs.hosts_of(fed.tls.server_cert) and fed.listen == "10.1.2.3:9092"
    with pytest.raises(ConfigError, match="cannot listen on 10.1.2.3"):
        LocalFederation(tmp_path / "f1", 1, listen="10.1.2.3:0")                  # a free port there: not ours
    assert not LocalFederation(tmp_path / "f2", 1, listen="0.0.0.0:0").listen.endswith(":0")
    with pytest.raises(ConfigError, match="not valid for 10.9.9.9.*fedembed certs"):
        LocalFederation(tmp_path / "f1", 1, listen="10.9.9.9:9092").prepare()


def test_fedembed_deploy_and_front_check_their_addresses_before_starting_anything(tmp_path, capsys):
    from fedembed.cli import main

    pub = tmp_path / "dev.pub"
    pub.write_text("x")
    assert main(["deploy", "--workdir", str(tmp_path / "w"), "--device-key", str(pub)]) == 2
    assert "--device-key needs --listen" in capsys.readouterr().err
    assert main(["deploy", "--workdir", str(tmp_path / "w"), "--device-key", str(tmp_path / "nope.pub"),
                 "--listen", "0.0.0.0:0"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()
    certs.generate(tmp_path / "tls")
    assert main(["front", "--listen", "127.0.0.1:0", "--superlink", "10.0.0.1:9093",
                 "--tls", str(tmp_path / "tls")]) == 2
    assert "loopback only" in capsys.readouterr().err


# ---- slow: another machine, as a second network namespace ------------------------------------

def _can_make_namespaces() -> bool:
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    name = f"fe-probe-{os.getpid()}"
    ok = subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode == 0
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return ok


@pytest.fixture
def other_machine():
    """A network namespace joined to this one by a veth pair: (namespace, our address, its address)."""
    if not _can_make_namespaces():
        pytest.skip("needs root, iproute2 and network namespaces")
    tag = f"{os.getpid() % 100000}{random.randrange(100)}"
    ns, here, there = f"fe-ns-{tag}", f"feh{tag}", f"fen{tag}"
    used = subprocess.run(["ip", "-4", "addr"], capture_output=True, text=True).stdout
    for _ in range(50):
        net = f"10.{random.randrange(64, 250)}.{random.randrange(0, 250)}"
        if f" {net}." not in used:
            break
    ip = lambda *a: subprocess.run(["ip", *a], check=True, capture_output=True)   # noqa: E731
    try:
        ip("netns", "add", ns)
        ip("link", "add", here, "type", "veth", "peer", "name", there)
        ip("link", "set", there, "netns", ns)
        ip("addr", "add", f"{net}.1/30", "dev", here)
        ip("link", "set", here, "up")
        ip("netns", "exec", ns, "ip", "addr", "add", f"{net}.2/30", "dev", there)
        ip("netns", "exec", ns, "ip", "link", "set", there, "up")
        ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield ns, f"{net}.1", f"{net}.2"
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", here], capture_output=True)


@pytest.mark.slow  # about a minute: a SuperLink, a front, two SuperNodes, one round
@pytest.mark.skipif(not Path(sys.executable).with_name("flower-superlink").exists(),
                    reason="needs Flower's executables in this venv")
def test_from_another_machine_only_the_fleet_api_answers(tmp_path, other_machine):
    import tomli_w
    from word_soup import EVAL_WORDS, word_soup

    from fedembed import metrics
    from fedembed.deploy import node_keys
    from fedembed.deploy.federation import CONNECTION, LocalFederation, node_statuses
    from fedembed.deploy.node_runtime import INPROCESS
    from fedembed.deploy.processes import processes_with_home, run_flwr, spawn, tool, write_connection

    ns, here, there = other_machine
    device_key, device_pub = node_keys.generate(tmp_path / "device", 1)[0]
    fed = LocalFederation(tmp_path / "fed", 1, runtime=INPROCESS, persist=False, listen=f"{here}:0",
                          devices=(device_pub,))
    try:
        fed.prepare()
        fed.start_superlink()
        fed.start_front()
        fed.register(0)
        device_id = fed.register(1)
        fed.start_node(0, {"partition-id": 0, "num-partitions": 2})
        # The device, on the other machine, knows only the front's address and the CA certificate.
        device = spawn("device", ["ip", "netns", "exec", ns, sys.executable, "-m", "fedembed.deploy.node_runtime",
                                  "--superlink", fed.listen, "--root-certificates", str(fed.tls.ca_cert),
                                  "--auth-supernode-private-key", str(device_key),
                                  "--node-config", "partition-id=1 num-partitions=2"],
                       fed.home / "nodes" / "device", fed.logs / "device.log", cwd=fed.workdir)
        fed.nodes[1] = device
        statuses = fed.wait_online(2)
        assert statuses[device_id] == "online"

        # A stranger on that machine with the public CA certificate: the flwr CLI at the front's address ...
        stranger_home = tmp_path / "stranger"
        stranger_pub = node_keys.generate(tmp_path / "stranger-keys", 1)[0][1]
        write_connection(stranger_home, CONNECTION, fed.listen, fed.tls.ca_cert)
        superlink_port = fed.address.rsplit(":", 1)[1]
        write_connection(stranger_home / "direct", CONNECTION, f"{here}:{superlink_port}", fed.tls.ca_cert)
        env = {**os.environ, "FLWR_HOME": str(stranger_home), "FLWR_TELEMETRY_ENABLED": "0",
               "FLWR_DISABLE_UPDATE_CHECK": "1"}

        def stranger(*args, home=stranger_home):
            res = subprocess.run(["ip", "netns", "exec", ns, tool("flwr"), *args], cwd=fed.app_dir, timeout=120,
                                 env={**env, "FLWR_HOME": str(home)}, capture_output=True, text=True)
            return res.returncode, res.stdout + res.stderr

        code, out = stranger("supernode", "register", str(stranger_pub), CONNECTION)
        assert code != 0 and "only the Fleet API" in out and "refused" in out, out
        code, out = stranger("run", str(fed.app_dir), CONNECTION)
        assert code != 0 and "only the Fleet API" in out, out
        code, out = stranger("ls", CONNECTION)
        assert code != 0 and "only the Fleet API" in out, out
        # ... and the SuperLink's own port is not there at all from that machine.
        code, out = stranger("supernode", "register", str(stranger_pub), CONNECTION, home=stranger_home / "direct")
        assert code != 0 and "registered successfully" not in out, out
        refused = fed.front.log_text()
        assert "refused POST /v1/control/register-node from " + there in refused
        assert "refused POST /v1/control/start-run from " + there in refused

        # Nothing of the stranger's reached the SuperLink; a run over the front trains the device.
        assert node_statuses(fed.home, fed.workdir) == {nid: "online" for nid in fed.node_ids.values()}
        corpus, words = tmp_path / "corpus.txt", tmp_path / "words.txt"
        rng = random.Random(0)
        corpus.write_text(word_soup(rng, 300), encoding="utf-8")
        words.write_text("\n".join(EVAL_WORDS) + "\n", encoding="utf-8")
        scenario = tmp_path / "scenario.toml"
        scenario.write_text('name = "front"\nseed = 0\n' + tomli_w.dumps({
            "data": {"corpus": str(corpus)}, "vocab": {"source": str(words), "min_count": 1},
            "partition": {"name": "iid", "num_clients": 2}, "federation": {"rounds": 1}, "model": {"dim": 8},
            "eval": {"baseline": False}}), encoding="utf-8")
        fed.run({"scenario": str(scenario), "out": str(tmp_path / "run")}, timeout=600, done=tmp_path / "run" /
                "report.json")
        assert [r["clients_ok"] for r in metrics.read(tmp_path / "run")] == [2]
        assert "train.secagg_mask message" in device.log_text()          # it trained, through the front
        runs = run_flwr(["ls", CONNECTION, "--format", "json"], fed.home, fed.workdir, timeout=60).stdout
        assert len(json.loads(runs[runs.find("{"):])["runs"]) == 1       # only ours
    finally:
        left = fed.stop()
    assert not left and not processes_with_home(fed.home), f"still running: {left}"
