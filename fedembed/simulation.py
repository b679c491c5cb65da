"""`fedembed.simulate`: a whole federation on this machine under Flower's simulation runtime."""
from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from fedembed.config import Config
from fedembed.report import REPORT
from fedembed.rundir import open_run_dir


def backend_config(cfg: Config) -> dict[str, Any]:
    init_args: dict[str, Any] = {"logging_level": logging.WARNING, "include_dashboard": False}
    if cfg.simulation.ray_address:
        init_args["address"] = cfg.simulation.ray_address
    else:
        init_args["num_cpus"] = os.cpu_count() or 1
        # Ray otherwise binds and connects on the default-route interface: keep it on loopback.
        init_args["_node_ip_address"] = "127.0.0.1"
    return {"client_resources": {"num_cpus": cfg.simulation.num_cpus_per_client, "num_gpus": 0.0},
            "init_args": init_args}


RAY_START_ATTEMPTS = 3


def start_local_ray(init_args: dict[str, Any], attempts: int = RAY_START_ATTEMPTS, init=None, shutdown=None) -> None:
    """Start this run's private Ray before Flower would (its backend then reuses it), retrying
    a failed start: on a crowded machine Ray's GCS or raylet sometimes misses one of its
    hard-coded 30 s start-up deadlines and Flower would end the whole simulation on that first
    try. Ray 2.55 reports these as RuntimeError ("Timed out waiting for file
    .../gcs_server_port_...") or as a bare Exception ("The current node timed out during
    startup"), so anything but a bad argument is retried."""
    import ray

    init, shutdown = init or ray.init, shutdown or ray.shutdown
    # What Flower's RayBackend.init_ray passes: workers must import this driver's sys.path.
    pythonpath = os.pathsep.join(sys.path)
    if os.environ.get("PYTHONPATH"):
        pythonpath = f"{pythonpath}{os.pathsep}{os.environ['PYTHONPATH']}"
    os.environ["PYTHONPATH"] = pythonpath
    for attempt in range(1, attempts + 1):
        try:
            init(runtime_env={"env_vars": {"PYTHONPATH": pythonpath}}, **init_args)
            return
        except (ValueError, TypeError):
            raise  # a wrong argument fails the same way every time
        except Exception as exc:  # noqa: BLE001 - see the docstring: Ray raises bare Exception here
            shutdown()
            if attempt == attempts:
                from fedembed.errors import FedembedError
                raise FedembedError(f"Ray did not start after {attempts} attempts: {exc}") from exc
            logging.getLogger(__name__).warning("Ray did not start (%s); retrying (%d/%d)", exc, attempt + 1,
                                                attempts)
            time.sleep(2.0 * attempt)


class _RunSimulationNotDeprecatedHere(logging.Filter):
    """Drops Flower 1.42's warning that `run_simulation` is deprecated in favour of `flwr run`.

    `fedembed simulate` calls it on purpose, to run a ServerApp built in this process, and
    `flwr run .` is supported beside it (docs/FLWR_RUN.md): the warning would tell users of
    `fedembed simulate` to change something they need not."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`run_simulation` function is deprecated" not in record.getMessage()


def _quiet_start() -> None:
    """What Flower and Ray print at start-up that is noise to a `fedembed simulate` user."""
    flwr_logger = logging.getLogger("flwr")
    if not any(isinstance(f, _RunSimulationNotDeprecatedHere) for f in flwr_logger.filters):
        flwr_logger.addFilter(_RunSimulationNotDeprecatedHere())
    # Ray 2.55 warns that it will stop hiding accelerators from actors that ask for none;
    # fedembed's actors ask for none and use the CPU build of torch, so opt in now.
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")


def _loopback(address: str) -> bool:
    """A private local Ray ("") or a cluster on this machine's loopback: Ray may use 127.0.0.1.
    Not for a remote cluster, where this driver must advertise its routable address."""
    host = address.removeprefix("ray://").rsplit(":", 1)[0]
    return not address or host in ("127.0.0.1", "localhost")


def _simulatable(cfg: Config) -> None:
    from fedembed.config import DEVICES
    from fedembed.errors import ConfigError

    if cfg.data.format == DEVICES:
        raise ConfigError("data.format = \"devices\" is for a deployed federation whose nodes hold their own "
                          "corpus (docs/DEPLOY.md); a simulation needs a corpus the server can partition")


def simulate(config: str | Path | Config | None = None, out: str | Path = "runs/default", *, resume: bool = False,
             overrides: dict[str, Any] | None = None, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) a scenario; returns report.json's content."""
    from flwr.simulation import run_simulation

    from client.app import app as client_app
    from fedembed.federation.pool_params import num_nodes
    from server.app import build

    cfg, run_dir = open_run_dir(Path(out), config, overrides, resume, check=_simulatable)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if _loopback(cfg.simulation.ray_address):
        # Ray 2.55 still binds its GCS and raylet to the default-route interface's address (on all
        # interfaces) despite `_node_ip_address`; this makes it pick 127.0.0.1 (docs/SCALE.md).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    backend = backend_config(cfg)
    _quiet_start()
    from fedembed.data.corpus import preload_builtin, uses_builtin

    if uses_builtin(cfg):
        preload_builtin()   # parsed up front, once, before Ray starts (fedembed/data/corpus.py)
    import ray

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if not cfg.simulation.ray_address and not ray.is_initialized():
            start_local_ray(backend["init_args"])  # Flower's backend finds it running and shuts it down at the end
        try:
            run_simulation(server_app=build(cfg, run_dir, resume, progress), client_app=client_app,
                           num_supernodes=num_nodes(cfg), backend_config=backend)
        finally:
            if ray.is_initialized():
                ray.shutdown()
    report = run_dir / REPORT
    if not report.is_file():
        from fedembed.errors import FedembedError
        raise FedembedError(f"the simulation ended without writing {report}; see the log above")
    return json.loads(report.read_text(encoding="utf-8"))
