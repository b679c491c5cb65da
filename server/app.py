"""fedembed's Flower ServerApp: wiring only; the rounds live in fedembed.federation.server.

`flwr run .` reads [tool.flwr.app.config] (scenario, out, rounds, resume) into the
run config; `fedembed simulate` builds the same app around an already-resolved config.
"""
from __future__ import annotations

from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedembed import config as config_mod
from fedembed.federation import server
from fedembed.rundir import open_run_dir


def build(cfg: config_mod.Config, run_dir: Path, resume: bool, progress: bool = True) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        server.run(grid, cfg, run_dir, resume=resume, progress=progress)

    return app


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    rc = context.run_config
    overrides = {"federation.rounds": int(rc["rounds"])} if int(rc.get("rounds", 0)) else {}
    scenario = str(rc.get("scenario", "")) or None
    resume = bool(rc.get("resume", False))
    cfg, run_dir = open_run_dir(Path(str(rc.get("out", "runs/flwr"))), scenario, overrides, resume)
    server.run(grid, cfg, run_dir, resume=resume)
