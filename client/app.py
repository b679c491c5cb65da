"""fedembed's Flower ClientApp: wiring only; local training lives in fedembed.federation.client.

The node's partition comes from its node config (`partition-id`, `num-partitions`, set by
the simulation runtime or `flower-supernode --node-config`); an optional `data-path`
points a real device at its own shard directory. `context.state` persists per node across
rounds: record-level DP keeps its privacy accountant there (and reports it in a plain reply;
a secure reply is the masked vector alone).
The update's stages come from the composition root (`fedembed.compose.client_stages`).
"""
from __future__ import annotations

from flwr.app import Context, Error, Message
from flwr.clientapp import ClientApp

from fedembed import compose
from fedembed.federation import behaviour, client, pool, secure_client, wire

app = ClientApp()
secure_client.register(app, compose.secure_pipeline)  # SecAgg+'s stages (train.secagg_share, …)


@app.query()
def query(msg: Message, context: Context) -> Message:
    nc = context.node_config
    return Message(content=wire.node_content(int(nc["partition-id"]), int(nc["num-partitions"])), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    tables, counts, ins = wire.parse_train(msg.content)
    if pool.partitions(msg.content) is not None:  # a pool node's clients (simulation.nodes)
        return Message(content=client.train_pooled(tables, counts, ins, msg.content, context.state,
                                                   pipeline=compose.client_stages), reply_to=msg)
    data_path = context.node_config.get("data-path")
    try:
        update = client.train_round(tables, counts, ins, int(context.node_config["partition-id"]),
                                    str(data_path) if data_path else None, context.state,
                                    pipeline=compose.client_stages)
    except behaviour.Dropped as exc:  # a simulated dropout (behaviour.dropout): an error reply, no update
        return Message(error=Error(code=behaviour.ERROR_CODE, reason=str(exc)), reply_to=msg)
    return Message(content=client.reply(update, ins, context.state), reply_to=msg)
