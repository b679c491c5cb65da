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
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from flwr.app import Message

POLL_S = 0.01
MAX_POLL_S = 0.025


def send_and_receive(grid, messages: Iterable[Message], window: int = 0, timeout: float | None = None,
                     poll_s: float = POLL_S, max_poll_s: float = MAX_POLL_S) -> Iterator[Message]:
    """Replies in arrival order. `window` 0 = every message at once; `timeout` bounds the
    whole batch like Flower's: messages not answered (or not yet sent) by then get no reply."""
    messages = list(messages)
    if not hasattr(grid, "pull_messages"):  # a grid with only the one-call API (test doubles)
        yield from grid.send_and_receive(messages, timeout=timeout)
        return
    if window <= 0:
        window = max(1, len(messages))
    sleep = poll_s
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
            sleep = poll_s
        else:
            time.sleep(sleep)
            sleep = min(max_poll_s, sleep * 2)
