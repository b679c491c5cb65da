"""Opening a run directory: a new run writes its resolved config; a resumed one reads it back.

A new run never overwrites a directory that already holds a run (nothing saved is lost);
a resumed run refuses a scenario that differs from the one it started with, except for
`federation.rounds`, which may grow.

A run counts as started only once its data is prepared: a new run writes the marker
`PREPARING` next to its config, and `fedembed.data.prepare.prepare` removes it when the
vocabulary and shards are complete (`mark_prepared`). A directory still holding the marker
and no checkpoint failed (or was killed) while preparing: it holds nothing that cannot be
rebuilt, so a new run may take it over and `--resume` may start it afresh, with the scenario
it was given or, without one, with the saved one.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from fedembed import checkpoint, compose, config as config_mod
from fedembed.preparing import PREPARING, unprepared
from fedembed.errors import CheckpointError, ConfigError

CONFIG = "config.toml"

log = logging.getLogger(__name__)


def open_run_dir(out: Path, scenario: str | Path | config_mod.Config | None, overrides: dict[str, Any] | None,
                 resume: bool, check: Callable[[config_mod.Config], None] | None = None
                 ) -> tuple[config_mod.Config, Path]:
    """`check`: the caller's own refusals, applied before anything is written."""
    out = Path(out)
    overrides = dict(overrides or {})
    if resume:
        saved_path = out / CONFIG
        if not saved_path.is_file():
            raise CheckpointError(f"cannot resume: {out} has no {CONFIG} (was a run started there?)")
        if unprepared(out) and (scenario is not None or overrides):
            # Nothing was trained: the scenario (or settings) given replace those that never got going.
            return _start(out, scenario if scenario is not None else compose.load(saved_path), overrides, check)
        saved = compose.load(saved_path)
        if check is not None:
            check(saved)
        rounds = overrides.pop("federation.rounds", None)
        if scenario is not None or overrides:
            asked = scenario if isinstance(scenario, config_mod.Config) else compose.load(scenario, overrides)
            asked.federation.rounds = saved.federation.rounds
            if asked.to_dict() != saved.to_dict():
                diff = _diff(saved.to_dict(), asked.to_dict())
                raise ConfigError(f"cannot resume {out} with a different scenario ({', '.join(diff)} differ)")
        if rounds is not None:
            done = checkpoint.load(out).round if checkpoint.exists(out) else 0
            if rounds < done:
                raise ConfigError(f"--rounds {rounds} is below the rounds already done in {out}")
            saved.federation.rounds = int(rounds)
            compose.validate(saved)
            saved.save(saved_path)
        return saved, out
    if ((out / CONFIG).exists() or checkpoint.exists(out)) and not unprepared(out):
        raise ConfigError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    return _start(out, scenario, overrides, check)


def _start(out: Path, scenario: str | Path | config_mod.Config | None, overrides: dict[str, Any],
           check: Callable[[config_mod.Config], None] | None) -> tuple[config_mod.Config, Path]:
    """A new run in `out` (empty, or left by a run that never finished preparing)."""
    cfg = scenario if isinstance(scenario, config_mod.Config) else compose.load(scenario, overrides)
    if isinstance(scenario, config_mod.Config) and overrides:
        cfg = compose.load(None, {**config_mod.flatten(cfg.to_dict()), **overrides})
    if check is not None:
        check(cfg)
    if unprepared(out):
        log.info("%s holds a run that never finished preparing its data: starting over there", out)
    out.mkdir(parents=True, exist_ok=True)
    (out / PREPARING).touch()  # first: a config without the marker means a run whose data was prepared
    cfg.save(out / CONFIG)
    return cfg, out


def _diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    fa, fb = config_mod.flatten(a), config_mod.flatten(b)
    return sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))
