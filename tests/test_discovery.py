"""Partition discovery: the server refuses to start a federation some nodes did not join."""
from __future__ import annotations

import pytest

from fedembed.errors import FedembedError
from fedembed.federation.server import discover_partitions
from test_aggregate import InProcessGrid, _task_identity  # noqa: F401  (the fixture is autouse)


class _SilentNodes(InProcessGrid):
    """Nodes `silent` never answer the partition query (as when Ray actors start too late)."""

    def __init__(self, num: int, silent: set[int]):
        super().__init__(num)
        self.silent = silent

    def send_and_receive(self, messages, timeout=None):
        return [r for r in super().send_and_receive(messages, timeout)
                if self.nodes[r.metadata.src_node_id] not in self.silent]


def test_every_node_reports_its_partition():
    assert discover_partitions(InProcessGrid(4), 4, wait_s=1) == {p: 100 + p for p in range(4)}


def test_missing_replies_stop_the_run_instead_of_running_empty_rounds():
    with pytest.raises(FedembedError, match="only 2 of 4 connected nodes reported"):
        discover_partitions(_SilentNodes(4, {1, 3}), 4, wait_s=1)
