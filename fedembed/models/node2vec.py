"""node2vec (`model.family = "node2vec"`): node vectors from biased walks over a graph split
across clients (Grover & Leskovec 2016; DeepWalk is p = q = 1).

Each round a client walks the subgraph it holds (fedembed/data/sources/graph.py) from its own
nodes — walks stop where its knowledge of the graph stops — and trains the global node tables
on those walks with word2vec's SGNS trainer (fedembed/graph/node2vec.py). The tables are the
word families' (`in_vectors`, `out_vectors`, one row per node), so the update pipeline,
row-wise aggregation, SecAgg+ and user-level DP apply unchanged; each row is weighted by how
often the client updated it. Quality is node classification (micro/macro F1 of a logistic
regression on the vectors) and link prediction (AUC on held-out edges), next to node2vec
trained centrally: gensim Word2Vec on walks over the whole training graph.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fedembed.models import FAMILIES, GRAPH, FamilyReport, LocalResult, RunView
from fedembed.models.base import BaseFamily

if TYPE_CHECKING:
    from fedembed.data.sources.graph import GraphShard
    from fedembed.privacy.record_dp import PrivateTraining

HEADLINE = ("macro_f1", "micro_f1", "auc")


@FAMILIES.register("node2vec")
class Node2VecFamily(BaseFamily):
    data_kind = GRAPH
    tables = ("in_vectors", "out_vectors")
    record_dp = False

    def __init__(self, cfg) -> None:
        from fedembed.graph.node2vec import Node2VecParams
        from fedembed.graph.walks import WalkParams

        super().__init__(cfg)
        g, m, t = cfg.graph, cfg.model, cfg.train
        self.params = Node2VecParams(WalkParams(g.walks_per_node, g.walk_length, g.p, g.q), dim=m.dim,
                                     window=m.window, negative=m.negative, sample=m.sample,
                                     batch_size=t.batch_size, neg_share=t.neg_share)
        self.local_epochs = t.local_epochs

    @classmethod
    def check(cls, cfg) -> None:
        from fedembed.errors import ConfigError

        if cfg.train.mode != "local":
            raise ConfigError("train.mode: model.family = \"node2vec\" trains local epochs on fresh walks "
                              "(train.mode = \"local\")")

    def init_tables(self, vocab_size: int, seed: int) -> dict[str, np.ndarray]:
        from fedembed.graph.node2vec import init_tables

        return init_tables(vocab_size, self.params.dim, seed)

    def train(self, tables: dict[str, np.ndarray], data: GraphShard, counts: np.ndarray, lr_start: float,
              lr_end: float, seed: int, private: PrivateTraining | None = None,
              state: dict[str, np.ndarray] | None = None) -> LocalResult:
        """Fresh walks over what the client holds, then SGNS from the global tables; negatives are
        drawn by the public node counts (the node index's degrees, `counts`), so they span the whole
        graph as they do centrally, not just the nodes the client's own walks visit."""
        from fedembed.graph.node2vec import local_round

        out = local_round(tables, data.graph, data.owned, self.params, self.local_epochs, lr_start, lr_end, seed,
                          np.asarray(counts, dtype=np.int64))
        return LocalResult(out.tables, out.row_counts, out.stats.loss, out.stats.examples, out.stats.words)

    def word_vectors(self, tables: dict[str, np.ndarray], words: list[str] | None = None) -> np.ndarray:
        return tables["in_vectors"]

    def evaluate(self, run: RunView, quick: bool = False) -> dict[str, Any]:
        return graph_quality(run.shard_dir, self.word_vectors(run.tables), run.cfg.seed)

    def report(self, run: RunView) -> FamilyReport:
        from fedembed.eval.words import headline, ratios

        files = self.export(run, run.run_dir / "embeddings.txt", "word2vec-text") if run.run_dir else []
        quality = self.evaluate(run)
        out = FamilyReport(quality, files=files, headline={"federated": headline(quality, _figures(quality))})
        if run.cfg.eval.baseline and run.shard_dir is not None:
            t0 = time.perf_counter()
            base = graph_quality(run.shard_dir, self.central(run), run.cfg.seed)
            base["seconds"] = time.perf_counter() - t0
            out.baselines = {"gensim": base}
            out.ratios = ratios(quality, base, _figures(quality))
            out.headline["gensim (centralized)"] = headline(base, _figures(base))
        return out

    def central(self, run: RunView) -> np.ndarray:
        """node2vec trained centrally: walks over the whole training graph, gensim Word2Vec,
        as many epochs as the federation's passes (rounds × local epochs × share of clients)."""
        from fedembed.data.sources.graph import load_eval
        from fedembed.eval.baseline import baseline_epochs
        from fedembed.graph.node2vec import train_gensim
        from fedembed.graph.walks import walk

        train, _, _, _ = load_eval(run.shard_dir)
        ids, bounds = walk(train, self.params.walk, run.cfg.seed)
        epochs = baseline_epochs(run.cfg, len(run.clients) or run.cfg.partition.num_clients)
        lr = min(run.cfg.train.lr, 0.025)     # gensim's own default at most: its step is per pair, not per batch
        return train_gensim(ids, bounds, train.num_nodes, self.params, epochs, lr,
                            run.cfg.train.min_lr, run.cfg.seed)


def _figures(quality: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple((section, key) for section, keys in (("node_classification", ("macro_f1", "micro_f1")),
                                                      ("link_prediction", ("auc",)))
                 if section in quality for key in keys)


def graph_quality(shard_dir: Path | None, vectors: np.ndarray, seed: int) -> dict[str, Any]:
    """{"node_classification": {micro_f1, macro_f1, …}, "link_prediction": {auc, pairs}}, each
    present when the run has labels / held-out edges."""
    from fedembed.data.sources.graph import load_eval
    from fedembed.graph.evaluate import link_prediction, node_classification

    if shard_dir is None:
        return {}
    _, pos, neg, labels = load_eval(shard_dir)
    out: dict[str, Any] = {}
    if labels:
        out["node_classification"] = node_classification(vectors, labels, seed=seed)
    if len(pos):
        out["link_prediction"] = link_prediction(vectors, pos, neg)
    return out
