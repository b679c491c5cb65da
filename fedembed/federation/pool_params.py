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


def check_cohorts(cfg, family_cohorts: bool) -> None:
    """`train.mode = "fedsgd"`, and what a pool node's vectorised cohort (one summed update for
    all its sampled users, fedembed/train/cohort.py) cannot combine with."""
    if cfg.train.mode != "fedsgd":
        return
    if not family_cohorts:
        raise ConfigError(f"train.mode = \"fedsgd\" needs a family that trains FedSGD users in one step; "
                          f"model.family = {cfg.model.family!r} does not")
    if cfg.privacy.record.enabled:
        raise ConfigError("train.mode = \"fedsgd\" is user-level: a user's one step has no record-level DP-SGD "
                          "(turn privacy.record.enabled off)")
    if not cfg.simulation.nodes:
        return                                 # one Flower node per user: every stage runs per user
    why = []
    if cfg.adversary.attack != "none":
        why.append("adversary.attack (an attack is a stage of one client's update)")
    if cfg.federation.aggregate != "rowwise" or cfg.federation.row_weight != "presence":
        why.append("federation.aggregate = \"rowwise\" with row_weight = \"presence\" (the node sums its users)")
    if cfg.privacy.user_level and cfg.privacy.denominator != "public":
        why.append("privacy.denominator = \"public\" under user-level DP (each user's clip covers its delta only)")
    if why:
        raise ConfigError("train.mode = \"fedsgd\" with simulation.nodes > 0 trains each node's users as one "
                          "vectorised cohort, which needs " + "; ".join(why))
