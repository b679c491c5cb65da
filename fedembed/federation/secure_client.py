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
from fedembed.federation import client as train_client, wire
from fedembed.secagg import client as proto, messages as msg
from fedembed.secagg.client import MaskContext
from fedembed.updates import ClientContext, Stage

SecurePipeline = Callable[[Config, ClientContext, MaskContext], list[Stage]]


def _pid(context) -> int:
    return int(context.node_config["partition-id"])


def keys(content: RecordDict, context) -> RecordDict:
    return proto.on_keys(content, context.state, _pid(context))


def share(content: RecordDict, context) -> RecordDict:
    return proto.on_share(content, context.state, _pid(context))


def mask(content: RecordDict, context, pipeline: SecurePipeline) -> RecordDict:
    pid = _pid(context)
    data_path = context.node_config.get("data-path")

    def train(c: RecordDict, mctx: MaskContext):
        tables, counts, ins = wire.parse_train(c)
        return train_client.train_round(tables, counts, ins, pid, str(data_path) if data_path else None,
                                        context.state, pipeline=lambda cfg, ctx: pipeline(cfg, ctx, mctx))

    update = proto.on_mask(content, context.state, pid, train)
    # The masked vector and nothing else: the metrics the server may learn are summed inside it
    # (fedembed/secagg/tally.py); the record-level accountant stays in the node's state, since its
    # parameters (q = batch / n, steps) are functions of this client's sample count.
    return msg.with_masked(RecordDict(), update.vector)


def unmask(content: RecordDict, context) -> RecordDict:
    return proto.on_unmask(content, context.state, _pid(context))


ERROR_CODE = 4651    # the Error code of a secure-aggregation stage this client could not complete


def handlers(pipeline: SecurePipeline) -> dict[str, Callable[[RecordDict, object], RecordDict]]:
    """Message type → content handler, the mask stage bound to the run's pipeline."""
    return {msg.KEYS: keys, msg.SHARE: share, msg.MASK: lambda c, ctx: mask(c, ctx, pipeline),
            msg.UNMASK: unmask}


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
    """Add the four stage handlers to a ClientApp (message types in fedembed.secagg.messages)."""
    register_as = {"query": app.query, "train": app.train}   # Flower's decorators, by message category
    for mtype, handler in handlers(pipeline).items():
        category, action = mtype.split(".")
        register_as[category](action)(_as_message(handler, action.removeprefix("secagg_")))
