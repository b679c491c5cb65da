"""What a discovery round's messages carry: the round's candidates down, a vote vector up.

Down, a `ConfigRecord` "vote": the round's kind ("trie": prefixes, depth and chunk; "words":
the candidate words), the alphabet and max length, and where a simulated client finds its own
words. Up, on the plain path, an `ArrayRecord` "votes" (float32, the whole domain); on the
secure path the masked vector instead (fedembed.secagg.messages). Every client rebuilds the
domain from this record, so its slots are the server's.
"""
from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from fedembed.discovery.alphabet import Alphabet
from fedembed.discovery.domain import Domain, TrieLevel, WordList
from fedembed.errors import UpdateError

VOTE, VOTES = "vote", "votes"
PLAIN, MASKED = "query.discovery_vote", "train.secagg_vote"    # message types (client.py registers them)


def vote_content(step: int, dom: Domain, alphabet: Alphabet, words_dir: str) -> RecordDict:
    rec = {"step": step, "alphabet": alphabet.symbols, "max_length": alphabet.max_length, "words_dir": words_dir}
    if isinstance(dom, TrieLevel):
        rec.update(kind="trie", items=list(dom.prefixes), depth=dom.depth, chunk=dom.chunk)
    else:
        rec.update(kind="words", items=list(dom.words))
    return RecordDict({VOTE: ConfigRecord(rec)})


def parse_vote(content: RecordDict) -> tuple[int, Domain, str]:
    """(step, the round's domain, the client's words directory)."""
    if VOTE not in content.config_records:
        raise UpdateError(f"message has no {VOTE!r} record")
    c = content.config_records[VOTE]
    items = [str(x) for x in c["items"]]
    if str(c["kind"]) == "trie":
        dom: Domain = TrieLevel(Alphabet(str(c["alphabet"]), int(c["max_length"])), items, int(c["depth"]),
                                int(c["chunk"]))
    else:
        dom = WordList(items)
    return int(c["step"]), dom, str(c["words_dir"])


def alphabet_of(content: RecordDict) -> Alphabet:
    c = content.config_records[VOTE]
    return Alphabet(str(c["alphabet"]), int(c["max_length"]))


def votes_content(vector: np.ndarray) -> RecordDict:
    return RecordDict({VOTES: ArrayRecord({VOTES: Array(np.ascontiguousarray(vector, dtype=np.float32))})})


def parse_votes(content: RecordDict, size: int) -> np.ndarray:
    """A plain reply's vote vector, checked: the right length, finite, non-negative, L2 norm ≤ 1.

    The plain path can check what the Gaussian mechanism assumes (a client's vector within
    the sensitivity); a vector outside it is refused, as a malformed training reply is."""
    if VOTES not in content.array_records:
        raise UpdateError(f"reply has no {VOTES!r} record")
    try:
        v = content.array_records[VOTES][VOTES].numpy().astype(np.float64)
    except (ValueError, TypeError, EOFError, OSError) as exc:
        raise UpdateError(f"reply's {VOTES!r} record holds an unreadable array") from exc
    if v.shape != (size,):
        raise UpdateError(f"vote vector of shape {list(v.shape)}, expected [{size}]")
    if not np.isfinite(v).all() or (v < 0).any():
        raise UpdateError("vote vector with negative or non-finite values")
    if float(np.linalg.norm(v)) > 1.0 + 1e-5:
        raise UpdateError(f"vote vector of L2 norm {np.linalg.norm(v):.4g} > 1 (its weight is bounded by 1)")
    return v
