"""Partition discovery: the server refuses to start a federation some nodes did not join."""
from __future__ import annotations

import pytest

from fedembed.errors import FedembedError
from fedembed.federation.server import discover_partitions
from inprocess_grid import InProcessGrid


def test_every_node_reports_its_partition():
    assert discover_partitions(InProcessGrid(4), 4, wait_s=1) == {p: 100 + p for p in range(4)}


def test_missing_replies_stop_the_run_instead_of_running_empty_rounds():
    with pytest.raises(FedembedError, match="only 2 of 4 connected nodes reported"):
        discover_partitions(InProcessGrid(4, silent={1, 3}), 4, wait_s=1)
