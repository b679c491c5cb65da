"""The word2vec state shared by SGNS and CBOW: `in_vectors` and `out_vectors` [V, D].

torch and the trainers are imported when a client trains, not when the family is looked up:
validating a scenario (which checks `model.family` against the registry) must stay light.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from fedembed.models import TEXT, FamilyReport, LocalResult, RunView
from fedembed.models.base import BaseFamily

if TYPE_CHECKING:
    from fedembed.data.sources.text import TextShard
    from fedembed.privacy.record_dp import PrivateTraining


class Word2VecFamily(BaseFamily):
    data_kind = TEXT
    tables = ("in_vectors", "out_vectors")
    record_dp = True
    cohorts = True        # train.mode = "fedsgd": users in one vectorised step (fedembed/train/cohort.py)
    sg = True

    def __init__(self, cfg) -> None:
        from fedembed.train.word2vec import Word2VecParams

        m, t = cfg.model, cfg.train
        self.dim = m.dim
        self.params = Word2VecParams(sg=self.sg, window=m.window, negative=m.negative, sample=m.sample,
                                     ns_exponent=m.ns_exponent, batch_size=t.batch_size, neg_share=t.neg_share)
        self.local_epochs = t.local_epochs
        self.cfg = cfg

    def init_tables(self, vocab_size: int, seed: int) -> dict[str, np.ndarray]:
        """word2vec's initialisation: input rows uniform in ±0.5/D, output rows zero."""
        rng = np.random.default_rng(seed)
        w_in = ((rng.random((vocab_size, self.dim), dtype=np.float32) - 0.5) / self.dim).astype(np.float32)
        return {"in_vectors": w_in, "out_vectors": np.zeros((vocab_size, self.dim), dtype=np.float32)}

    def train(self, tables: dict[str, np.ndarray], data: TextShard, counts: np.ndarray, lr_start: float,
              lr_end: float, seed: int, private: PrivateTraining | None = None,
              state: dict[str, np.ndarray] | None = None) -> LocalResult:
        if self.cfg.train.mode == "fedsgd":      # one full-batch step: exactly one user of a cohort step
            got = self.train_cohort(tables, [data], counts, lr_start, seed, float("inf"))
            return LocalResult({k: tables[k] + got.sums[k] for k in self.tables}, got.presence, got.stats.loss,
                               got.stats.examples, got.stats.words)
        return self.train_local(tables, data.ids, data.bounds, counts, lr_start, lr_end, seed, private)

    def train_cohort(self, tables: dict[str, np.ndarray], users: list[TextShard], counts: np.ndarray, lr: float,
                     seed: int, clip: float):
        """Σ_u clip_C(Δ_u) of FedSGD users in one vectorised step (fedembed/train/cohort.py)."""
        from fedembed.train.cohort import cohort_step

        p = self.cfg.privacy
        return cohort_step(tables, [(u.ids, u.bounds) for u in users], counts, self.params, lr, clip, seed,
                           release_rows=p.release_rows if p.user_level else 0)

    def train_local(self, tables: dict[str, np.ndarray], ids: np.ndarray, bounds: np.ndarray,
                    counts: np.ndarray, lr_start: float, lr_end: float, seed: int,
                    private: PrivateTraining | None = None) -> LocalResult:
        """Plain SGD, or record-level DP-SGD when `private` is given.

        Under DP-SGD every row receives noise, so every row counts as updated once: the
        row weights sent with the update must not depend on the data, or they would
        publish, unnoised, which words the client's text contains.
        """
        import torch

        from fedembed.train.word2vec import Word2VecTrainer
        from fedembed.train.word2vec_dp import DPWord2VecTrainer

        w_in = torch.tensor(tables["in_vectors"], dtype=torch.float32)
        w_out = torch.tensor(tables["out_vectors"], dtype=torch.float32)
        if private is None:
            trainer = Word2VecTrainer(w_in, w_out, counts, self.params)
            stats = trainer.train(ids, bounds, self.local_epochs, lr_start, lr_end, seed)
            row_counts = {"in_vectors": trainer.in_counts.numpy(), "out_vectors": trainer.out_counts.numpy()}
        else:
            dp = DPWord2VecTrainer(w_in, w_out, counts, self.params, private.params)
            stats = dp.train_dp(ids, private.samples, lr_start, lr_end, seed, private.accountant)
            row_counts = {k: np.ones(len(w_in), dtype=np.float64) for k in self.tables}
        return LocalResult(
            tables={"in_vectors": w_in.numpy(), "out_vectors": w_out.numpy()},
            row_counts=row_counts, loss=stats.loss, examples=stats.examples, words=stats.words,
        )

    def word_vectors(self, tables: dict[str, np.ndarray], words: list[str] | None = None) -> np.ndarray:
        return tables["in_vectors"]

    def evaluate(self, run: RunView, quick: bool = False) -> dict[str, Any]:
        from fedembed.eval import words

        return words.evaluate(run, self.word_vectors(run.tables), quick)

    def round_figures(self, run: RunView) -> dict[str, Any]:
        from fedembed.eval import words

        return words.round_figures(run, self.word_vectors(run.tables))

    def report(self, run: RunView) -> FamilyReport:
        from fedembed.eval import words

        return words.report(run, self.word_vectors(run.tables))
