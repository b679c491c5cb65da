"""The word2vec state shared by SGNS and CBOW: `in_vectors` and `out_vectors` [V, D]."""
from __future__ import annotations

import numpy as np
import torch

from fedembed.models import LocalResult
from fedembed.train.word2vec import Word2VecParams, Word2VecTrainer


class Word2VecFamily:
    tables = ("in_vectors", "out_vectors")
    sg = True

    def __init__(self, cfg) -> None:
        m, t = cfg.model, cfg.train
        self.dim = m.dim
        self.params = Word2VecParams(sg=self.sg, window=m.window, negative=m.negative, sample=m.sample,
                                     ns_exponent=m.ns_exponent, batch_size=t.batch_size, neg_share=t.neg_share)
        self.local_epochs = t.local_epochs

    def init_tables(self, vocab_size: int, seed: int) -> dict[str, np.ndarray]:
        """word2vec's initialisation: input rows uniform in ±0.5/D, output rows zero."""
        rng = np.random.default_rng(seed)
        w_in = ((rng.random((vocab_size, self.dim), dtype=np.float32) - 0.5) / self.dim).astype(np.float32)
        return {"in_vectors": w_in, "out_vectors": np.zeros((vocab_size, self.dim), dtype=np.float32)}

    def train_local(self, tables: dict[str, np.ndarray], ids: np.ndarray, bounds: np.ndarray,
                    counts: np.ndarray, lr_start: float, lr_end: float, seed: int) -> LocalResult:
        w_in = torch.tensor(tables["in_vectors"], dtype=torch.float32)
        w_out = torch.tensor(tables["out_vectors"], dtype=torch.float32)
        trainer = Word2VecTrainer(w_in, w_out, counts, self.params)
        stats = trainer.train(ids, bounds, self.local_epochs, lr_start, lr_end, seed)
        return LocalResult(
            tables={"in_vectors": w_in.numpy(), "out_vectors": w_out.numpy()},
            row_counts={"in_vectors": trainer.in_counts.numpy(), "out_vectors": trainer.out_counts.numpy()},
            loss=stats.loss, examples=stats.examples, words=stats.words,
        )

    def word_vectors(self, tables: dict[str, np.ndarray]) -> np.ndarray:
        return tables["in_vectors"]
