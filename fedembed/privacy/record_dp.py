"""What record-level DP-SGD needs inside a client, whatever the family: its samples and parameters.

The unit of privacy is a sample: one sentence (line) or one document (a group of sentences);
`Samples` says which tokens make up each one, `PrivateTraining` carries the resolved DP-SGD
parameters, the samples and the client's accountant into a family's `train_local`. The
trainers that run DP-SGD live with their families' trainers (fedembed/train/word2vec_dp.py
for SGNS/CBOW) and use the per-sample primitives of this package (per_sample.py,
lazy_noise.py); the accounting is Opacus' (record_state.py, record_params.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fedembed.privacy.record_params import DPSGDParams

if TYPE_CHECKING:  # opacus takes seconds to import; the non-private path never needs it
    from opacus.accountants import IAccountant


def concat_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """np.concatenate([arange(s, s + n) for s, n in zip(starts, lengths)]), vectorised."""
    ends = np.cumsum(lengths)
    return np.arange(int(ends[-1]) if len(ends) else 0) + np.repeat(starts - ends + lengths, lengths)


class Samples:
    """The client's samples (sentences, or documents = groups of sentences) and their tokens."""

    def __init__(self, bounds: np.ndarray, units: np.ndarray | None = None) -> None:
        self.sent_len = np.diff(np.concatenate(([0], bounds))).astype(np.int64)
        self.sent_start = np.asarray(bounds, dtype=np.int64) - self.sent_len
        if units is None:                      # one sentence, one sample
            self.order = np.arange(len(bounds))
            self.count = np.ones(len(bounds), dtype=np.int64)
        else:                                  # a document's sentences need not be adjacent
            self.order = np.argsort(units, kind="stable")
            self.count = np.bincount(units, minlength=int(units.max()) + 1 if len(units) else 0)
        self.first = np.cumsum(self.count) - self.count

    def __len__(self) -> int:
        return len(self.count)

    def gather(self, chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Token positions of the chosen samples, with each token's sentence and sample (0..len(chosen)-1)."""
        per = self.count[chosen]
        sents = self.order[concat_ranges(self.first[chosen], per)]
        lengths = self.sent_len[sents]
        tokens = concat_ranges(self.sent_start[sents], lengths)
        sample_of_sent = np.repeat(np.arange(len(chosen)), per)
        return tokens, np.repeat(np.arange(len(sents)), lengths), np.repeat(sample_of_sent, lengths)


@dataclass
class PrivateTraining:
    """What a family's train_local needs, beyond the plain trainer's inputs, to run DP-SGD."""
    params: DPSGDParams
    samples: Samples
    accountant: IAccountant   # restored from the client's state; every step is added to it
