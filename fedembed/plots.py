"""PNG plots of a run and of a sweep (matplotlib, Agg: no display needed).

A run gets quality.png (training loss, and word-similarity per round when `eval.every_round`
recorded it, plus participation when clients dropped out or timed out), utility_vs_epsilon.png
when it is private, and attack.png when report.json holds attack figures. A sweep gets one
PNG per swept pair (one, or for a single swept key one): quality, ε and attack figures
against the swept values.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from fedembed import metrics
from fedembed.summary import ATTACK_SECTIONS, flatten_numbers

log = logging.getLogger(__name__)

QUALITY = ("wordsim353", "simlex999")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def write(run_dir: Path, report: dict[str, Any]) -> None:
    """The run's PNG plots. A plot that fails is logged, never fatal: report.json is already written."""
    try:
        for path in for_run(Path(run_dir), report, metrics.read(run_dir)):
            log.info("plot written to %s", path)
    except Exception as exc:  # noqa: BLE001  (matplotlib failures must not lose a finished run)
        log.warning("plots for %s failed: %s: %s", run_dir, type(exc).__name__, exc)


def for_run(run_dir: Path, report: dict[str, Any], rounds: list[dict[str, Any]]) -> list[Path]:
    rows = [r for r in rounds if "event" not in r]
    out = [quality_per_round(run_dir / "quality.png", report, rows)] if rows else []
    if report.get("privacy", {}).get("epsilon") is not None:
        out.append(utility_vs_epsilon(run_dir / "utility_vs_epsilon.png", report, rows))
    attacks = {s: flatten_numbers(report[s]) for s in ATTACK_SECTIONS if report.get(s)}
    if any(attacks.values()):
        out.append(attack_figures(run_dir / "attack.png", report, attacks))
    return out


def quality_per_round(path: Path, report: dict[str, Any], rows: list[dict[str, Any]]) -> Path:
    plt = _pyplot()
    per_round = any("quality" in r for r in rows)
    participation = any(r.get("failed") or r.get("rejected") for r in rows)
    panels = 1 + per_round + participation
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.6), squeeze=False)
    axes = list(axes[0])
    x = [r["round"] for r in rows]
    ax = axes.pop(0)
    ax.plot(x, [r.get("train_loss") for r in rows], marker="o")
    ax.set(xlabel="round", ylabel="training loss", title="training loss")
    if per_round:
        ax = axes.pop(0)
        for name in _names(rows):
            line = ax.plot(x, [r.get("quality", {}).get(name) for r in rows], marker="o", label=name)[0]
            base = report.get("baseline", {}).get("gensim", {}).get(name, {}).get("spearman")
            if base is not None:
                ax.axhline(base, ls="--", color=line.get_color(), label=f"{name} gensim")
        ax.set(xlabel="round", ylabel="Spearman" if set(_names(rows)) <= set(QUALITY) else "quality",
               title="quality per round")
        ax.legend(fontsize=7)
    if participation:
        ax = axes.pop(0)
        bottom = [0] * len(rows)
        for key in ("clients_ok", "dropped", "timed_out", "rejected"):
            vals = [int(r.get(key, 0)) for r in rows]
            if key != "clients_ok" and not any(vals):
                continue
            ax.bar(x, vals, bottom=bottom, label=key)
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set(xlabel="round", ylabel="sampled clients", title="participation")
        ax.legend(fontsize=7)
    from matplotlib.ticker import MaxNLocator

    for ax in fig.axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(report.get("run", {}).get("name", ""), fontsize=9)
    return _save(fig, path)


def _names(rows: list[dict[str, Any]]) -> list[str]:
    """The per-round quality figures recorded (word similarity's by default), in first-seen order."""
    seen = dict.fromkeys(k for r in rows for k in (r.get("quality") or {}))
    return list(seen) or list(QUALITY)


def _epsilon(entry: dict[str, Any] | None, unit: str | None) -> float | None:
    units = (entry or {}).get("units", {})
    eps = units.get(unit, {}).get("epsilon") if unit in units else None
    return float(eps) if isinstance(eps, (int, float)) else None


