"""What the secure round's messages carry: record names, message types, (de)serialisation.

Four message types, each answered by a handler in fedembed.secagg.client:
  query.secagg_keys     down: —                          up: the node's channel public key (once per node)
  train.secagg_share    down: neighbours' channel keys   up: the round's mask public key, encrypted shares,
                                                              a commitment to the self-mask seed
  train.secagg_mask     down: the train content, peers' mask keys, shares for this node, the metric
                              sums asked for (`tally`)
                        up: the masked, quantized update (uint32/uint64), with the metric sums
                            inside; nothing else
  train.secagg_unmask   down: which peers survived        up: self-mask shares of survivors,
                                                              mask-key shares of the dropped
With `secagg.share_ahead` an unmask message also carries the next round's share request in a
second record (`NEXT`), and its reply that round's share answer (or why the client could not
give it), so a round after the first costs two exchanges, not three.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

SECAGG = "secagg"
NEXT = "secagg_next"        # the next round's share request (down) / answer (up) riding an unmask message
NEXT_ERROR = "error"        # in an up NEXT record: why this client could not share for the next round
MASKED = "masked"
KEYS, SHARE, MASK, UNMASK = "query.secagg_keys", "train.secagg_share", "train.secagg_mask", "train.secagg_unmask"
STATE_KEYS, STATE_ROUND = "secagg_keys", "secagg_round"   # records in the node's context.state


def record(**values: Any) -> RecordDict:
    return RecordDict({SECAGG: ConfigRecord(values)})


def get(content: RecordDict) -> ConfigRecord:
    if SECAGG not in content.config_records:
        from fedembed.errors import UpdateError
        raise UpdateError(f"message has no {SECAGG!r} record")
    return content.config_records[SECAGG]


def ints(c: ConfigRecord, key: str) -> list[int]:
    return [int(x) for x in c.get(key, [])]


def blobs(c: ConfigRecord, key: str) -> list[bytes]:
    return [bytes(x) for x in c.get(key, [])]


def with_masked(content: RecordDict, masked: np.ndarray) -> RecordDict:
    content[MASKED] = ArrayRecord({MASKED: Array(masked)})
    return content


def masked_of(content: RecordDict) -> np.ndarray:
    if MASKED not in content.array_records:
        from fedembed.errors import UpdateError
        raise UpdateError(f"reply has no {MASKED!r} record")
    return content.array_records[MASKED][MASKED].numpy()
