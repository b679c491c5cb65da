"""`fedembed sweep`: a grid over one or two scenario keys, each point a run directory.

A sweep file (TOML):

    name = "dirichlet_alpha"
    base = "../scenarios/dirichlet_noniid.toml"   # relative to the sweep file; omitted = built-in default
    [set]                                         # fixed for every point (optional)
    "federation.rounds" = 10
    [grid]                                        # one or two keys, each a list of values
    "partition.alpha" = [0.05, 0.5, 50.0]
    "federation.aggregate" = ["rowwise", "fedavg"]

Every point's scenario is built and validated before anything runs. Points run one after the
other into OUT/<point>/ (e.g. OUT/alpha=0.05,aggregate=rowwise/); a point whose run directory
has report.json is skipped, one that was started is resumed (`--resume` semantics), so running
the same sweep again finishes a partly finished one. OUT/summary.md and OUT/summary.csv (one row
per point) and one PNG for the swept pair are rewritten after every point.
"""
from __future__ import annotations

import itertools
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedembed import compose, config as config_mod, metrics
from fedembed.errors import ConfigError, FedembedError
from fedembed.report import REPORT
from fedembed.rundir import CONFIG, _diff
from fedembed.summary import ATTACK_SECTIONS, row, write_csv

log = logging.getLogger(__name__)
_KEYS = {"name", "base", "set", "grid"}
_MD_COLUMNS = ("wordsim353", "simlex999", "analogy", "ratio_wordsim353", "epsilon", "dropped", "timed_out",
               "label_tv_mean", "vocab_overlap", "seconds")


@dataclass
class Point:
    name: str
    values: dict[str, Any]     # swept key → value
    cfg: config_mod.Config


@dataclass
class Sweep:
    name: str
    keys: list[str]
    values: list[list[Any]]
    points: list[Point]


def _fmt(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def _point_names(keys: list[str], combos: list[tuple[Any, ...]]) -> list[str]:
    short = [k.rsplit(".", 1)[-1] for k in keys]
    labels = short if len(set(short)) == len(short) else keys
    return [re.sub(r"[^A-Za-z0-9._=,+-]", "_", ",".join(f"{lab}={_fmt(v)}" for lab, v in zip(labels, combo)))
            for combo in combos]


def load(path: str | Path) -> Sweep:
    """Parse and validate a sweep file and every point's scenario; nothing runs."""
    path = Path(path)
    raw = config_mod.read_toml(path, "sweep file")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                          f"(a sweep file has {', '.join(sorted(_KEYS))})")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{path}: name must be a non-empty string")
    base = raw.get("base")
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"{path}: base must be the path of a scenario file")
    base_path = (path.parent / base).resolve() if base else None
    for section in ("set", "grid"):
        if not isinstance(raw.get(section, {}), dict):
            raise ConfigError(f"{path}: [{section}] must be a table of scenario keys")
    fixed = config_mod.flatten(raw.get("set", {}))
    grid = config_mod.flatten(raw.get("grid", {}))
    if not 1 <= len(grid) <= 2:
        raise ConfigError(f"{path}: [grid] must name one or two keys, it names {len(grid)}")
    for key, vals in grid.items():
        if not isinstance(vals, list) or not vals:
            raise ConfigError(f"{path}: grid.{key} must be a non-empty list of values, got {vals!r}")
        if any(isinstance(v, (list, dict)) for v in vals) or len({json.dumps(v) for v in vals}) != len(vals):
            raise ConfigError(f"{path}: grid.{key} must list distinct single values, got {vals!r}")
        if key in fixed:
            raise ConfigError(f"{path}: {key} is both in [set] and in [grid]")
    keys, values = list(grid), list(grid.values())
    combos = list(itertools.product(*values))
    points = []
    for pname, combo in zip(_point_names(keys, combos), combos):
        over = {**fixed, **dict(zip(keys, combo))}
        try:
            cfg = compose.load(base_path, over)
        except ConfigError as exc:
            raise ConfigError(f"{path}: point {pname}: {exc}") from None
        points.append(Point(pname, dict(zip(keys, combo)), cfg))
    return Sweep(name, keys, values, points)


