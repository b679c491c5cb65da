"""The ClientApp's secure-aggregation handlers (client/app.py registers them): content in, content out.

The protocol lives in fedembed.secagg.client; here it meets local training
(fedembed.federation.client) and the node's identity and state from Flower's `Context`.
"""
from __future__ import annotations

from flwr.app import MetricRecord, RecordDict

from fedembed.errors import FedembedError
from fedembed.federation import client as train_client, wire
from fedembed.secagg import client as proto, messages as msg


def _pid(context) -> int:
    return int(context.node_config["partition-id"])


def keys(content: RecordDict, context) -> RecordDict:
    return proto.on_keys(content, context.state, _pid(context))


def share(content: RecordDict, context) -> RecordDict:
    return proto.on_share(content, context.state, _pid(context))


def mask(content: RecordDict, context) -> RecordDict:
    pid = _pid(context)
    data_path = context.node_config.get("data-path")

    def train(c: RecordDict):
        tables, counts, ins = wire.parse_train(c)
        return train_client.train_round(tables, counts, ins, pid, str(data_path) if data_path else None,
                                        context.state)

    y, metrics = proto.on_mask(content, context.state, pid, train)
    out = msg.with_masked(RecordDict({wire.METRICS: MetricRecord({k: float(v) for k, v in metrics.items()})}), y)
    saved = wire.parse_record_dp(context.state)
    if saved is not None:
        wire.put_record_dp(out, saved)
    return out


def unmask(content: RecordDict, context) -> RecordDict:
    return proto.on_unmask(content, context.state, _pid(context))


HANDLERS = {msg.KEYS: keys, msg.SHARE: share, msg.MASK: mask, msg.UNMASK: unmask}

ERROR_CODE = 4651    # the Error code of a secure-aggregation stage this client could not complete


def _as_message(handler):
    """Flower's (Message, Context) → Message around a content handler; a dropout or a refusal
    (any FedembedError) becomes an error reply, which the server counts as a dropout of that stage."""
    from flwr.app import Error, Message

    def run(message, context):
        try:
            return Message(content=handler(message.content, context), reply_to=message)
        except FedembedError as exc:
            return Message(error=Error(code=ERROR_CODE, reason=str(exc)), reply_to=message)

    run.__name__ = f"secagg_{handler.__name__}"
    return run


def register(app) -> None:
    """Add the four stage handlers to a ClientApp (message types in fedembed.secagg.messages)."""
    for mtype, handler in HANDLERS.items():
        category, action = mtype.split(".")
        getattr(app, category)(action)(_as_message(handler))
