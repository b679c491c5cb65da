"""fedembed's Flower ClientApp: wiring only; local training lives in fedembed.federation.client.

The node's partition comes from its node config (`partition-id`, `num-partitions`, set by
the simulation runtime or `flower-supernode --node-config`); an optional `data-path`
points a real device at its own shard directory. `context.state` persists per node across
rounds: record-level DP keeps its privacy accountant there (and reports it in the reply).
"""
from __future__ import annotations

from flwr.app import Context, Error, Message
from flwr.clientapp import ClientApp

from fedembed.federation import behaviour, client, pool, wire
from fedembed.secagg import handlers as secagg

app = ClientApp()
secagg.register(app)  # SecAgg+'s stages (train.secagg_share, …): fedembed/secagg/handlers.py


@app.query()
def query(msg: Message, context: Context) -> Message:
    nc = context.node_config
    return Message(content=wire.node_content(int(nc["partition-id"]), int(nc["num-partitions"])), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    tables, counts, ins = wire.parse_train(msg.content)
    if pool.partitions(msg.content) is not None:  # a pool node's clients (simulation.nodes)
        return Message(content=client.train_pooled(tables, counts, ins, msg.content, context.state), reply_to=msg)
    data_path = context.node_config.get("data-path")
    try:
        update = client.train_round(tables, counts, ins, int(context.node_config["partition-id"]),
                                    str(data_path) if data_path else None, context.state)
    except behaviour.Dropped as exc:  # a simulated dropout (behaviour.dropout): an error reply, no update
        return Message(error=Error(code=behaviour.ERROR_CODE, reason=str(exc)), reply_to=msg)
    return Message(content=client.reply(update, ins, context.state), reply_to=msg)
