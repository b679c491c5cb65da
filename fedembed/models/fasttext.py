"""Subword vectors (fastText): word rows plus a fixed table of hashed character n-gram buckets.

Tables: `in_vectors` [V, D] (word rows), `ngram_buckets` [B, D] (n-grams of n = min_n..max_n,
hashed as fastText does: fedembed/models/subwords.py) and `out_vectors` [V, D]; trained with
SGNS (fedembed/train/fasttext.py). A word's vector is the mean of its row and its buckets'
rows; a word no client ever sent gets the mean of its buckets'. The bucket table has a fixed
size, so it needs no vocabulary agreement; it is aggregated row-wise like the word rows, each
bucket weighted by how often the client updated it.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fedembed.models import FAMILIES, TEXT, FamilyReport, LocalResult, RunView
from fedembed.models.base import WORD2VEC_FORMATS, BaseFamily

if TYPE_CHECKING:
    from fedembed.data.sources.text import TextShard
    from fedembed.privacy.record_dp import PrivateTraining
    from fedembed.vocab import Vocabulary

FASTTEXT_BIN = "fasttext-bin"
BIN_FILE = "embeddings.fasttext.bin"   # Facebook's format (gensim's load_facebook_model / _vectors)


@FAMILIES.register("fasttext")
class FastText(BaseFamily):
    data_kind = TEXT
    tables = ("in_vectors", "ngram_buckets", "out_vectors")
    row_tables = ("in_vectors", "out_vectors")
    record_dp = False
    export_formats = (*WORD2VEC_FORMATS, FASTTEXT_BIN)

    def __init__(self, cfg) -> None:
        from fedembed.train.word2vec import Word2VecParams

        m, t, f = cfg.model, cfg.train, cfg.fasttext
        self.cfg, self.dim, self.local_epochs = cfg, m.dim, t.local_epochs
        self.min_n, self.max_n, self.buckets = f.min_n, f.max_n, f.buckets
        self.params = Word2VecParams(sg=True, window=m.window, negative=m.negative, sample=m.sample,
                                     ns_exponent=m.ns_exponent, batch_size=t.batch_size, neg_share=t.neg_share)

    @classmethod
    def check(cls, cfg) -> None:
        from fedembed.errors import ConfigError

        f = cfg.fasttext
        if f.min_n < 1 or f.max_n < f.min_n:
            raise ConfigError(f"fasttext.min_n and fasttext.max_n must satisfy 1 <= min_n <= max_n, "
                              f"got {f.min_n} and {f.max_n}")
        if not 1 <= f.buckets <= 2 ** 24:
            raise ConfigError(f"fasttext.buckets must be 1 to {2 ** 24}, got {f.buckets}")
        if cfg.model.init != "random":
            raise ConfigError(f"model.init = {cfg.model.init!r}: the fasttext family starts from random tables")

    def init_tables(self, vocab_size: int, seed: int) -> dict[str, np.ndarray]:
        """fastText's: input rows (words and buckets) uniform in ±1/D, output rows zero."""
        rng = np.random.default_rng(seed)
        d = self.dim
        uniform = lambda n: ((rng.random((n, d), dtype=np.float32) * 2 - 1) / d).astype(np.float32)  # noqa: E731
        return {"in_vectors": uniform(vocab_size), "ngram_buckets": uniform(self.buckets),
                "out_vectors": np.zeros((vocab_size, d), dtype=np.float32)}

    def subwords(self, words: list[str]):
        from fedembed.models.subwords import cached_subwords

        return cached_subwords(words, self.min_n, self.max_n, self.buckets)

    def load_data(self, shard_dir: Path, client: int) -> tuple[TextShard, Vocabulary]:
        """The client's token shard and the row index beside it (its words' n-grams)."""
        from fedembed.data.shards import load_rows

        return super().load_data(shard_dir, client), load_rows(shard_dir)

    def train(self, tables: dict[str, np.ndarray], data, counts: np.ndarray, lr_start: float, lr_end: float,
              seed: int, private: PrivateTraining | None = None,
              state: dict[str, np.ndarray] | None = None) -> LocalResult:
        import torch

        from fedembed.train.fasttext import FastTextTrainer

        shard, rows = data
        v = len(tables["in_vectors"])
        inputs = torch.tensor(np.concatenate([tables["in_vectors"], tables["ngram_buckets"]]), dtype=torch.float32)
        w_out = torch.tensor(tables["out_vectors"], dtype=torch.float32)
        trainer = FastTextTrainer(inputs, w_out, counts, self.params, self.subwords(rows.words))
        stats = trainer.train(shard.ids, shard.bounds, self.local_epochs, lr_start, lr_end, seed)
        w_in, in_counts = inputs.numpy(), trainer.in_counts.numpy()
        return LocalResult(
            tables={"in_vectors": w_in[:v], "ngram_buckets": w_in[v:], "out_vectors": w_out.numpy()},
            row_counts={"in_vectors": in_counts[:v], "ngram_buckets": in_counts[v:],
                        "out_vectors": trainer.out_counts.numpy()},
            loss=stats.loss, examples=stats.examples, words=stats.words)

    def word_vectors(self, tables: dict[str, np.ndarray], words: list[str] | None = None) -> np.ndarray:
        """Each word's row and n-gram buckets, averaged (fastText's and gensim's word vector)."""
        from fedembed.models.subwords import compose

        if words is None:
            raise ValueError("the fasttext family's word vectors need the words (their n-grams)")
        return compose(tables["in_vectors"], tables["ngram_buckets"], self.subwords(words))

    def unseen(self, tables: dict[str, np.ndarray], word: str) -> np.ndarray:
        """A word outside the vocabulary: the mean of its n-gram buckets."""
        from fedembed.models.subwords import unseen_vector

        return unseen_vector(word, tables["ngram_buckets"], self.min_n, self.max_n)

    def evaluate(self, run: RunView, quick: bool = False) -> dict[str, Any]:
        from fedembed.eval import subword

        return subword.evaluate(self, run, quick)

    def round_figures(self, run: RunView) -> dict[str, Any]:
        from fedembed.eval import words

        return words.round_figures(run, self.word_vectors(run.tables, run.rows.words))

    def report(self, run: RunView) -> FamilyReport:
        from fedembed.eval import subword

        return subword.report(self, run)

    def export(self, run: RunView, path: Path, fmt: str) -> list[Path]:
        from fedembed.eval import subword

        if fmt == FASTTEXT_BIN:
            return subword.export_facebook(self, run, Path(path))
        return super().export(run, path, fmt)
