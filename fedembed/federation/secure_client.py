"""The ClientApp's secure-aggregation handlers (client/app.py registers them): content in, content out.

The protocol lives in fedembed.secagg.client; here it meets local training
(fedembed.federation.client) and the node's identity and state from Flower's `Context`. The
mask stage trains and runs the update through the pipeline the composition root builds for
this mask context, whose last stages noise, tally, quantize and mask it, and answers with the
masked vector alone: the metrics the server may learn are sums inside it
(fedembed/secagg/tally.py), and record-level DP's accountant stays in the node's state (its
q = batch / n and steps reveal the client's sample count).
"""
from __future__ import annotations

from typing import Callable

from flwr.app import RecordDict

from fedembed.config import Config
from fedembed.errors import FedembedError
from fedembed.federation import client as train_client, pool, pool_batch, wire
from fedembed.secagg import client as proto, messages as msg
from fedembed.secagg.client import MaskContext, SecAggClientError
from fedembed.updates import ClientContext, Stage

SecurePipeline = Callable[[Config, ClientContext, MaskContext], list[Stage]]


# A stage: (content, the client's state, its partition, its data path) → reply content. The node's
# own client (one node per client) uses context.state itself; a pool node's each hosted client
# its own slice of it (fedembed/federation/pool_batch.py).
StageHandler = Callable[[RecordDict, RecordDict, int, "str | None"], RecordDict]


def keys(content: RecordDict, state: RecordDict, pid: int, data_path: str | None = None) -> RecordDict:
    return proto.on_keys(content, state, pid)


def share(content: RecordDict, state: RecordDict, pid: int, data_path: str | None = None) -> RecordDict:
    return proto.on_share(content, state, pid)


def mask(content: RecordDict, state: RecordDict, pid: int, data_path: str | None,
         pipeline: SecurePipeline) -> RecordDict:
    def train(c: RecordDict, mctx: MaskContext):
        tables, counts, ins = wire.parse_train(c)
        return train_client.train_round(tables, counts, ins, pid, data_path, state,
                                        pipeline=lambda cfg, ctx: pipeline(cfg, ctx, mctx))

    update = proto.on_mask(content, state, pid, train)
    # The masked vector and nothing else: the metrics the server may learn are summed inside it
    # (fedembed/secagg/tally.py); the record-level accountant stays in the node's state, since its
    # parameters (q = batch / n, steps) are functions of this client's sample count.
    return msg.with_masked(RecordDict(), update.vector)


def unmask(content: RecordDict, state: RecordDict, pid: int, data_path: str | None = None) -> RecordDict:
    return proto.on_unmask(content, state, pid)


def stages(pipeline: SecurePipeline) -> dict[str, StageHandler]:
    """Message type → stage handler, the mask stage bound to the run's pipeline."""
    return {msg.KEYS: keys, msg.SHARE: share, msg.MASK: lambda c, st, p, d: mask(c, st, p, d, pipeline),
            msg.UNMASK: unmask}


def pooled(content: RecordDict, context, table: dict[str, StageHandler]) -> RecordDict:
    """A pool node's message (fedembed/federation/pool_batch.py): each hosted client's stage in
    turn, on that client's own state; a client that fails or refuses fails alone."""
    replies: dict[int, RecordDict] = {}
    errors: dict[int, str] = {}
    for p, mtype, sub in pool_batch.items(content):
        try:
            if not pool_batch.hosts(context.node_config, p):
                raise SecAggClientError(f"node {context.node_config['partition-id']} of "
                                        f"{context.node_config['num-partitions']} does not host partition {p}")
            if mtype not in table:
                raise SecAggClientError(f"partition {p}: {mtype!r} is not a secure-aggregation stage")
            with pool_batch.client_state(context.state, p) as state:
                replies[p] = table[mtype](sub, state, p, None)
        except FedembedError as exc:
            errors[p] = str(exc)
    return pool.reply_content(replies, errors)


def handlers(pipeline: SecurePipeline) -> dict[str, Callable[[RecordDict, object], RecordDict]]:
    """Message type → Flower content handler (content, context): the four stages for the node's own
    client (partition from its node config), and the pool node's batch."""
    table = stages(pipeline)

    def own(stage: StageHandler):
        def handle(content: RecordDict, context) -> RecordDict:
            data_path = context.node_config.get("data-path")
            return stage(content, context.state, int(context.node_config["partition-id"]),
                         str(data_path) if data_path else None)
        return handle

    return {**{mtype: own(stage) for mtype, stage in table.items()},
            pool_batch.BATCH: lambda content, context: pooled(content, context, table)}


ERROR_CODE = 4651    # the Error code of a secure-aggregation stage this client could not complete


def _as_message(handler, name: str):
    """Flower's (Message, Context) → Message around a content handler; a dropout or a refusal
    (any FedembedError) becomes an error reply, which the server counts as a dropout of that stage."""
    from flwr.app import Error, Message

    def run(message, context):
        try:
            return Message(content=handler(message.content, context), reply_to=message)
        except FedembedError as exc:
            return Message(error=Error(code=ERROR_CODE, reason=str(exc)), reply_to=message)

    run.__name__ = f"secagg_{name}"
    return run


def register(app, pipeline: SecurePipeline) -> None:
    """Add the four stage handlers and the pool node's batch to a ClientApp (message types in
    fedembed.secagg.messages and fedembed.federation.pool_batch)."""
    register_as = {"query": app.query, "train": app.train}   # Flower's decorators, by message category
    for mtype, handler in handlers(pipeline).items():
        category, action = mtype.split(".")
        register_as[category](action)(_as_message(handler, action.removeprefix("secagg_")))
