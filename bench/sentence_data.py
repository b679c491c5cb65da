"""The sentence benchmarks' split of Debian's description pairs (bench/get_debian.sh).

Maintainers are the clients. A fixed share of maintainers is held out whole: their pairs are
the evaluation set (retrieval among them) and a separate slice of held-out maintainers gives
the public negatives DP-SGD ranks against (fedembed/sentence/dp.py), so neither is any
client's data. The rest are clients; the `clients` largest of them are kept (the others'
pairs are few), and each client's pairs are capped so a round stays short on this machine.
"""
from __future__ import annotations

import zlib
from collections import defaultdict

from fedembed.sentence.pairs import Pairs, read_pairs


def bucket(name: str) -> int:
    return zlib.crc32(name.encode()) % 100


def split(path: str, clients: int, per_client: int, eval_pairs: int, public: int):
    pairs = read_pairs(path)
    by_client: dict[str, list[int]] = defaultdict(list)
    ev, pub = [], []
    for i, c in enumerate(pairs.clients):
        b = bucket(c)
        if b < 10:
            ev.append(i)
        elif b < 15:
            pub.append(i)
        else:
            by_client[c].append(i)
    chosen = sorted(by_client, key=lambda c: (-len(by_client[c]), c))[:clients]
    train = {c: by_client[c][:per_client] for c in chosen}
    return (pairs, {c: pairs.subset(ix) for c, ix in train.items()}, pairs.subset(ev[:eval_pairs]),
            [pairs.positives[i] for i in pub[:public]])


def pooled(parts: dict[str, Pairs]) -> Pairs:
    idx_a, idx_p = [], []
    for p in parts.values():
        idx_a += p.anchors
        idx_p += p.positives
    return Pairs(idx_a, idx_p, None)
