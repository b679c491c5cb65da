"""The privacy ledger: what each round spent, per unit of privacy, kept with the checkpoint.

A *unit* is what one guarantee protects: "user" (a client's whole data; user-level
DP-FedAvg, accounted here by the server) or "record" (one sample inside a client; DP-SGD,
accounted by each client's own Opacus accountant and reported back). A unit's *mechanism*
names how noise is added: "gaussian" (central noise from a trusted server),
"distributed-gaussian" (noise shares added by clients under secure aggregation, same
accountant), "dp-sgd". Each round closes with one entry — ε spent so far and δ for every
unit that is on, with the round's parameters — which goes into metrics.jsonl; the whole
ledger goes into the checkpoint (`State.extra["privacy"]`) so `--resume` continues it.

ε so far is kept monotone (the max of the previous and the new figure): numerical
accountants (PRV) give upper bounds whose discretisation changes with the number of
rounds, and the max of two valid upper bounds is still one. ∞ (no noise) is stored and
reported as null, since JSON has no infinity.

One guarantee can be stated against several parties. A unit's headline ε is the one for the
weakest trust the run asks for (`threat_model`, fedembed/privacy/params.py); `views` keep the
same rounds accounted for the other parties (e.g. with Poisson-sampling amplification for
whoever sees only the released tables, where the headline — against a server that draws the
cohort — may credit none), so report.json can state ε for each.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from fedembed.privacy.accountant import Accountant

USER, RECORD = "user", "record"
HEADLINE_ORDER = (USER, RECORD)          # the report's headline unit: the strongest one that is on
RECORD_EPSILON = "dp_record_epsilon"     # reply metric: ε of the client's own (record-level) accountant
RECORD_DELTA = "dp_record_delta"         # reply metric: the δ that ε is stated at


def _enc(x: float) -> float | None:
    return None if math.isinf(x) else float(x)


def _dec(x: float | None) -> float:
    return math.inf if x is None else float(x)


@dataclass
class Unit:
    name: str
    mechanism: str
    delta: float
    accountant: Accountant | None = None   # None: ε comes from elsewhere (`Ledger.report`)
    epsilon: float = 0.0
    rounds: int = 0                        # rounds that spent budget on this unit
    threat_model: str | None = None        # whom the headline ε is stated against
    views: dict[str, Accountant] = field(default_factory=dict)     # the same rounds, for other parties
    view_epsilon: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "mechanism": self.mechanism, "delta": self.delta, "epsilon": _enc(self.epsilon),
                "rounds": self.rounds, "accountant": self.accountant.to_dict() if self.accountant else None,
                "threat_model": self.threat_model, "views": {k: a.to_dict() for k, a in self.views.items()},
                "view_epsilon": {k: _enc(e) for k, e in self.view_epsilon.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Unit":
        acc = Accountant.from_dict(d["accountant"]) if d.get("accountant") else None
        return cls(d["name"], d["mechanism"], float(d["delta"]), acc, _dec(d["epsilon"]), int(d["rounds"]),
                   d.get("threat_model"), {k: Accountant.from_dict(a) for k, a in d.get("views", {}).items()},
                   {k: _dec(e) for k, e in d.get("view_epsilon", {}).items()})


AGAINST = {"trusted-server": "released-tables", "untrusted-server": "server"}   # the headline's adversary


def _by_threat(unit: Unit) -> dict[str, float | None]:
    """ε against each party the unit is accounted for: the headline's adversary first, then the
    views'. A trusted server sees every update, so against it there is no guarantee (null)."""
    if not unit.threat_model:
        return {}
    out = {AGAINST.get(unit.threat_model, unit.threat_model): _enc(unit.epsilon)}
    out.update({k: _enc(e) for k, e in unit.view_epsilon.items()})
    if unit.threat_model == "trusted-server":
        out["server"] = None
    return out


