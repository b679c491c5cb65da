"""Start, watch and stop Flower's deployment processes: SuperLink, SuperNodes, `flwr` calls.

Every process gets a private FLWR_HOME (the Flower config, SuperLink state, installed apps
live there), runtime dependency installation off, and no telemetry or update check. Flower
starts helpers in their own sessions (the SuperLink's and each SuperNode's
`flower-superexec`, the `flwr-serverapp`/`flwr-clientapp` processes), so killing a process
group is not enough: `stop` sends SIGTERM to the process, waits, and then kills whatever is
still running with our FLWR_HOME in its environment (Linux `/proc`), which is how nothing
we started outlives us.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from fedembed.errors import FedembedError

POLL_ENV, POLL_SECONDS = "FLWR_SUPEREXEC_TASK_POLL_INTERVAL", "0.2"


def tool(name: str) -> str:
    """A Flower executable from this interpreter's environment (its venv), else from PATH."""
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise FedembedError(f"`{name}` not found next to {sys.executable} or on PATH (pip install flwr==1.42.0)")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def flower_env(home: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for Flower processes: private FLWR_HOME, no run-time `uv sync`, nothing off-machine."""
    env = dict(os.environ if base is None else base)
    env.update({
        "FLWR_HOME": str(Path(home).resolve()),
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "PYTHONUNBUFFERED": "1",
    })
    # How often a SuperNode's SuperExec asks for a new ClientApp task (Flower's default 1 s):
    # a fixed cost in every round of a deployed federation (docs/BENCHMARKS.md, "Deployment").
    env.setdefault(POLL_ENV, POLL_SECONDS)
    # The executables come from this venv; so must the ones Flower starts by name.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


@dataclass
class Proc:
    """A process we started, its log file and the FLWR_HOME that marks its helpers."""
    name: str
    popen: subprocess.Popen
    log_path: Path
    home: Path
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def spawn(name: str, argv: list[str], home: Path, log_path: Path, cwd: Path | None = None,
          extra_env: dict[str, str] | None = None) -> Proc:
    """Start `argv` in its own session (so a Ctrl-C meant for us is ours to forward), logging to a file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(log_path, "ab")
    env = {**flower_env(home), **(extra_env or {})}
    popen = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                             stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    return Proc(name, popen, log_path, Path(home).resolve(), fh)


def processes_with_home(home: Path) -> dict[int, str]:
    """Live processes whose FLWR_HOME is `home` or below it: pid -> command line (Linux only)."""
    prefix = f"FLWR_HOME={Path(home).resolve()}".encode()
    proc_root = Path("/proc")
    if not proc_root.is_dir():
        return {}
    found: dict[int, str] = {}
    for p in proc_root.iterdir():
        if not p.name.isdigit() or int(p.name) == os.getpid():
            continue
        try:
            env = (p / "environ").read_bytes().split(b"\0")
            if not any(e == prefix or e.startswith(prefix + b"/") for e in env):
                continue
            stat = (p / "stat").read_text()
            if stat[stat.rindex(")") + 2] in "ZX":
                continue
            found[int(p.name)] = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue
    return found


def _signal(pids, sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def stop(proc: Proc, timeout: float = 40.0) -> None:
    """SIGTERM, wait up to `timeout` (the SuperLink's graceful shutdown can take ~30 s while
    SuperNodes hold connections), then SIGKILL its process group."""
    if proc.alive():
        _signal([proc.pid], signal.SIGTERM)
        try:
            proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.popen.wait(10)
    proc.close_log()


def kill_leftovers(home: Path, timeout: float = 15.0) -> dict[int, str]:
    """SIGTERM, then SIGKILL, every process still carrying our FLWR_HOME; returns what survived."""
    left = processes_with_home(home)
    if left:
        _signal(left, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while left and time.monotonic() < deadline:
            time.sleep(0.25)
            left = processes_with_home(home)
        _signal(left, signal.SIGKILL)
        time.sleep(0.5)
        left = processes_with_home(home)
    return left


def wait_tls(host: str, port: int, ca_cert: Path, proc: Proc | None = None, timeout: float = 60.0) -> None:
    """Wait until `host:port` completes a TLS handshake verified against `ca_cert`."""
    ctx = ssl.create_default_context(cafile=str(ca_cert))
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise FedembedError(f"{proc.name} exited with code {proc.popen.returncode}; "
                                f"its log ({proc.log_path}) ends:\n{proc.log_text()[-2000:]}")
        try:
            with socket.create_connection((host, port), timeout=2) as raw:
                with ctx.wrap_socket(raw, server_hostname=host):
                    return
        except (OSError, ssl.SSLError) as exc:
            last = exc
            time.sleep(0.25)
    raise FedembedError(f"nothing answered TLS on {host}:{port} within {timeout:.0f}s ({last})")


def wait_for_log(proc: Proc, needle: str, timeout: float) -> bool:
    """True once `needle` appears in the process's log; False on timeout or exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in proc.log_text():
            return True
        if not proc.alive():
            return needle in proc.log_text()
        time.sleep(0.25)
    return False


def run_flwr(args: list[str], home: Path, cwd: Path, timeout: float, check: bool = True) -> subprocess.CompletedProcess:
    """One `flwr` CLI call with our environment; a clear error naming the command when it fails."""
    cmd = [tool("flwr"), *args]
    try:
        res = subprocess.run(cmd, cwd=cwd, env=flower_env(home), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise FedembedError(f"`flwr {' '.join(args)}` did not finish within {timeout:.0f}s") from exc
    if check and res.returncode != 0:
        raise FedembedError(f"`flwr {' '.join(args)}` failed (exit {res.returncode}):\n{(res.stdout + res.stderr)[-3000:]}")
    return res


def write_connection(home: Path, name: str, address: str, ca_cert: Path | None) -> Path:
    """Write the Flower config ($FLWR_HOME/config.toml) with one SuperLink connection, the default.

    A private FLWR_HOME holds only this connection, so `flwr run . NAME` can never reach
    another SuperLink (in particular never a local simulation one).
    """
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    lines = ["[superlink]", f"default = {json.dumps(name)}", "", f"[superlink.{name}]",
             f"address = {json.dumps(address)}"]
    if ca_cert is not None:
        lines.append(f"root-certificates = {json.dumps(str(Path(ca_cert).resolve()))}")
    else:
        lines.append("insecure = true")
    path = home / "config.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
