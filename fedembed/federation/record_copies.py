"""The server's copy of each client's record-level accountant state, by partition id.

A client's Opacus accountant lives in its node's `context.state`, which does not outlive its
process. The server therefore keeps the last state each client reported (every plain reply
carries it), saves it in the checkpoint's `extra`, and sends it back in the train message, so
that after `--resume` the clients' ε continues instead of restarting at zero. Under SecAgg+ no
reply carries it (its parameters reveal the client's sample count): the state stays on the
node, and such a run is not resumed (fedembed/run.py).
"""
from __future__ import annotations

from typing import Any

from flwr.app import RecordDict

from fedembed.federation.wire import parse_record_dp, with_record_dp
from fedembed.privacy.record_state import State, latest


class ServerCopies:
    """Taken from every reply, saved in the checkpoint, sent back in the train message."""
    KEY = "record_dp_states"

    def __init__(self, extra: dict[str, Any] | None = None) -> None:
        self.states: dict[int, State] = {int(k): v for k, v in (extra or {}).get(self.KEY, {}).items()}

    def observe(self, partition: int, reply: RecordDict) -> None:
        state = parse_record_dp(reply)
        if state is not None:
            self.states[partition] = latest(state, self.states.get(partition))  # type: ignore[assignment]

    def content_for(self, partition: int, content: RecordDict) -> RecordDict:
        """The train message for one client: `content` plus that client's state, when there is one."""
        state = self.states.get(partition)
        return with_record_dp(content, state) if state is not None else content

    def save(self, extra: dict[str, Any]) -> None:
        if self.states:
            extra[self.KEY] = {str(k): v for k, v in self.states.items()}
