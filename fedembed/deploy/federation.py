"""A federation of one SuperLink and N SuperNodes as separate processes, with TLS and node auth.

This is the deployment runtime end to end on one machine (loopback): what `fedembed deploy`,
tests/test_deploy_e2e.py and bench/deploy_round.py run, and what docs/DEPLOY.md does by hand.
The SuperLink never listens off loopback (its Control API authenticates no one); devices
elsewhere come in through the Fleet-only front (`listen`, fedembed/deploy/front.py).
The layout under `workdir`:

    tls/        ca.crt, server.pem, server.key, ca.key     (`fedembed certs`)
    keys/       node_<i>, node_<i>.pub                      (`fedembed node-keys`)
    home/       FLWR_HOME of the SuperLink and the `flwr` CLI (config.toml: one connection)
    home/nodes/<i>/  FLWR_HOME of SuperNode i (installed apps)
    superlink.db     SuperLink state: registered nodes survive a SuperLink restart
    logs/       superlink.log, front.log, supernode-<i>.log, flwr-run-<n>.log
"""
from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedembed import nodelog
from fedembed.data import device
from fedembed.deploy import certs, node_keys
from fedembed.deploy.front import is_loopback, split_address
from fedembed.deploy.node_runtime import FLOWER, INPROCESS, RUNTIMES
from fedembed.deploy.processes import (Proc, free_port, kill_leftovers, run_flwr, spawn, stop, tool,
                                       wait_tls, write_connection)
from fedembed.errors import ConfigError, FedembedError

CONNECTION = "fedembed"
WILDCARDS = ("0.0.0.0", "::")   # a --listen host that means every address (not a name devices can use)
REPO = Path(__file__).resolve().parents[2]


def superlink_argv(port: int, tls: certs.TlsFiles, database: Path | None, host: str = "127.0.0.1",
                   auth: bool = True) -> list[str]:
    """`flower-superlink` with TLS and SuperNode authentication on, no run-time installs.

    Flower 1.42 serves the Fleet, Control and Runtime APIs over HTTPS on this one port
    (`--fleet-api-type` is accepted but deprecated and ignored), see docs/DEPLOY.md. The
    Control API authenticates no one without OIDC, so `host` must be loopback: devices on the
    network reach the Fleet API through fedembed's front (fedembed/deploy/front.py).
    `database` None keeps Flower's default in-memory state: faster (every Fleet request reads
    or writes that state), but registrations are lost when the SuperLink restarts.
    """
    if not is_loopback(host):
        raise ConfigError(f"the SuperLink must listen on loopback, not {host!r}: its Control API (`flwr run`, "
                          f"`flwr supernode register`) would accept anyone who can reach it; put the Fleet API "
                          f"on the network with `fedembed front` (docs/DEPLOY.md)")
    argv = [tool("flower-superlink"), "--ssl-certfile", str(tls.server_cert), "--ssl-keyfile", str(tls.server_key),
            "--ssl-ca-certfile", str(tls.ca_cert), "--disable-runtime-dependency-installation",
            "--host", host, "--port", str(port)]
    argv += ["--database", str(database)] if database is not None else []
    return argv + (["--enable-supernode-auth"] if auth else [])


def supernode_argv(superlink: str, ca_cert: Path | None, key: Path | None, node_config: dict[str, Any],
                   runtime_port: int, max_retries: int | None = None,
                   max_wait_time: float | None = None) -> list[str]:
    """`flower-supernode` for our ClientApp; `node_config` reaches it as `context.node_config`."""
    return [tool("flower-supernode"), "--superlink", superlink, "--port", str(runtime_port),
            "--node-config", format_node_config(node_config), *_node_flags(ca_cert, key, max_retries, max_wait_time)]


def inprocess_node_argv(superlink: str, ca_cert: Path | None, key: Path | None, node_config: dict[str, Any],
                        max_retries: int | None = None, max_wait_time: float | None = None) -> list[str]:
    """fedembed's in-process SuperNode (fedembed/deploy/node_runtime.py), flags as `flower-supernode`'s."""
    return [sys.executable, "-m", "fedembed.deploy.node_runtime", "--superlink", superlink,
            "--node-config", format_node_config(node_config), *_node_flags(ca_cert, key, max_retries, max_wait_time)]


def _node_flags(ca_cert: Path | None, key: Path | None, max_retries: int | None,
                max_wait_time: float | None) -> list[str]:
    """TLS, authentication and reconnect flags, the same for both node runtimes."""
    argv = ["--root-certificates", str(ca_cert)] if ca_cert is not None else ["--insecure"]
    if key is not None:
        argv += ["--auth-supernode-private-key", str(key)]
    if max_retries is not None:
        argv += ["--max-retries", str(max_retries)]
    if max_wait_time is not None:
        argv += ["--max-wait-time", str(max_wait_time)]
    return argv


