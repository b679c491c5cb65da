"""`simulation.nodes`, the node pool's size: checked with the scenario, before Flower is imported.

(The pool itself — its messages, hosting and replies — is fedembed/federation/pool.py.)
"""
from __future__ import annotations

from fedembed.errors import ConfigError


def check(cfg) -> None:
    nodes = cfg.simulation.nodes
    if nodes > cfg.partition.num_clients:
        raise ConfigError(f"simulation.nodes ({nodes}) exceeds partition.num_clients "
                          f"({cfg.partition.num_clients}): a node hosts one or more clients")


def num_nodes(cfg) -> int:
    """Flower nodes the federation has: the pool, or one per client."""
    return cfg.simulation.nodes or cfg.partition.num_clients
