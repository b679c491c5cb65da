"""The ClientApp's discovery handlers (client/app.py registers them): a round's candidates in, a vote out.

Plain (`query.discovery_vote`): the vote vector itself; the server adds the noise (a trusted
server, as user-level DP without secure aggregation). Secure (`train.secagg_vote`): the mask
stage of a SecAgg+ round that votes instead of training — the same key, share and unmask
handlers (fedembed.federation.secure_client) before and after it, and the same last stages as
a training update's (fedembed/secagg/stages.py): range clip, this client's share of the
Gaussian noise (fedembed/privacy/distributed.py), dithered quantization, masks. The vote fills
the layout's "extra" part, the one the ranges give ±1: a vote is in [0, 1].
"""
from __future__ import annotations

from flwr.app import Error, Message, RecordDict

from fedembed.discovery import local_words, wire
from fedembed.discovery.votes import vote_vector
from fedembed.errors import FedembedError
from fedembed.secagg import client as proto, messages as msg
from fedembed.secagg.client import MaskContext, SecAggClientError
from fedembed.updates import ClientUpdate, run_pipeline

ERROR_CODE = 4661      # the Error code of a vote this client could not give


def _pid(context) -> int:
    return int(context.node_config["partition-id"])


def my_vote(content: RecordDict, pid: int):
    """This client's vote vector for the round in `content`, from its own words."""
    _, dom, words_dir = wire.parse_vote(content)
    alphabet = wire.alphabet_of(content)
    words = [w for w in local_words.client_words(words_dir, pid) if alphabet.votable(w)]
    return dom, vote_vector(dom, words)


def plain_vote(content: RecordDict, context) -> RecordDict:
    return wire.votes_content(my_vote(content, _pid(context))[1])


def masked_vote(content: RecordDict, context) -> RecordDict:
    """SecAgg+'s mask stage with a vote as the update (fedembed.secagg.client.on_mask opens the shares)."""
    from fedembed.privacy.distributed import NoiseShare
    from fedembed.secagg.stages import Mask, Quantize, RangeClip

    pid = _pid(context)

    def vote(c: RecordDict, mctx: MaskContext) -> ClientUpdate:
        dom, vector = my_vote(c, pid)
        q = mctx.quantizer({})                        # no tables: the whole vector is the "extra" part
        if q.layout.size != dom.size:
            raise SecAggClientError(f"client {pid}: the round masks {q.layout.size} values, its domain has {dom.size}")
        stages = [RangeClip(q, report=False), NoiseShare(0.0, mctx.bit_noise_std, 0, mctx.rng),
                  Quantize(q, mctx.dither_key, mctx.rng), Mask(mctx)]
        return run_pipeline(ClientUpdate({}, {}, vector=vector), stages)

    update = proto.on_mask(content, context.state, pid, vote)
    return msg.with_masked(RecordDict(), update.vector)


def _as_message(handler, name: str):
    """(Message, Context) → Message; a refusal or a simulated dropout becomes an error reply."""
    def run(message, context):
        try:
            return Message(content=handler(message.content, context), reply_to=message)
        except FedembedError as exc:
            return Message(error=Error(code=ERROR_CODE, reason=str(exc)), reply_to=message)
    run.__name__ = name
    return run


def register(app) -> None:
    """Add the two vote handlers to a ClientApp."""
    app.query(wire.PLAIN.split(".")[1])(_as_message(plain_vote, "discovery_vote"))
    app.train(wire.MASKED.split(".")[1])(_as_message(masked_vote, "secagg_vote"))
