"""Sentence encoder (`model.family = "sentence"`): federated fine-tuning of all-MiniLM-L6-v2.

The base model is the packaged one (fedembed/sentence/package.py), frozen; what the clients
train and the server aggregates is a small part (`sentence.trainable`: adapter, LoRA or the
top layer; fedembed/sentence/trainable.py), with the in-batch contrastive loss on each client's
text pairs (fedembed/sentence/contrastive.py). Its tables are not indexed by any row index:
every row has weight 1, so row-wise aggregation is the plain mean of the clients' deltas, and
user-level DP clips the whole update as for words. Record-level DP is DP-SGD with Opacus'
per-sample gradients, one pair a record (fedembed/sentence/dp.py). `train.lr` is Adam's step.

Quality is retrieval on the held-out clients' pairs (recall@1, recall@10, MRR), reported next
to the untuned model and to centralized fine-tuning of the same part on the pooled pairs.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fedembed.models import FAMILIES, PAIRS, FamilyReport, LocalResult, RunView
from fedembed.models.base import BaseFamily
from fedembed.sentence.trainable import table_name

if TYPE_CHECKING:
    from fedembed.data.sources.pairs import PairsShard
    from fedembed.privacy.record_dp import PrivateTraining

EXPORT_FORMAT = "sentence-npz"
FIGURES = (("retrieval", "recall@1"), ("retrieval", "recall@10"), ("retrieval", "mrr"))


@FAMILIES.register("sentence")
class SentenceFamily(BaseFamily):
    data_kind = PAIRS
    tables = ("adapter__weight", "adapter__bias")   # the default part's; an instance names its own
    row_tables = ()
    record_dp = True
    export_formats = (EXPORT_FORMAT,)

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.tables = self._table_names(cfg)

    @staticmethod
    def _table_names(cfg) -> tuple[str, ...]:
        """The trainable part's tables, from the model's config alone (no weights read)."""
        s = cfg.sentence
        if s.trainable == "adapter":
            return SentenceFamily.tables
        from fedembed.sentence.encoder import BertConfig

        if not s.pairs:       # an invalid scenario, refused by check; nothing to name yet
            return SentenceFamily.tables
        from fedembed.sentence.runtime import model_path

        n = BertConfig.from_file(model_path(cfg) / "config.json").num_hidden_layers
        if s.trainable == "lora":
            return tuple(f"encoder__encoder__layer__{i}__attention__self__{p}__lora_{ab}__weight"
                         for i in range(n) for p in ("query", "value") for ab in ("a", "b"))
        top = f"encoder__encoder__layer__{n - 1}__"
        return tuple(top + t for t in (
            "attention__self__query__weight", "attention__self__query__bias", "attention__self__key__weight",
            "attention__self__key__bias", "attention__self__value__weight", "attention__self__value__bias",
            "attention__output__dense__weight", "attention__output__dense__bias",
            "attention__output__LayerNorm__weight", "attention__output__LayerNorm__bias",
            "intermediate__dense__weight", "intermediate__dense__bias", "output__dense__weight",
            "output__dense__bias", "output__LayerNorm__weight", "output__LayerNorm__bias"))

    @classmethod
    def check(cls, cfg) -> None:
        from fedembed.sentence.keys import check

        check(cfg)

    # ---- the model and its tables

    def encoder_with(self, tables: dict[str, np.ndarray] | None = None):
        """(model, tokenizer): the base encoder with these tables as its trainable part."""
        from fedembed.sentence.runtime import model_for

        model, tok = model_for(self.cfg)
        if tables is not None:
            model.load_tables({k: tables[table_name(k)] for k in model.trainable()})
        return model, tok

    def _tables(self, model) -> dict[str, np.ndarray]:
        return {table_name(k): v for k, v in model.tables().items()}

    def init_tables(self, vocab_size: int, seed: int) -> dict[str, np.ndarray]:
        """The untuned part: a zero adapter, LoRA with B = 0, or the pretrained top layer."""
        from fedembed.sentence.encoder import load_encoder
        from fedembed.sentence.runtime import model_path
        from fedembed.sentence.trainable import SentenceModel

        s = self.cfg.sentence
        return self._tables(SentenceModel(load_encoder(model_path(self.cfg)), s.trainable, rank=s.rank, seed=seed))

    # ---- a client's round

    def train(self, tables: dict[str, np.ndarray], data: PairsShard, counts: np.ndarray, lr_start: float,
              lr_end: float, seed: int, private: PrivateTraining | None = None,
              state: dict[str, np.ndarray] | None = None) -> LocalResult:
        from fedembed.sentence.contrastive import Features, train_pairs
        from fedembed.sentence.dp import PairDP, train_pairs_dp
        from fedembed.sentence.runtime import features

        model, tok = self.encoder_with(tables)
        fa = features(model, tok, data.anchors, data.path, "anchors")
        fp = features(model, tok, data.positives, data.path, "positives")
        if private is None:
            stats = train_pairs(model, fa, fp, self.cfg.train.local_epochs, lr_start, self.cfg.train.batch_size, seed)
        else:
            p = private.params
            neg = Features(model, tok, data.negatives)
            stats = train_pairs_dp(model, fa, fp, neg, p.steps, lr_start,
                                   PairDP(p.clip, p.noise_multiplier, p.expected_batch), private.accountant)
        local = self._tables(model)
        ones = {k: np.ones(len(v), dtype=np.float64) for k, v in local.items()}
        return LocalResult(local, ones, stats.loss, stats.pairs, stats.pairs)

    def word_vectors(self, tables: dict[str, np.ndarray], words: list[str] | None = None) -> np.ndarray:
        """No row-indexed table: the row index is the one base model, whose row is empty."""
        return np.zeros((1, 1), dtype=np.float32)

    # ---- evaluation, report, export

    def retrieval(self, shard_dir: Path, tables: dict[str, np.ndarray], limit: int | None = None) -> dict[str, Any]:
        from fedembed.data.sources.pairs import EVAL_FILE
        from fedembed.sentence.contrastive import Features, embed
        from fedembed.sentence.pairs import read_pairs
        from fedembed.sentence.retrieval import retrieval

        pairs = read_pairs(Path(shard_dir) / EVAL_FILE)
        if limit:
            pairs = pairs.subset(range(min(limit, len(pairs))))
        model, tok = self.encoder_with(tables)
        return retrieval(embed(model, Features(model, tok, pairs.anchors)), embed(model, Features(model, tok, pairs.positives)))

    def evaluate(self, run: RunView, quick: bool = False) -> dict[str, Any]:
        if run.shard_dir is None:
            return {}
        return {"retrieval": self.retrieval(run.shard_dir, run.tables, 200 if quick else None)}

    def report(self, run: RunView) -> FamilyReport:
        from fedembed.eval.words import headline, ratios

        files = self.export(run, run.run_dir / "sentence_part.npz", EXPORT_FORMAT) if run.run_dir else []
        if run.run_dir and run.shard_dir is not None:
            files += self.export_corpus(run)
        quality = self.evaluate(run)
        out = FamilyReport(quality, files=files, headline={"federated": headline(quality, FIGURES)})
        if run.shard_dir is None:
            return out
        t0 = time.perf_counter()
        untuned = {"retrieval": self.retrieval(run.shard_dir, self.init_tables(len(run.rows), run.cfg.seed))}
        untuned["seconds"] = time.perf_counter() - t0
        out.baselines = {"untuned": untuned}
        out.headline["untuned"] = headline(untuned, FIGURES)
        if run.cfg.eval.baseline:
            t0 = time.perf_counter()
            central = {"retrieval": self.retrieval(run.shard_dir, self.central(run))}
            central["seconds"] = time.perf_counter() - t0
            out.baselines["central"] = central
            out.ratios = ratios(quality, central, FIGURES)
            gain = central["retrieval"]["recall@1"] - untuned["retrieval"]["recall@1"]
            out.ratios["gain.recall@1"] = ((quality["retrieval"]["recall@1"] - untuned["retrieval"]["recall@1"]) / gain
                                           if gain > 0 else None)
            out.headline["central fine-tuning"] = headline(central, FIGURES)
        return out

    def central(self, run: RunView) -> dict[str, np.ndarray]:
        """Centralized fine-tuning of the same part on every client's pairs pooled, as many
        epochs as the federation's passes (rounds × local epochs × share of clients)."""
        from fedembed.eval.baseline import baseline_epochs
        from fedembed.sentence.contrastive import Features, train_pairs

        anchors, positives = [], []
        for c in run.clients:
            shard: PairsShard = self.load_data(run.shard_dir, c)
            anchors += shard.anchors
            positives += shard.positives
        model, tok = self.encoder_with(self.init_tables(len(run.rows), run.cfg.seed))
        epochs = baseline_epochs(run.cfg, len(run.clients))
        train_pairs(model, Features(model, tok, anchors), Features(model, tok, positives), epochs,
                    run.cfg.train.lr, run.cfg.train.batch_size, run.cfg.seed)
        return self._tables(model)

    def export_corpus(self, run: RunView) -> list[Path]:
        """sentences.npy + sentences.txt: the held-out positives embedded by the fine-tuned model, the
        corpus `fedembed serve` searches (NearestNeighbors); each distinct sentence once, one a line
        (fedembed/sentence/serve.py reads them back)."""
        from fedembed.data.sources.pairs import EVAL_FILE
        from fedembed.sentence.contrastive import Features, embed
        from fedembed.sentence.pairs import read_pairs
        from fedembed.sentence.serve import save_corpus

        texts = list(dict.fromkeys(" ".join(t.split()) for t in read_pairs(run.shard_dir / EVAL_FILE).positives))
        model, tok = self.encoder_with(run.tables)
        return save_corpus(run.run_dir, texts, embed(model, Features(model, tok, texts)))

    def export(self, run: RunView, path: Path, fmt: str) -> list[Path]:
        """The fine-tuned part's tables with what they apply to (`sentence-npz`): the base model,
        the kind of part and its rank; `fedembed.sentence.runtime` loads them back."""
        from fedembed.errors import ConfigError

        if fmt != EXPORT_FORMAT:
            raise ConfigError(f"--format {fmt}: model.family = \"sentence\" exports {EXPORT_FORMAT}")
        s = run.cfg.sentence
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **{k: run.tables[k] for k in self.tables},
                 __meta__=np.array([s.model or "all-MiniLM-L6-v2", s.trainable, str(s.rank), str(s.max_length)]))
        tmp.replace(path)
        return [path]