def utility_vs_epsilon(path: Path, report: dict[str, Any], rows: list[dict[str, Any]]) -> Path:
    """Quality against the ε spent so far: per round when both were recorded, else the final point."""
    plt = _pyplot()
    privacy = report["privacy"]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    pts = [(_epsilon(r.get("privacy"), privacy.get("unit")), r.get("quality", {})) for r in rows]
    pts = [(e, q) for e, q in pts if e is not None and q]
    headline = (report.get("headline") or {}).get("federated") or {}
    names = _names([{"quality": q} for _, q in pts]) if pts else list(QUALITY)
    if not any(isinstance(report.get("quality", {}).get(n), dict) for n in QUALITY):
        names = sorted(set(names) | {k for k in headline if "." not in k})   # a family's own figures
    for name in names:
        if pts:
            ax.plot([e for e, _ in pts], [q.get(name) for _, q in pts], marker="o", label=f"{name} (per round)")
        q = report.get("quality", {}).get(name)
        final = q.get("spearman") if isinstance(q, dict) else headline.get(name)
        if final is not None and privacy.get("epsilon") is not None:
            ax.scatter([privacy["epsilon"]], [final], marker="*", s=120, label=f"{name} (final)")
    ax.set(xlabel=f"ε ({privacy.get('unit')}-level, δ = {privacy.get('delta')})",
           ylabel="Spearman" if set(names) <= set(QUALITY) else "quality", title="utility vs ε")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return _save(fig, path)


def _defence(report: dict[str, Any]) -> str:
    agg = report.get("aggregation")
    rule = agg.get("rule", agg.get("name")) if isinstance(agg, dict) else None
    eps = report.get("privacy", {}).get("epsilon")
    return f"defence: {rule or 'default rule'}, ε = {'∞' if eps is None else f'{eps:.3g}'}"


def attack_figures(path: Path, report: dict[str, Any], attacks: dict[str, dict[str, float]]) -> Path:
    """Every number the attack sections hold, one horizontal bar each (their meanings are the sections')."""
    plt = _pyplot()
    items = [(f"{s}.{k}", v) for s, figs in attacks.items() for k, v in figs.items()]
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(items) + 1.2))
    ax.barh(range(len(items)), [v for _, v in items])
    ax.set_yticks(range(len(items)), [k for k, _ in items], fontsize=7)
    ax.invert_yaxis()
    ax.set(title=f"attack figures ({_defence(report)})")
    return _save(fig, path)


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def for_sweep(path: Path, keys: list[str], values: list[list[Any]], rows: list[dict[str, Any]]) -> Path:
    """One figure for the swept pair (or key): each panel a figure against keys[0], one line per
    value of keys[1]. Panels: quality; ε when any point is private; each attack figure present."""
    plt = _pyplot()
    figures = [m for m in ("wordsim353", "simlex999") if any(r.get(m) is not None for r in rows)]
    panels = [("quality (Spearman)", figures)]
    private = any(r.get("epsilon") is not None for r in rows)
    if private:
        panels.append(("ε", ["epsilon"]))
    attack_cols = sorted({k for r in rows for k in r if k.split(".", 1)[0] in ATTACK_SECTIONS})
    panels += [(k, [k]) for k in attack_cols[:6]]
    fig, axes = plt.subplots(1, len(panels) + private, figsize=(5 * (len(panels) + private), 3.6), squeeze=False)
    if private:  # utility vs ε: each point at the ε it spent
        ax = axes[0][-1]
        for s in (values[1] if len(keys) > 1 else [None]):
            pts = sorted((r["epsilon"], r.get("wordsim353")) for r in rows if r.get("epsilon") is not None
                         and r.get("wordsim353") is not None and (s is None or r["_point"][keys[1]] == s))
            ax.plot([e for e, _ in pts], [q for _, q in pts], marker="o", label=None if s is None else f"{keys[1]}={s}")
        ax.set(xlabel="ε", ylabel="WordSim353 Spearman", title="utility vs ε")
        if len(keys) > 1:
            ax.legend(fontsize=7)
    xs = values[0]
    pos = xs if _numeric(xs) else list(range(len(xs)))
    series = values[1] if len(keys) > 1 else [None]
    for ax, (title, cols) in zip(axes[0], panels):
        for col in cols:
            for s in series:
                ys = []
                for x in xs:
                    match = [r for r in rows if r["_point"][keys[0]] == x and (s is None or r["_point"][keys[1]] == s)]
                    ys.append(match[0].get(col) if match else None)
                label = " ".join(p for p in (col if len(cols) > 1 else "", "" if s is None else f"{keys[1]}={s}") if p)
                ax.plot(pos, [float("nan") if y is None else y for y in ys], marker="o", label=label or None)
        if not _numeric(xs):
            ax.set_xticks(pos, [str(x) for x in xs])
        elif min(xs) > 0 and max(xs) / min(xs) >= 100:
            ax.set_xscale("log")
        ax.set(xlabel=keys[0], title=title)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return _save(fig, path)