def _check_existing(out: Path, sweep: Sweep) -> None:
    """A point directory left by another sweep definition is refused, not silently reused."""
    for p in sweep.points:
        saved = out / p.name / CONFIG
        if saved.is_file():
            have, want = compose.load(saved).to_dict(), p.cfg.to_dict()
            have["federation"]["rounds"] = want["federation"]["rounds"]  # rounds may grow on resume
            diff = _diff(have, want)
            if diff:
                raise ConfigError(f"{out / p.name} holds a run of another scenario ({', '.join(diff)} differ); "
                                  f"remove it or sweep into another --out")


def run(path: str | Path, out: str | Path | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """Run (or finish) a sweep; returns the summary rows."""
    from fedembed.simulation import simulate

    sweep = load(path)
    out = Path(out) if out else Path("runs") / "sweeps" / sweep.name
    out.mkdir(parents=True, exist_ok=True)
    _check_existing(out, sweep)
    status: dict[str, str] = {}
    for i, p in enumerate(sweep.points, 1):
        d = out / p.name
        if (d / REPORT).is_file():
            status[p.name] = "done"
            log.info("sweep %s: point %d/%d %s already finished: skipped", sweep.name, i, len(sweep.points), p.name)
            continue
        resume = (d / CONFIG).is_file()
        log.info("sweep %s: point %d/%d %s (%s)", sweep.name, i, len(sweep.points), p.name,
                 "resuming" if resume else "starting")
        try:
            if resume:
                simulate(None, d, resume=True, overrides={"federation.rounds": p.cfg.federation.rounds},
                         progress=progress)
            else:
                simulate(p.cfg, d, progress=progress)
            status[p.name] = "ran"
        except FedembedError as exc:
            status[p.name] = f"failed: {exc}"
            log.error("sweep %s: point %s failed: %s", sweep.name, p.name, exc)
        write_summary(out, sweep, status)
    rows = write_summary(out, sweep, status)
    failed = [n for n, s in status.items() if s.startswith("failed")]
    if failed:
        raise FedembedError(f"sweep {sweep.name}: {len(failed)} point(s) failed ({', '.join(failed)}); "
                            f"run the sweep again to retry them")
    return rows


def rows_of(out: Path, sweep: Sweep, status: dict[str, str] | None = None) -> list[dict[str, Any]]:
    rows = []
    for p in sweep.points:
        d = out / p.name
        report = d / REPORT
        r: dict[str, Any] = {"point": p.name, **p.values}
        if report.is_file():
            r["status"] = (status or {}).get(p.name, "done")
            r.update(row(json.loads(report.read_text(encoding="utf-8")), metrics.read(d)))
        else:
            r["status"] = (status or {}).get(p.name, "started" if (d / CONFIG).is_file() else "pending")
        r["_point"] = p.values
        rows.append(r)
    return rows


def write_summary(out: Path, sweep: Sweep, status: dict[str, str] | None = None) -> list[dict[str, Any]]:
    rows = rows_of(out, sweep, status)
    plain = [{k: v for k, v in r.items() if k != "_point"} for r in rows]
    write_csv(out / "summary.csv", plain)
    (out / "summary.md").write_text(markdown(sweep, plain), encoding="utf-8")
    finished = [r for r in rows if "wordsim353" in r]
    if finished:
        from fedembed import plots

        stem = "__".join(k.rsplit(".", 1)[-1] for k in sweep.keys)
        try:
            plots.for_sweep(out / f"{stem}.png", sweep.keys, sweep.values, finished)
        except Exception as exc:  # noqa: BLE001  (a plot must not lose the table)
            log.warning("sweep plot failed: %s: %s", type(exc).__name__, exc)
    return plain


def _cell(v: Any) -> str:
    if v is None or v == "":
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def markdown(sweep: Sweep, rows: list[dict[str, Any]]) -> str:
    attack = sorted({k for r in rows for k in r if k.split(".", 1)[0] in ATTACK_SECTIONS})[:6]
    cols = ["point", *sweep.keys, "status", *[c for c in _MD_COLUMNS if any(r.get(c) is not None for r in rows)],
            *attack]
    lines = [f"# Sweep {sweep.name}", "", f"Swept: {', '.join(sweep.keys)}; {len(rows)} points. "
             "All columns: summary.csv.", "",
             "| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"
