"""The round transport: how a round's updates become one sum, behind one interface.

Two transports implement it: the plain sum (fedembed/federation/plain_round.py: every
client's update reaches the server and is folded into the rule's collector) and the SecAgg+
sum (fedembed/federation/secure_round.py: the server only learns the sum of masked, quantized
updates). Both hand every accepted reply to the same `ReplySink` (accept), and both return a
`Collected`; the round loop (fedembed/federation/server.py) then releases it through the
privacy session (account) and applies it to the global tables — in one place for both.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from flwr.app import RecordDict

if TYPE_CHECKING:
    from fedembed.federation.accept import ReplySink


@dataclass
class RoundPlan:
    """What a transport needs to run round `rnd`."""
    rnd: int
    clients: list[int]                 # the round's sampled partitions
    nodes: dict[int, int]              # partition → Flower node id
    content: RecordDict                # the train message's content (global tables, counts, instruction)
    shapes: dict[str, tuple[int, ...]]
    lr: float
    upcoming: list[list[int]] = field(default_factory=list)   # the next rounds' clients, nearest first


@dataclass
class Collected:
    """A round's sum as the transport got it, before the privacy session releases it."""
    sums: dict[str, np.ndarray] | None          # None: nothing can be released (the round aborted)
    weights: dict[str, np.ndarray] | None
    aggregated: int                             # clients whose update is in the sums
    record: dict[str, Any]                      # the transport's metrics.jsonl fields
    noise_in_sums: tuple[int, int] | None = None  # (survivors, calibrated for): clients' noise already added
    aborted: str | None = None                  # why nothing was released


class Transport(Protocol):
    name: str

    def collect(self, grid, plan: RoundPlan, sink: "ReplySink") -> Collected: ...
