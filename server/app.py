"""fedembed's Flower ServerApp: wiring only; a run is fedembed.run.federate (data, composition,
rounds in fedembed.federation.server, then the run's outputs).

`flwr run .` reads [tool.flwr.app.config] (scenario, out, rounds, resume) into the
run config, hosts the scenario's clients on however many SuperNodes the federation has
(fedembed/federation/supernodes.py) and logs any failure's cause (docs/FLWR_RUN.md);
`fedembed simulate` builds the same app around an already-resolved config.
"""
from __future__ import annotations

import traceback
from logging import DEBUG, ERROR, INFO
from pathlib import Path

from flwr.app import Context
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

from fedembed import config as config_mod
from fedembed.data.corpus import preload_builtin, uses_builtin
from fedembed.errors import FedembedError
from fedembed.federation import supernodes
from fedembed.rundir import open_run_dir
from fedembed.run import federate


def build(cfg: config_mod.Config, run_dir: Path, resume: bool, progress: bool = True) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        federate(grid, cfg, run_dir, resume=resume, progress=progress)

    return app


app = ServerApp()


def _absolute(path: str) -> Path:
    """`out`/`scenario` from the run config, made absolute against this process's cwd.

    Under `flwr run .` this ServerApp runs in a `flwr-simulation` process spawned by the
    SuperLink, so its cwd is the directory the SuperLink was started from (for a local
    SuperLink started by `flwr run`, the directory that command ran in), not necessarily
    the caller's; resolving once here makes the run directory and errors name the real
    location. Paths inside a scenario file (data.corpus, vocab.source) resolve against
    the same cwd. See docs/FLWR_RUN.md.
    """
    return Path(path).expanduser().resolve()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """`flwr run .`'s run. Any failure is logged with its cause before it ends the run, so that
    `flwr log` says why (the runtime's own report is "Task failed with unknown error")."""
    try:
        _run(grid, context)
    except BaseException as exc:
        log(ERROR, "fedembed: the run failed: %s", _cause(exc))
        if not isinstance(exc, FedembedError):
            log(DEBUG, "%s", "".join(traceback.format_exception(exc)))
        raise


def _run(grid: Grid, context: Context) -> None:
    rc = context.run_config
    overrides = {"federation.rounds": int(rc["rounds"])} if int(rc.get("rounds", 0)) else {}
    scenario = _absolute(str(rc["scenario"])) if str(rc.get("scenario", "")) else None
    resume = bool(rc.get("resume", False))
    cfg, run_dir = open_run_dir(_absolute(str(rc.get("out", "runs/flwr"))), scenario, overrides, resume)
    log(INFO, "fedembed: scenario %s, run directory %s", scenario or "(built-in default)", run_dir)
    if uses_builtin(cfg):
        preload_builtin()         # parsed once, up front (in this process; nothing of it forks)
    cfg = supernodes.fit(cfg, supernodes.count(grid))
    log(INFO, "fedembed: %s", supernodes.describe(cfg))
    federate(grid, cfg, run_dir, resume=resume)
    log(INFO, "fedembed: run directory %s complete", run_dir)


def _cause(exc: BaseException) -> str:
    """One line: a FedembedError's message as it is, anything else with its type."""
    text = " ".join(str(exc).split())
    if isinstance(exc, FedembedError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
