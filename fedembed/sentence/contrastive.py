"""In-batch contrastive fine-tuning of the trainable part, without DP.

The loss is sentence-transformers' MultipleNegativesRankingLoss: each anchor's positive
against every other positive of the batch, cross-entropy over cosine similarities × `scale`
(20, i.e. temperature 0.05). Texts go through `Features`: the frozen part of the encoder runs
once per text when the trainable part allows it (the adapter's input), else per batch.
Adam's state is local to one call (one client's round): nothing but the tables leaves it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from fedembed.sentence.tokenize import TextTokenizer
from fedembed.sentence.trainable import SentenceModel

SCALE = 20.0


class Features:
    """What `SentenceModel.forward` takes for any subset of `texts`."""

    def __init__(self, model: SentenceModel, tok: TextTokenizer, texts: list[str], batch: int = 128) -> None:
        self.texts, self.tok, self.cached = list(texts), tok, None
        if model.cacheable:
            parts = [model.features(*tok(self.texts[lo:lo + batch])) for lo in range(0, len(self.texts), batch)]
            d = model.encoder.config.hidden_size
            self.cached = torch.cat(parts) if parts else torch.zeros(0, d)

    def __len__(self) -> int:
        return len(self.texts)

    def batch(self, idx: np.ndarray) -> tuple:
        if self.cached is not None:
            return (self.cached[torch.as_tensor(idx, dtype=torch.long)],)
        return self.tok([self.texts[i] for i in np.asarray(idx).tolist()])


def in_batch_loss(a: torch.Tensor, p: torch.Tensor, scale: float = SCALE, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of anchor i against all positives, the right one being i."""
    logits = a @ p.T * scale
    return torch.nn.functional.cross_entropy(logits, torch.arange(len(a)), reduction=reduction)


@torch.no_grad()
def embed(model: SentenceModel, feats: Features, batch: int = 256) -> np.ndarray:
    out = [model(*feats.batch(np.arange(lo, min(lo + batch, len(feats))))) for lo in range(0, len(feats), batch)]
    return torch.cat(out).numpy() if out else np.zeros((0, model.encoder.config.hidden_size), np.float32)


@dataclass
class PairStats:
    loss: float
    pairs: int          # pairs processed (each epoch counts)
    seconds: float


def train_pairs(model: SentenceModel, anchors: Features, positives: Features, epochs: int, lr: float,
                batch_size: int, seed: int) -> PairStats:
    """`epochs` passes of Adam over shuffled batches of in-batch contrastive loss."""
    params = list(model.trainable().values())
    opt = torch.optim.Adam(params, lr=lr)
    rng = np.random.default_rng(seed)
    n, loss_sum, steps, seen = len(anchors), 0.0, 0, 0
    t0 = time.perf_counter()
    model.train()
    for _ in range(epochs):
        order = rng.permutation(n)
        for lo in range(0, n - 1, batch_size):
            idx = order[lo:lo + batch_size]
            if len(idx) < 2:
                continue                      # one pair has no negative
            loss = in_batch_loss(model(*anchors.batch(idx)), model(*positives.batch(idx)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach())
            steps += 1
            seen += len(idx)
    model.eval()
    return PairStats(loss_sum / max(steps, 1), seen, time.perf_counter() - t0)