@dataclass
class Ledger:
    units: dict[str, Unit] = field(default_factory=dict)
    entries: list[dict[str, Any]] = field(default_factory=list)
    stopped: dict[str, Any] | None = None
    _pending: dict[str, dict[str, Any]] = field(default_factory=dict)

    def open(self, name: str, mechanism: str, delta: float, accountant: Accountant | None = None,
             threat_model: str | None = None, views: dict[str, Accountant] | None = None) -> Unit:
        """Turn a unit on (kept as it is when a resumed ledger already has it)."""
        if name not in self.units:
            self.units[name] = Unit(name, mechanism, delta, accountant, threat_model=threat_model,
                                    views=dict(views or {}))
        return self.units[name]

    def preview(self, name: str, noise_multiplier: float, sample_rate: float) -> float:
        """ε of `name` after one more round of (z, q), without spending it."""
        unit = self.units[name]
        if unit.accountant is None:
            raise ValueError(f"unit {name!r} is accounted elsewhere; it cannot be previewed")
        return max(unit.epsilon, unit.accountant.peek(noise_multiplier, sample_rate, unit.delta))

    def spend(self, name: str, noise_multiplier: float, sample_rate: float, params: dict[str, Any],
              views: dict[str, tuple[float, float]] | None = None) -> float:
        """One round of the subsampled Gaussian on a unit this ledger accounts; returns ε so far.
        `views`: the (z, q) each of the unit's other views is charged this round (default: the headline's)."""
        unit = self.units[name]
        if unit.accountant is None:
            raise ValueError(f"unit {name!r} is accounted elsewhere; use report()")
        unit.accountant.step(noise_multiplier, sample_rate)
        unit.epsilon = max(unit.epsilon, unit.accountant.epsilon(unit.delta))
        for view, acc in unit.views.items():
            z, q = (views or {}).get(view, (noise_multiplier, sample_rate))
            acc.step(z, q)
            unit.view_epsilon[view] = max(unit.view_epsilon.get(view, 0.0), acc.epsilon(unit.delta))
        unit.rounds += 1
        self._pending[name] = dict(params)
        return unit.epsilon

    def annotate(self, name: str, params: dict[str, Any]) -> None:
        """The parameters the round's entry shows for `name` (known once the round is done)."""
        self._pending.setdefault(name, {}).update(params)

    def report(self, name: str, epsilon: float, delta: float, mechanism: str = "dp-sgd",
               params: dict[str, Any] | None = None) -> float:
        """ε reported by someone else's accountant (record level: the largest ε any client reports).

        A record lives on one client, so the federation's record-level ε is the maximum over
        clients of their own accountants' ε (parallel composition), kept as a running max
        because a client not sampled this round still holds what it spent before.
        """
        unit = self.open(name, mechanism, delta)
        if delta != unit.delta:
            raise ValueError(f"unit {name!r}: δ changed from {unit.delta} to {delta}")
        unit.epsilon = max(unit.epsilon, float(epsilon))
        unit.rounds += 1
        self._pending[name] = dict(params or {})
        return unit.epsilon

    def would_exceed(self, rnd: int, name: str, noise_multiplier: float, sample_rate: float,
                     budget: float) -> str | None:
        """If round `rnd` would take `name` past `budget`, record the stop and return why."""
        if budget <= 0 or name not in self.units:
            return None
        ahead = self.preview(name, noise_multiplier, sample_rate)
        if ahead <= budget:
            return None
        unit = self.units[name]
        message = (f"privacy budget reached: round {rnd} would bring {name}-level ε to {ahead:.4g} > "
                   f"max_epsilon {budget:g} (δ = {unit.delta:.3g}); stopping after round {rnd - 1} "
                   f"with ε = {unit.epsilon:.4g}")
        self.stopped = {"round": rnd, "message": message}
        return message

    def close_round(self, rnd: int) -> dict[str, Any] | None:
        """The round's entry (None when no unit is on); it is kept and returned for metrics.jsonl."""
        if not self.units:
            return None
        entry = {"round": rnd, "units": {name: {"mechanism": u.mechanism, "epsilon": _enc(u.epsilon),
                                                "delta": u.delta, "params": self._pending.get(name, {})}
                                         for name, u in self.units.items()}}
        self._pending = {}
        self.entries = [e for e in self.entries if e["round"] < rnd] + [entry]
        return entry

    def headline(self) -> Unit | None:
        on = [self.units[n] for n in HEADLINE_ORDER if n in self.units]
        return on[0] if on else (next(iter(self.units.values())) if self.units else None)

    def summary(self) -> dict[str, Any]:
        """report.json's `privacy` section; every key is present when privacy is off too."""
        head = self.headline()
        return {"epsilon": _enc(head.epsilon) if head else None, "delta": head.delta if head else None,
                "unit": head.name if head else None, "mechanism": head.mechanism if head else "none",
                "accountant": head.accountant.kind if head and head.accountant else None,
                "rounds": head.rounds if head else 0, "stopped": self.stopped,
                "threat_model": head.threat_model if head else None,
                "epsilon_by_threat": _by_threat(head) if head else {},
                "units": {n: {"epsilon": _enc(u.epsilon), "delta": u.delta, "mechanism": u.mechanism,
                              "rounds": u.rounds, "threat_model": u.threat_model,
                              "epsilon_by_threat": _by_threat(u)} for n, u in self.units.items()}}

    def to_dict(self) -> dict[str, Any]:
        return {"units": {n: u.to_dict() for n, u in self.units.items()}, "entries": self.entries,
                "stopped": self.stopped}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Ledger":
        if not d:
            return cls()
        return cls({n: Unit.from_dict(u) for n, u in d.get("units", {}).items()}, list(d.get("entries", [])),
                   d.get("stopped"))