def format_node_config(values: dict[str, Any]) -> str:
    """Flower's `key=value` list, each value TOML (strings quoted, JSON quoting is valid TOML)."""
    parts = []
    for k, v in values.items():
        if isinstance(v, bool):
            parts.append(f"{k}={'true' if v else 'false'}")
        elif isinstance(v, (int, float)):
            parts.append(f"{k}={v}")
        else:
            parts.append(f"{k}={json.dumps(str(v))}")
    return " ".join(parts)


def node_statuses(home: Path, cwd: Path) -> dict[str, str]:
    """node id -> status (registered / online / offline) from `flwr supernode ls`."""
    res = run_flwr(["supernode", "ls", CONNECTION, "--format", "json"], home, cwd, timeout=60)
    text = res.stdout[res.stdout.find("{"):]
    data = json.loads(text)
    nodes = data.get("nodes", []) if isinstance(data, dict) else data
    return {str(n["node-id"]): str(n["status"]) for n in nodes}


@dataclass
class LocalFederation:
    """One SuperLink and N SuperNodes on loopback; a context manager that stops them all.

    The SuperLink listens on loopback only. With `listen` (HOST:PORT, port 0 = a free one)
    devices elsewhere reach it through the Fleet-only front (fedembed/deploy/front.py) there;
    `devices` are their public keys, registered with the local nodes' (node indices
    num_nodes, num_nodes + 1, ...)."""
    workdir: Path
    num_nodes: int
    app_dir: Path = REPO
    auth: bool = True
    runtime: str = FLOWER  # or INPROCESS: fedembed's in-process SuperNode (fedembed/deploy/node_runtime.py)
    persist: bool = True  # SuperLink state in superlink.db (survives a restart); False: Flower's in-memory state
    port: int = 0
    listen: str | None = None
    devices: tuple[Path, ...] = ()
    superlink: Proc | None = None
    front: Proc | None = None
    nodes: dict[int, Proc] = field(default_factory=dict)
    node_ids: dict[int, str] = field(default_factory=dict)
    runs: int = 0

    def __post_init__(self) -> None:
        if self.num_nodes < 0 or self.num_nodes + len(self.devices) < 1:
            raise FedembedError(f"a federation needs at least one SuperNode, got {self.num_nodes}")
        if self.runtime not in RUNTIMES:
            raise FedembedError(f"node runtime must be one of {RUNTIMES}, got {self.runtime!r}")
        if self.devices and not self.listen:
            raise ConfigError("devices elsewhere need an address to reach the SuperLink through (listen)")
        self.workdir = Path(self.workdir).resolve()
        self.home = self.workdir / "home"
        self.logs = self.workdir / "logs"
        self.port = self.port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.devices = tuple(Path(d).resolve() for d in self.devices)
        if self.listen:
            host, port = split_address(self.listen, "--listen")
            try:
                port = port or free_port("0.0.0.0" if host in WILDCARDS else host)
            except OSError as exc:
                raise ConfigError(f"cannot listen on {host}: {exc.strerror}") from None
            self.listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    # -- setup ---------------------------------------------------------------------------
    @property
    def tls(self) -> certs.TlsFiles:
        return certs.TlsFiles.in_dir(self.workdir / "tls")

    def node_key(self, i: int) -> tuple[Path, Path]:
        return node_keys.key_paths(self.workdir / "keys", i)

    def prepare(self) -> "LocalFederation":
        """Certificates and node keys (kept if already there), the `flwr` connection, and a fresh
        SuperLink state (a previous session's registrations would make `register` fail)."""
        for stale in self.workdir.glob("superlink.db*"):
            stale.unlink()
        public = self.public_host
        if not self.tls.server_cert.is_file():
            certs.generate(self.workdir / "tls", [public] if public else [], overwrite=True)
        self.tls.check()
        if public and public not in certs.hosts_of(self.tls.server_cert):
            raise ConfigError(f"{self.tls.server_cert} is not valid for {public} (only "
                              f"{', '.join(certs.hosts_of(self.tls.server_cert))}), so devices could not verify "
                              f"it: `fedembed certs {self.tls.server_cert.parent} --host {public} --force` (and give "
                              f"the devices the new ca.crt)")
        missing = [i for i in range(self.num_nodes) if not self.node_key(i)[0].is_file()]
        for i in missing:
            node_keys.generate(self.workdir / "keys", 1, start=i, overwrite=True)
        write_connection(self.home, CONNECTION, self.address, self.tls.ca_cert)
        return self

    @property
    def public_host(self) -> str | None:
        """The front's host as devices name it (None: no front, or it listens on every address)."""
        if not self.listen:
            return None
        host = split_address(self.listen, "--listen")[0]
        return None if host in WILDCARDS else host

    # -- processes -----------------------------------------------------------------------
    def start_front(self, timeout: float = 60.0) -> Proc:
        """The Fleet-only front on `listen` (fedembed/deploy/front.py); returns when TLS answers."""
        if not self.listen:
            raise FedembedError("no listen address: the federation has no front")
        argv = [sys.executable, "-m", "fedembed.deploy.front", "--listen", self.listen, "--superlink", self.address,
                "--tls", str(self.tls.server_cert.parent)]
        self.front = spawn("fleet front", argv, self.home, self.logs / "front.log", cwd=self.workdir)
        host, port = split_address(self.listen, "--listen")
        wait_tls("127.0.0.1" if host in WILDCARDS else host, port, self.tls.ca_cert, self.front, timeout)
        return self.front

    def start_superlink(self, timeout: float = 60.0) -> Proc:
        """Start (or restart, with the same state database) the SuperLink; returns when TLS answers."""
        argv = superlink_argv(self.port, self.tls, self.workdir / "superlink.db" if self.persist else None,
                              auth=self.auth)
        # cwd = the app directory: the ServerApp resolves relative paths against the SuperLink's cwd.
        self.superlink = spawn("flower-superlink", argv, self.home, self.logs / "superlink.log", cwd=self.app_dir)
        wait_tls("127.0.0.1", self.port, self.tls.ca_cert, self.superlink, timeout)
        return self.superlink

    def register(self, i: int) -> str:
        """`flwr supernode register` node i's public key (a device's, for i >= num_nodes), over
        loopback; returns its node id."""
        if i in self.node_ids:
            return self.node_ids[i]
        public = self.devices[i - self.num_nodes] if i >= self.num_nodes else self.node_key(i)[1]
        res = run_flwr(["supernode", "register", str(public), CONNECTION, "--format", "json"],
                       self.home, self.workdir, timeout=60)
        data = json.loads(res.stdout[res.stdout.find("{"):])
        if not data.get("success"):
            raise FedembedError(f"registering node {i} failed: {res.stdout}")
        self.node_ids[i] = str(data["node-id"])
        return self.node_ids[i]

    def start_node(self, i: int, node_config: dict[str, Any] | None = None, key: Path | None | bool = True,
                   max_retries: int | None = None, max_wait_time: float | None = None) -> Proc:
        """SuperNode i with `partition-id=i num-partitions=N` unless `node_config` says otherwise.

        `key=True` uses node i's key, `key=None`/False starts it without one (to show refusal),
        a path uses that key.
        """
        cfg = node_config if node_config is not None else {"partition-id": i, "num-partitions": self.num_nodes}
        key_path = self.node_key(i)[0] if key is True else (key or None)
        if self.runtime == INPROCESS:
            argv = inprocess_node_argv(self.address, self.tls.ca_cert, key_path, cfg,
                                       max_retries=max_retries, max_wait_time=max_wait_time)
        else:
            argv = supernode_argv(self.address, self.tls.ca_cert, key_path, cfg, free_port(),
                                  max_retries=max_retries, max_wait_time=max_wait_time)
        home = self.home / "nodes" / str(i)
        home.mkdir(parents=True, exist_ok=True)
        proc = spawn(f"flower-supernode {i}", argv, home, self.logs / f"supernode-{i}.log", cwd=self.workdir,
                     extra_env={nodelog.MEMORY_ENV: "1", device.CACHE_ENV: str(self.workdir / "edge-cache" / str(i))})
        self.nodes[i] = proc
        return proc

    def wait_online(self, count: int | None = None, timeout: float = 120.0) -> dict[str, str]:
        """Wait until `count` (default: all, devices included) registered nodes are online."""
        want = self.num_nodes + len(self.devices) if count is None else count
        deadline = time.monotonic() + timeout
        statuses: dict[str, str] = {}
        while time.monotonic() < deadline:
            statuses = node_statuses(self.home, self.workdir)
            if sum(s == "online" for s in statuses.values()) >= want:
                return statuses
            dead = [p for p in self.nodes.values() if not p.alive()]
            if dead:
                raise FedembedError(f"{dead[0].name} exited with code {dead[0].popen.returncode}; its log "
                                    f"({dead[0].log_path}) ends:\n{dead[0].log_text()[-2000:]}")
            time.sleep(1.0)
        raise FedembedError(f"only {sum(s == 'online' for s in statuses.values())} of {want} SuperNodes "
                            f"online after {timeout:.0f}s: {statuses}")

    def start(self) -> "LocalFederation":
        """Prepare, start the SuperLink (and the front), register and start every node, register
        the devices; wait until all are online."""
        self.prepare()
        self.start_superlink()
        if self.listen:
            self.start_front()
        for i in range(self.num_nodes):
            if self.auth:
                self.register(i)
            self.start_node(i)
        for k in range(len(self.devices)):
            self.register(self.num_nodes + k)
        self.wait_online(timeout=3600.0 if self.devices else 120.0)  # devices: whenever their owners start them
        return self

    def run(self, run_config: dict[str, Any], timeout: float = 1800.0, done: Path | None = None) -> str:
        """`flwr run APP fedembed` with `run_config`; returns its output, raises if the run failed.

        By default `--stream`s the run's log until it ends. With `done` (a file the run writes
        last, e.g. its report.json) the log is not streamed: the run is submitted and this waits
        for that file, asking the SuperLink for the run's status only every few seconds. Streaming
        polls the SuperLink all along, CPU a benchmark's rounds would otherwise get.
        """
        self.runs += 1
        args = ["run", str(self.app_dir), CONNECTION] + ([] if done else ["--stream"])
        if run_config:
            args += ["--run-config", format_node_config(run_config)]
        res = run_flwr(args, self.home, self.app_dir, timeout=timeout, check=False)
        out = res.stdout + res.stderr
        (self.logs / f"flwr-run-{self.runs}.log").write_text(out, encoding="utf-8")
        if done is not None and res.returncode == 0:
            status = self.wait_finished(Path(done), timeout)
        else:
            status = self.last_run_status()
        if res.returncode != 0 or not status.startswith("finished:completed"):
            found = re.search(r"Successfully started run (\d+)", out)
            if found:  # the streamed log can stop early; the SuperLink keeps the whole one
                shown = run_flwr(["log", found.group(1), CONNECTION, "--show"], self.home, self.workdir,
                                 timeout=60, check=False)
                out += "\n--- flwr log --show ---\n" + shown.stdout + shown.stderr
                (self.logs / f"flwr-run-{self.runs}.log").write_text(out, encoding="utf-8")
            raise FedembedError(f"`flwr run` failed (exit {res.returncode}, run status {status!r}); "
                                f"output ends:\n{out[-4000:]}")
        return out

    def wait_finished(self, done: Path, timeout: float, every: float = 10.0) -> str:
        """Wait until the SuperLink says the run finished (`finished:*`), asking every `every` s,
        and every second once `done` exists (checked twice a second); returns the final status."""
        deadline = time.monotonic() + timeout
        next_ask, seen = time.monotonic() + every, False
        while time.monotonic() < deadline:
            if not seen and done.exists():  # written last by the run: ask now, then every second
                seen, next_ask = True, time.monotonic()
            if time.monotonic() >= next_ask:
                status = self.last_run_status()
                if status.startswith("finished"):
                    return status
                next_ask = time.monotonic() + (1.0 if seen else every)
            time.sleep(0.5)
        return f"timed out after {timeout:.0f}s ({self.last_run_status()})"

    def last_run_status(self) -> str:
        """Status of the most recent run on the SuperLink (`flwr ls`), e.g. 'finished:completed'."""
        res = run_flwr(["ls", CONNECTION, "--format", "json"], self.home, self.workdir, timeout=60, check=False)
        try:
            runs = json.loads(res.stdout[res.stdout.find("{"):]).get("runs", [])
        except ValueError:
            return f"unknown ({res.stdout.strip()[-200:]})"
        if not runs:
            return "no run"
        latest = max(runs, key=lambda r: str(r.get("pending-at") or r.get("created-at") or ""))
        return str(latest.get("status", "unknown"))

    def stop_superlink(self) -> None:
        if self.superlink is not None:
            stop(self.superlink)

    def stop_front(self) -> None:
        if self.front is not None:
            stop(self.front, timeout=10.0)

    def stop(self) -> dict[int, str]:
        """Stop SuperNodes, then the SuperLink, then anything left with our FLWR_HOME; returns survivors."""
        for proc in self.nodes.values():
            stop(proc, timeout=20.0)
        self.stop_front()
        self.stop_superlink()
        return kill_leftovers(self.home)

    def __enter__(self) -> "LocalFederation":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
