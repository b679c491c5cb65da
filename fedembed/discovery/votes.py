"""A client's vote: weight 1/√m on each of the m distinct candidates its own words make.

Why 1/√m: the vote vector then has L2 norm exactly 1 (0 for a client with no candidate),
whatever the client holds, so adding or removing one client moves the round's sum by at
most 1 in L2 — the sensitivity the Gaussian mechanism's noise is calibrated to. Spreading
the weight evenly maximises what each candidate gets in expectation under that bound
(a random subset of k at 1/√k gives each √k/m ≤ 1/√m). A client counts a word once, however
often it uses it: the unit of privacy is the user, and the goal is words many users hold.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from fedembed.discovery.alphabet import Alphabet
from fedembed.discovery.domain import Domain


def client_votes(domain: Domain, words: Sequence[str]) -> tuple[np.ndarray, float]:
    """(the distinct slots this client votes for, the weight of each); `words` votable and distinct."""
    slots = np.unique(domain.index_of(list(words)))
    slots = slots[slots >= 0]
    return slots, (1.0 / np.sqrt(len(slots)) if len(slots) else 0.0)


def vote_vector(domain: Domain, words: Sequence[str]) -> np.ndarray:
    """The dense vote vector (float64, L2 norm ≤ 1) a client sends, under secure aggregation or not."""
    out = np.zeros(domain.size, dtype=np.float64)
    slots, weight = client_votes(domain, words)
    out[slots] = weight
    return out


class Population:
    """Many clients' word sets, held as (client, word) pairs over the distinct words: the sum of
    every client's vote vector in a few vectorised passes (simulation and benchmarks only — a
    real federation never holds this)."""

    def __init__(self, word_sets: Iterable[Iterable[str]], alphabet: Alphabet) -> None:
        index: dict[str, int] = {}
        clients, words = [], []
        self.size = 0
        for c, ws in enumerate(word_sets):
            for w in set(ws):
                clients.append(c)
                words.append(index.setdefault(w, len(index)))
            self.size = c + 1
        self.words = list(index)
        self.client = np.asarray(clients, dtype=np.int64)
        self.word = np.asarray(words, dtype=np.int64)
        self.votable = np.array([alphabet.votable(w) for w in self.words], dtype=bool)

    def holders(self) -> dict[str, int]:
        """How many clients hold each word (the ground truth the evaluation compares against)."""
        counts = np.bincount(self.word, minlength=len(self.words))
        return dict(zip(self.words, counts.tolist()))

    def vote_sum(self, domain: Domain, clients: np.ndarray | None = None) -> np.ndarray:
        """Σ over the clients (all, or a boolean mask of the voting ones) of their vote vectors."""
        slot_of_word = np.full(len(self.words), -1, dtype=np.int64)
        votable = np.flatnonzero(self.votable)
        slot_of_word[votable] = domain.index_of([self.words[i] for i in votable])
        slot = slot_of_word[self.word]
        keep = slot >= 0
        if clients is not None:
            keep &= clients[self.client]
        pair = np.unique(self.client[keep] * np.int64(domain.size) + slot[keep])   # distinct (client, slot)
        client, slot = np.divmod(pair, np.int64(domain.size))
        m = np.bincount(client, minlength=self.size)
        return np.bincount(slot, weights=1.0 / np.sqrt(m[client]), minlength=domain.size)
