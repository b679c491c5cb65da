"""The client's record-level privacy accountant, carried from round to round.

A client that built a fresh accountant every round would report ε as if each round were
its first. The accountant's state (Opacus' `state_dict()`: mechanism and the history of
(σ, q, steps)) is therefore kept in the node's persistent state (Flower's `context.state`)
and restored before the next round's steps are added; it also travels to the server in the
reply, so the server's ledger can checkpoint it and send it back to a client that starts
afresh after `--resume`. Of two states (the node's and the server's), the one with more
steps wins: a client never forgets steps it has taken. (The server's copies of these states,
and how they travel in messages, are fedembed/federation/record_copies.py.)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fedembed.privacy.record_params import DPSGDParams

if TYPE_CHECKING:  # opacus takes seconds to import: only a client with DP on pays for it
    from opacus.accountants import IAccountant

State = dict[str, Any]   # {"mechanism": str, "history": [[σ, q, steps], ...], "noise_multiplier": σ}


def steps(state: State | None) -> int:
    return sum(int(s) for _, _, s in state["history"]) if state else 0


def latest(*states: State | None) -> State | None:
    """The state with the most steps (the first one on ties); None when there is none."""
    best: State | None = None
    for s in states:
        if s is not None and (best is None or steps(s) > steps(best)):
            best = s
    return best


def restore(mechanism: str, state: State | None) -> IAccountant:
    """An Opacus accountant continuing from `state` (a new one when None)."""
    from opacus.accountants import create_accountant

    acc = create_accountant(mechanism)
    if state is not None:
        acc.load_state_dict({"mechanism": state["mechanism"],
                             "history": [(float(n), float(q), int(s)) for n, q, s in state["history"]]})
    return acc


def capture(acc: IAccountant, params: DPSGDParams) -> State:
    return {"mechanism": acc.mechanism(), "history": [[float(n), float(q), int(s)] for n, q, s in acc.history],
            "noise_multiplier": params.noise_multiplier}


def saved_noise_multiplier(state: State | None) -> float | None:
    """σ chosen in an earlier round: kept while it still fits the target (record_params.resolve decides)."""
    return float(state["noise_multiplier"]) if state and "noise_multiplier" in state else None


def history(state: State | None) -> list[tuple[float, float, int]]:
    """The (σ, q, steps) this client has spent so far: what a re-derived σ must compose with."""
    return [(float(n), float(q), int(s)) for n, q, s in state["history"]] if state else []


def metrics(acc: IAccountant, params: DPSGDParams) -> dict[str, float]:
    """What the reply reports: ε spent so far by this client's samples, and the mechanism's parameters."""
    from fedembed.privacy.ledger import RECORD_DELTA, RECORD_EPSILON  # the names the server's ledger reads

    return {RECORD_EPSILON: float(acc.get_epsilon(delta=params.delta)), RECORD_DELTA: params.delta,
            "dp_record_noise_multiplier": params.noise_multiplier, "dp_record_sample_rate": params.sample_rate,
            "dp_record_clip": params.clip, "dp_record_steps": float(sum(s for _, _, s in acc.history))}



def secure_bound(cfg) -> dict[str, float]:
    """The record-level ε the server may state in a SecAgg+ run, as reply metrics for its ledger.

    No client's accountant state or ε travels there (fedembed/federation/secure_client.py): q =
    expected_batch / n and the steps per round are functions of the client's sample count n, which
    the server may learn only as part of a sum. What holds for every client without its data is the
    target each client's own accountant keeps its ε below (`privacy.record.target_epsilon`; a client
    that cannot refuses to train). With an explicit noise multiplier ε depends on n: nothing is
    stated, and each node's accountant is the only record of it."""
    r = cfg.privacy.record
    if not r.enabled or not r.target_epsilon > 0:
        return {}
    from fedembed.privacy.ledger import RECORD_DELTA, RECORD_EPSILON

    return {RECORD_EPSILON: float(r.target_epsilon), RECORD_DELTA: float(r.delta)}
