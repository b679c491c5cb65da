"""SecAgg+ on a pool node (`simulation.nodes`): one message per node and exchange, each hosted client apart.

A pool node hosts several clients (fedembed/federation/pool.py), and SecAgg+ keeps keys,
shares and masks per client. So each of its clients' secure-aggregation state lives in the
node's `context.state` under the client's partition ("secagg_keys.3", "secagg_round.3",
"record_dp.3", "family_state.3", the names `pool.state_of` uses), and each exchange of a round sends the node *one* message naming, for every
hosted client it concerns, the stage (keys, share, mask, unmask) and that client's own records.
The node runs them one after the other, each on its client's state, and answers every client
apart, as `pool.reply_content` does for training.

Why one message and not one per client: Flower's simulation runtime (1.42, vce_api.worker)
runs a node's messages on whichever of its actors is free, each on a copy of the node's
context, and stores whichever context comes back last; two messages to one node in the same
exchange would each drop the other's state (its keys, its shares). With one message a node and
exchange, a node's state is never written twice at once.

Wire format (down, message type `BATCH`): the records all its clients share once (the mask
stage's tables, vocabulary and instruction), every client's own records as "<p>.<name>"
("3.secagg", "3.secagg_next", "3.record_dp"), and a ConfigRecord "pool" with the partitions
and each one's message type. Up: `pool.reply_content` (each client's reply as "<p>.<name>",
the failed ones with their reasons).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flwr.app import ConfigRecord, RecordDict

from fedembed.errors import UpdateError
from fedembed.federation import pool, wire
from fedembed.secagg import messages as msg

BATCH = "train.secagg_pool"
OWN = (msg.SECAGG, msg.NEXT, wire.RECORD_DP)               # a client's own records in a batch
STATE = (msg.STATE_KEYS, msg.STATE_ROUND, wire.RECORD_DP,  # a client's own records in the node's state
         wire.FAMILY_STATE)


def batch_content(items: dict[int, tuple[str, RecordDict]]) -> RecordDict:
    """One node's message for an exchange: partition → (its message type, its content)."""
    out = RecordDict()
    for p, (_, content) in items.items():
        for name, record in content.items():
            if name in OWN:
                out[f"{p}.{name}"] = record
            elif name not in out:
                out[name] = record
            elif out[name] is not record:     # the shared records are one object for all (the train content)
                raise ValueError(f"batch: partition {p}'s record {name!r} differs from another client's")
    out[pool.POOL] = ConfigRecord({"partitions": [int(p) for p in items],
                                   "types": [str(mtype) for mtype, _ in items.values()]})
    return out


def items(content: RecordDict) -> Iterator[tuple[int, str, RecordDict]]:
    """(partition, message type, its content as a one-client message would carry it), in order."""
    record = content.config_records.get(pool.POOL)
    if record is None:
        raise UpdateError("batch has no 'pool' record")
    parts, types = [int(p) for p in record["partitions"]], [str(t) for t in record["types"]]
    if len(parts) != len(types) or len(set(parts)) != len(parts):
        raise UpdateError(f"batch lists partitions {parts} with message types {types}")
    shared = {k: v for k, v in content.items() if k != pool.POOL and not k.split(".", 1)[0].isdigit()}
    for p, mtype in zip(parts, types):
        sub = RecordDict(dict(shared))
        for name in OWN:
            key = f"{p}.{name}"
            if key in content:
                sub[name] = content[key]
        yield p, mtype, sub


def hosts(node_config, partition: int) -> bool:
    """Whether this node hosts `partition`: node k of N hosts the partitions p with p % N == k."""
    return partition % int(node_config["num-partitions"]) == int(node_config["partition-id"])


@contextmanager
def client_state(holder: RecordDict, partition: int) -> Iterator[RecordDict]:
    """One client's state, out of a node's `context.state`, under the names single-client code
    uses; written back (or removed, when that code removed it) when the block ends, raise or not."""
    view = RecordDict({name: holder[f"{name}.{partition}"] for name in STATE if f"{name}.{partition}" in holder})
    try:
        yield view
    finally:
        for name in STATE:
            key = f"{name}.{partition}"
            if name in view:
                holder[key] = view[name]
            elif key in holder:
                del holder[key]
