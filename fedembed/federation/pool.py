"""Many simulated clients on a pool of Flower nodes (`simulation.nodes`): one message a node a round.

Why: Flower's simulation runtime (1.42) costs ~50–80 ms per message before any training,
pickles the round's tables into Ray's object store once per message, and polls every
registered node every 0.1 s. With 1,000 clients of ~30 ms local work each, that cost was
larger than the training (docs/BENCHMARKS.md, "Scale"). With a pool of N nodes, node k hosts
the partitions p with p % N == k and receives, each round, one message naming those of its
partitions that were sampled; it trains them one after another and answers with each
client's update kept apart, so the server checks, aggregates and accounts every client
exactly as with one node per client.

Hosting is fixed (p % N), so a node's `context.state` keeps each of its clients' record-level
accountants from round to round, under a per-partition key. Secure aggregation runs on a pool
too: each hosted client's keys, shares and masks are kept apart the same way, one message per
node and exchange (fedembed/federation/pool_batch.py).

Wire format (train): the usual train content plus a ConfigRecord "pool" listing the
partitions, and each partition's record-level state (when the server holds one) as
"record_dp.<p>". Reply: every client's reply records under "<p>.<name>" ("3.update",
"3.weights", "3.metrics", …), and a ConfigRecord "pool" with the partitions answered and the
reasons of those that failed (a simulated dropout).
"""
from __future__ import annotations

from typing import Any

from flwr.app import ConfigRecord, RecordDict

from fedembed.errors import UpdateError
from fedembed.federation import wire

POOL = "pool"


def hosts(partitions: int, node_of_index: dict[int, int]) -> dict[int, int]:
    """Partition id → node id, from the nodes' own indices (node k hosts p % N == k)."""
    n = len(node_of_index)
    return {p: node_of_index[p % n] for p in range(partitions)}


def train_content(content: RecordDict, partitions: list[int], states: dict[int, dict[str, Any]]) -> RecordDict:
    """One node's train message: the shared `content` (not copied: arrays are shared) plus
    the partitions to train and their accountant states."""
    out = RecordDict(dict(content.items()))
    out[POOL] = ConfigRecord({"partitions": [int(p) for p in partitions]})
    for p in partitions:
        if p in states:
            out[f"{wire.RECORD_DP}.{p}"] = wire.record_dp_record(states[p])
    return out


def partitions(content: RecordDict) -> list[int] | None:
    """The partitions a pool message asks for; None for a one-client message."""
    record = content.config_records.get(POOL)
    return [int(p) for p in record["partitions"]] if record is not None else None


def state_of(holder: RecordDict, partition: int) -> RecordDict:
    """One client's view of a pooled record (a message or the node's `context.state`): its
    record-level state under the usual name, so single-client code reads it unchanged."""
    out = RecordDict()
    key = f"{wire.RECORD_DP}.{partition}"
    if key in holder.config_records:
        out[wire.RECORD_DP] = holder.config_records[key]
    family = f"{wire.FAMILY_STATE}.{partition}"   # only ever in the node's context.state
    if family in holder.array_records:
        out[wire.FAMILY_STATE] = holder.array_records[family]
    return out


def keep_state(holder: RecordDict, partition: int, own: RecordDict) -> None:
    """Write a client's record-level state (and its family's private arrays) back under its partition's key."""
    if wire.RECORD_DP in own.config_records:
        holder[f"{wire.RECORD_DP}.{partition}"] = own.config_records[wire.RECORD_DP]
    if wire.FAMILY_STATE in own.array_records:
        holder[f"{wire.FAMILY_STATE}.{partition}"] = own.array_records[wire.FAMILY_STATE]


def reply_content(replies: dict[int, RecordDict], errors: dict[int, str]) -> RecordDict:
    out = RecordDict()
    for p, content in replies.items():
        for name, record in content.items():
            out[f"{p}.{name}"] = record
    out[POOL] = ConfigRecord({"answered": [int(p) for p in replies], "failed": [int(p) for p in errors],
                              "reasons": [errors[p] for p in errors]})
    return out


def split_reply(content: RecordDict, asked: list[int]) -> tuple[dict[int, RecordDict], dict[int, str]]:
    """Each client's reply and each failed client's reason. A reply that answers partitions it
    was not asked for, or lacks its index, is refused whole (UpdateError)."""
    record = content.config_records.get(POOL)
    if record is None:
        raise UpdateError("pooled reply has no 'pool' record")
    answered, failed = [int(p) for p in record["answered"]], [int(p) for p in record["failed"]]
    reasons = [str(r) for r in record["reasons"]]
    stray = sorted(set(answered + failed) - set(asked))
    if stray or len(reasons) != len(failed) or len(set(answered + failed)) != len(answered + failed):
        raise UpdateError(f"pooled reply does not match the partitions asked for {sorted(asked)}: "
                          f"answered {answered}, failed {failed}")
    replies: dict[int, RecordDict] = {p: RecordDict() for p in answered}
    for key, value in content.items():
        head, _, name = key.partition(".")
        if key == POOL:
            continue
        if not name or not head.isdigit() or int(head) not in replies:
            raise UpdateError(f"pooled reply holds a record {key!r} of no answered partition")
        replies[int(head)][name] = value
    return replies, dict(zip(failed, reasons))


COHORT = "cohort"    # a pool reply holding one summed update for all its users (train.mode = "fedsgd")


def cohort_reply(tables: dict, weights: dict, metrics: dict[str, float], users: list[int],
                 errors: dict[int, str]) -> RecordDict:
    """One node's FedSGD cohort: the users' summed update (tables, weights, metrics as a client's
    reply) and a ConfigRecord naming the users it stands for and those that failed."""
    out = wire.reply_content(tables, weights, metrics)
    out[POOL] = ConfigRecord({"answered": [int(p) for p in users], "failed": [int(p) for p in errors],
                              "reasons": [errors[p] for p in errors], COHORT: True})
    return out


def is_cohort(content: RecordDict) -> bool:
    record = content.config_records.get(POOL)
    return record is not None and bool(record.get(COHORT, False))


def cohort_users(content: RecordDict, asked: list[int]) -> tuple[list[int], dict[int, str]]:
    """The users a cohort reply sums and the failed ones; refused whole if it names others."""
    record = content.config_records[POOL]
    answered, failed = [int(p) for p in record["answered"]], [int(p) for p in record["failed"]]
    reasons = [str(r) for r in record["reasons"]]
    stray = sorted(set(answered + failed) - set(asked))
    if stray or len(reasons) != len(failed) or len(set(answered + failed)) != len(answered + failed):
        raise UpdateError(f"cohort reply does not match the users asked for {sorted(asked)}: "
                          f"answered {answered}, failed {failed}")
    return answered, dict(zip(failed, reasons))
