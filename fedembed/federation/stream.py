"""Send a round's messages with a bounded number in flight, yielding replies as they arrive.

Why: Flower's simulation runtime (1.42) hands messages to its Ray actors by polling its
in-memory LinkState every 0.1 s, once per registered node, and each poll scans every message
still stored (delivered ones stay until their reply is pulled). With 1,000 nodes and 100
messages pushed at once that is ~10^5 checks per 0.1 s: one of the 2 cores here spent on
polling instead of training. Keeping at most `window` messages in the LinkState makes the
scan ~window/100 as long, and pulling replies as they come lets the server fold updates in
while later clients still train (and hold one reply at a time, not the whole round).
`window` 0 sends every message at once.

Replies are pulled here rather than by `Grid.send_and_receive`, whose loop sleeps 3 s between
pulls on the deployment runtime's HTTP grid (flwr 1.42 `http_grid.py`): on a loopback
federation that sleep was a large part of every message's round trip. The poll interval
starts at `poll_s` and backs off to `max_poll_s` while nothing arrives.

The same grid pulls a reply's objects (its arrays) with Flower's retry schedule: 1 s after the
first miss, doubling. The SuperLink hands a reply out as soon as its head arrived, often before
the node finished pushing its objects, so nearly every reply waited a whole second on loopback.
`fast_object_retries` makes that grid retry after 5 ms, doubling to 0.1 s. Flower's limit of
500 tries (meant for its 1–10 s schedule: over an hour) would then end a slow node's upload
after ~50 s, so tries are unbounded and Flower's 2 h per object is the limit.
"""
from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fedembed.errors import ConfigError

if TYPE_CHECKING:  # not at run time: `fedembed --help` builds its parser from modules importing this one
    from flwr.app import Message

POLL_S = 0.01
MAX_POLL_S = 0.025
OBJECT_RETRY_S, MAX_OBJECT_RETRY_S = 0.005, 0.1


@dataclass
class Backoff:
    """Seconds to wait before the next poll: `low` right after something came, doubling to `high`
    (this loop's reply polls; a deployed node's message polls, fedembed/deploy/node_runtime.py)."""
    low: float
    high: float
    current: float = field(init=False)

    def __post_init__(self) -> None:
        if not 0 < self.low <= self.high:
            raise ConfigError(f"poll interval must satisfy 0 < min <= max, got min {self.low}, max {self.high}")
        self.current = self.low

    def reset(self) -> None:
        self.current = self.low

    def next(self) -> float:
        wait = self.current
        self.current = min(self.current * 2, self.high)
        return wait


def fast_object_retries() -> bool:
    """Make Flower's HTTP grid (the deployment runtime's) retry a missing object after 5 ms, not 1 s.

    Idempotent; True when the grid module is there (it is not in every Flower install)."""
    try:
        from flwr.superlink.grid import http_grid
    except ImportError:
        return False
    if not getattr(http_grid.pull_objects, "fedembed_fast", False):
        fast = functools.partial(http_grid.pull_objects, initial_backoff=OBJECT_RETRY_S,
                                 backoff_cap=MAX_OBJECT_RETRY_S, max_tries_per_object=None)
        fast.fedembed_fast = True  # type: ignore[attr-defined]
        http_grid.pull_objects = fast
    return True


def send_and_receive(grid, messages: Iterable[Message], window: int = 0, timeout: float | None = None,
                     poll_s: float = POLL_S, max_poll_s: float = MAX_POLL_S) -> Iterator[Message]:
    """Replies in arrival order. `window` 0 = every message at once; `timeout` bounds the
    whole batch like Flower's: messages not answered (or not yet sent) by then get no reply."""
    messages = list(messages)
    fast_object_retries()
    if window <= 0:
        window = max(1, len(messages))
    backoff = Backoff(poll_s, max_poll_s)
    deadline = time.monotonic() + timeout if timeout else None
    waiting = messages[::-1]  # pop() sends them in the given order
    in_flight: set[str] = set()
    while waiting or in_flight:
        if waiting and len(in_flight) < window:
            batch = [waiting.pop() for _ in range(min(window - len(in_flight), len(waiting)))]
            in_flight.update(grid.push_messages(batch))
        replies = list(grid.pull_messages(in_flight)) if in_flight else []
        for reply in replies:
            in_flight.discard(reply.metadata.reply_to_message_id)
            yield reply
        if deadline is not None and time.monotonic() >= deadline:
            return
        if replies:
            backoff.reset()
        else:
            time.sleep(backoff.next())
