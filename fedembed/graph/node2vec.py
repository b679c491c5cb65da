"""node2vec training: walks in, node vectors out, with fedembed's SGNS trainer or gensim's.

A walk is a sentence of node ids, so training is word2vec's skip-gram with negative sampling
(fedembed/train/word2vec.py) over the walks, with the walk's own node frequencies for
subsampling and negatives — the counts a client computes from its own walks, which never
leave it. `local_round` is what one client does in a round: walk the subgraph it holds
(fedembed/graph/split.py) from its own nodes and train the global node table on those walks,
returning the per-row update counts that row-wise aggregation weighs by. `train_gensim` is the
centralized reference: gensim Word2Vec on the same kind of walks over the whole graph.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fedembed.graph.csr import Graph
from fedembed.graph.walks import WalkParams, walk
from fedembed.train.word2vec import TrainStats, Word2VecParams


@dataclass(frozen=True)
class Node2VecParams:
    walk: WalkParams = field(default_factory=WalkParams)
    dim: int = 64
    window: int = 5
    negative: int = 5
    sample: float = 0.0      # node2vec's reference code keeps every node of a walk
    batch_size: int = 1024
    neg_share: int = 32

    def word2vec(self) -> Word2VecParams:
        return Word2VecParams(sg=True, window=self.window, negative=self.negative, sample=self.sample,
                              batch_size=self.batch_size, neg_share=self.neg_share)


def init_tables(num_nodes: int, dim: int, seed: int) -> dict[str, np.ndarray]:
    """word2vec's initialisation (input rows uniform in ±0.5/D, output rows zero): the same
    tables, names and shapes as the word families', so every update stage applies unchanged."""
    rng = np.random.default_rng(seed)
    w_in = ((rng.random((num_nodes, dim), dtype=np.float32) - 0.5) / dim).astype(np.float32)
    return {"in_vectors": w_in, "out_vectors": np.zeros((num_nodes, dim), dtype=np.float32)}


@dataclass
class Trained:
    tables: dict[str, np.ndarray]
    row_counts: dict[str, np.ndarray]
    stats: TrainStats


def train_walks(tables: dict[str, np.ndarray], ids: np.ndarray, bounds: np.ndarray, params: Node2VecParams,
                epochs: int, lr_start: float, lr_end: float, seed: int, counts: np.ndarray | None = None) -> Trained:
    """SGD on copies of `tables` over the walks. `counts` (subsampling and the negatives'
    unigram^0.75) default to the walks' own node frequencies; a client passes the public node
    counts (the node index's degrees), so its negatives come from the whole graph, as they do
    centrally, and not only from the nodes its own walks visit."""
    import torch

    from fedembed.train.word2vec import Word2VecTrainer

    n = len(tables["in_vectors"])
    w_in = torch.tensor(tables["in_vectors"], dtype=torch.float32)
    w_out = torch.tensor(tables["out_vectors"], dtype=torch.float32)
    if counts is None:
        counts = np.bincount(ids, minlength=n).astype(np.int64)
    trainer = Word2VecTrainer(w_in, w_out, counts, params.word2vec())
    stats = trainer.train(ids, bounds, epochs, lr_start, lr_end, seed)
    return Trained({"in_vectors": w_in.numpy(), "out_vectors": w_out.numpy()},
                   {"in_vectors": trainer.in_counts.numpy(), "out_vectors": trainer.out_counts.numpy()}, stats)


def client_walks(held: Graph, owned: np.ndarray, params: WalkParams, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Walks over a client's subgraph from each of its own nodes that has edges."""
    starts = owned[held.degree[owned] > 0]
    return walk(held, params, seed, starts)


def local_round(tables: dict[str, np.ndarray], held: Graph, owned: np.ndarray, params: Node2VecParams,
                epochs: int, lr_start: float, lr_end: float, seed: int, counts: np.ndarray | None = None) -> Trained:
    """One client's round: fresh walks over what it holds, then SGNS from the global tables."""
    ids, bounds = client_walks(held, owned, params.walk, seed)
    return train_walks(tables, ids, bounds, params, epochs, lr_start, lr_end, seed + 1, counts)


def train_gensim(ids: np.ndarray, bounds: np.ndarray, num_nodes: int, params: Node2VecParams, epochs: int,
                 lr: float, min_lr: float, seed: int, workers: int = 1) -> np.ndarray:
    """Centralized node2vec as its reference code does it: gensim Word2Vec (skip-gram, negative
    sampling) on the walks; [N, D] vectors, zero for a node no walk visits."""
    from gensim.models import Word2Vec

    sentences = [list(map(str, s)) for s in np.split(ids, bounds[:-1])] if len(ids) else []
    model = Word2Vec(sentences, vector_size=params.dim, window=params.window, negative=params.negative,
                     sample=params.sample, sg=1, min_count=1, epochs=epochs, alpha=lr, min_alpha=min_lr,
                     seed=seed, workers=workers, hs=0)
    out = np.zeros((num_nodes, params.dim), dtype=np.float32)
    keys = np.array([int(k) for k in model.wv.index_to_key], dtype=np.int64)
    out[keys] = model.wv.vectors
    return out
