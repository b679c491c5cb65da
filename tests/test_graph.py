"""node2vec's building blocks on small real graphs (networkx's bundled ones): edge-list reading
and its errors, the CSR adjacency, biased walks (their law, checked against node2vec's
transition probabilities), client subgraphs, link holdout, and the evaluation metrics."""
from __future__ import annotations

from collections import Counter

import networkx as nx
import numpy as np
import pytest

from fedembed.errors import CorpusError
from fedembed.graph.csr import Graph
from fedembed.graph.edgelist import read_edges, read_node_table
from fedembed.graph.evaluate import auc, link_prediction, node_classification
from fedembed.graph.holdout import split_edges, undirected_edges
from fedembed.graph.node2vec import Node2VecParams, init_tables, local_round, train_gensim, train_walks
from fedembed.graph.split import client_graph, owners_from_table, random_owners
from fedembed.graph.walks import WalkParams, Walker, to_sentences, walk


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny batches: torch's thread pool costs more than it gives on a shared machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def karate() -> tuple[Graph, dict[int, str]]:
    g = nx.karate_club_graph()
    e = np.array(g.edges())
    return Graph.from_arrays(34, e[:, 0], e[:, 1]), {n: g.nodes[n]["club"] for n in g.nodes}


# ---- reading

def test_reads_tsv_csv_weighted_and_directed(tmp_path):
    tsv = tmp_path / "e.tsv"
    tsv.write_text("# comment\na\tb\n\nb\tc\n", encoding="utf-8")
    e = read_edges(tsv)
    assert e.names == ["a", "b", "c"] and e.src.tolist() == [0, 1] and e.dst.tolist() == [1, 2]
    assert not e.weighted and e.weights.tolist() == [1.0, 1.0]
    csv = tmp_path / "e.csv"
    csv.write_text("a,b,2.5\nb,a,0.5\n", encoding="utf-8")
    d = read_edges(csv, directed=True)
    g = Graph.from_edgelist(d)
    assert d.weighted and g.directed and g.degree.tolist() == [1, 1]
    u = Graph.from_edgelist(read_edges(csv))          # undirected: a–b twice, weights add up
    assert u.degree.tolist() == [1, 1] and u.weights.tolist() == [3.0, 3.0]


def test_space_separated_and_self_loops(tmp_path):
    p = tmp_path / "e.txt"
    p.write_text("1 2\n2  2\n", encoding="utf-8")
    g = Graph.from_edgelist(read_edges(p))
    assert g.degree.tolist() == [1, 2]                # the loop is in its row once


@pytest.mark.parametrize("text, line, words", [
    ("a\tb\nc\n", 2, "got 1 field"),
    ("a\tb\tx\n", 1, "not a number"),
    ("a\tb\t-1\n", 1, "positive finite"),
    ("a\tb\tnan\n", 1, "positive finite"),
    ("a\tb\t1\nb\tc\n", 2, "give every edge a weight or none"),
    ("a\tb\nb\tc\t1\n", 2, "give every edge a weight or none"),
    ("a\tb\tc\td\n", 1, "got 4 field"),
    ("a\tb\n\xff\n", 2, "UTF-8"),
])
def test_bad_edge_lines_name_file_and_line(tmp_path, text, line, words):
    p = tmp_path / "edges.tsv"
    p.write_bytes(text.encode("latin-1"))
    with pytest.raises(CorpusError) as err:
        read_edges(p)
    msg = str(err.value)
    assert msg.startswith(f"{p}:{line}:") and words in msg and "\n" not in msg


def test_empty_and_missing_files(tmp_path):
    p = tmp_path / "e.tsv"
    p.write_text("# nothing\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="no edges"):
        read_edges(p)
    with pytest.raises(CorpusError, match="cannot open"):
        read_edges(tmp_path / "absent.tsv")


def test_node_tables(tmp_path):
    e = tmp_path / "e.tsv"
    e.write_text("a\tb\nb\tc\n", encoding="utf-8")
    index = read_edges(e).index
    lab = tmp_path / "labels.tsv"
    lab.write_text("a\tx\nc\ty\n", encoding="utf-8")
    assert read_node_table(lab, index) == {0: "x", 2: "y"}
    lab.write_text("a\tx\nzz\ty\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"labels.tsv:2: node 'zz' is not in the edge list"):
        read_node_table(lab, index)
    lab.write_text("a\tx\na\ty\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r":2: node 'a' is given a label twice"):
        read_node_table(lab, index)


# ---- adjacency and walks

def test_csr_matches_networkx():
    g, _ = karate()
    ref = nx.karate_club_graph()
    for u in range(34):
        assert g.indices[g.indptr[u]:g.indptr[u + 1]].tolist() == sorted(ref.neighbors(u))
    u, v = np.array([0, 0, 5]), np.array([1, 9, 16])
    assert g.has_edges(u, v).tolist() == [ref.has_edge(0, 1), ref.has_edge(0, 9), ref.has_edge(5, 16)]


def test_walks_follow_edges_and_have_the_asked_shape():
    g, _ = karate()
    ids, bounds = walk(g, WalkParams(walks_per_node=3, walk_length=7), seed=1)
    assert len(bounds) == 34 * 3 and bounds[-1] == len(ids) == 34 * 3 * 7
    ref = nx.karate_club_graph()
    for s in np.split(ids, bounds[:-1]):
        assert all(ref.has_edge(a, b) for a, b in zip(s[:-1].tolist(), s[1:].tolist()))


def _second_step_law(p: float, q: float, weights: dict | None = None) -> tuple[Counter, dict]:
    """Empirical law of x after t=0 → v=1 on a small graph, and node2vec's exact one."""
    # 0–1, 1–2, 1–3, 0–2 (2 is a neighbour of 0, 3 is not), 1–4 weighted
    src, dst = np.array([0, 1, 1, 0, 1]), np.array([1, 2, 3, 2, 4])
    w = np.array([1.0, 1.0, 1.0, 1.0, 3.0])
    g = Graph.from_arrays(5, src, dst, w)
    walker = Walker(g, WalkParams(1, 3, p, q))
    rng = np.random.default_rng(0)
    n = 200_000
    x = walker._step(np.zeros(n, np.int64), np.ones(n, np.int64), rng)
    alpha = {0: 1 / p, 2: 1.0, 3: 1 / q, 4: 1 / q}
    wt = {0: 1.0, 2: 1.0, 3: 1.0, 4: 3.0}
    z = sum(alpha[k] * wt[k] for k in alpha)
    return Counter(x.tolist()), {k: alpha[k] * wt[k] / z for k in alpha}


@pytest.mark.parametrize("p, q", [(1.0, 1.0), (0.25, 4.0), (4.0, 0.25), (2.0, 2.0)])
def test_second_order_steps_have_node2vecs_law(p, q):
    seen, law = _second_step_law(p, q)
    n = sum(seen.values())
    assert set(seen) == set(law)
    for k, prob in law.items():
        assert abs(seen[k] / n - prob) < 4 * np.sqrt(prob * (1 - prob) / n) + 1e-3, (k, seen[k] / n, prob)


def test_walks_stop_at_nodes_without_out_edges():
    g = Graph.from_arrays(3, np.array([0, 1]), np.array([1, 2]), directed=True)
    ids, bounds = walk(g, WalkParams(1, 10), 0)
    assert ids.tolist() == [0, 1, 2, 1, 2] and bounds.tolist() == [3, 5]   # from 0 and from 1; 2 has no edge out
    assert to_sentences(np.array([[4, -1], [1, 2]]))[0].tolist() == [1, 2]  # a lone node is no sentence


def test_walk_params_are_checked():
    with pytest.raises(ValueError):
        WalkParams(p=0)
    with pytest.raises(ValueError):
        WalkParams(walk_length=0)


# ---- clients' subgraphs

def test_a_client_walks_only_what_it_holds():
    g, _ = karate()
    owners = random_owners(34, 3, seed=0)
    held = client_graph(g, owners, 1)
    mine = np.flatnonzero(owners == 1)
    ids, bounds = walk(held, WalkParams(2, 8), 0, starts=mine)
    ref = nx.karate_club_graph()
    for s in np.split(ids, bounds[:-1]):
        assert owners[s[0]] == 1
        for a, b in zip(s[:-1].tolist(), s[1:].tolist()):
            assert ref.has_edge(a, b) and owners[a] == 1      # every step leaves a node the client holds
    assert held.degree[owners != 1].sum() == 0


def test_owner_table_packs_owners_whole():
    table = {0: "x", 1: "x", 2: "y", 3: "z", 4: "z", 5: "z"}
    owners = owners_from_table(7, table, 2)
    assert owners[3] == owners[4] == owners[5] and owners[0] == owners[1]
    assert set(owners.tolist()) == {0, 1}


# ---- link holdout and metrics

def test_holdout_keeps_every_node_and_never_leaks():
    g, _ = karate()
    s = split_edges(g, 0.2, seed=3)
    src, dst, _ = undirected_edges(g)
    assert len(s.pos) == round(0.2 * len(src)) and len(s.neg) == len(s.pos)
    assert (s.train.degree > 0).sum() == (g.degree > 0).sum()
    assert not s.train.has_edges(s.pos[:, 0], s.pos[:, 1]).any()
    assert not g.has_edges(s.neg[:, 0], s.neg[:, 1]).any()


def test_auc_is_the_rank_statistic():
    assert auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert auc(np.array([1.0]), np.array([1.0])) == 0.5
    assert auc(np.array([1.0, 3.0]), np.array([2.0])) == 0.5


def test_node2vec_vectors_separate_karates_clubs():
    """SGNS on walks gives vectors that classify the two clubs and predict held-out edges, as
    gensim's do, and random vectors do not."""
    g, labels = karate()
    p = Node2VecParams(WalkParams(10, 20), dim=16, batch_size=64, neg_share=8)
    ids, bounds = walk(g, p.walk, 1)
    ours = train_walks(init_tables(34, 16, 0), ids, bounds, p, 3, 0.025, 1e-4, 0).tables["in_vectors"]
    theirs = train_gensim(ids, bounds, 34, p, 5, 0.025, 1e-4, 0)
    for vec in (ours, theirs):
        assert node_classification(vec, labels, seed=0)["macro_f1"] >= 0.8
    rand = np.random.default_rng(0).normal(size=(34, 16))
    assert node_classification(rand, labels, seed=0)["macro_f1"] < 0.8


def test_link_prediction_beats_chance_on_a_real_graph():
    ref = nx.les_miserables_graph()
    names = sorted(ref.nodes)
    e = np.array([(names.index(a), names.index(b)) for a, b in ref.edges()])
    g = Graph.from_arrays(len(names), e[:, 0], e[:, 1])
    s = split_edges(g, 0.2, 0)
    p = Node2VecParams(WalkParams(5, 20), dim=16, batch_size=128, neg_share=8)
    ids, bounds = walk(s.train, p.walk, 1)
    vec = train_walks(init_tables(len(names), 16, 0), ids, bounds, p, 3, 0.025, 1e-4, 0).tables["in_vectors"]
    assert link_prediction(vec, s.pos, s.neg)["auc"] > 0.75


def test_a_clients_round_counts_only_rows_its_walks_touch():
    g, _ = karate()
    owners = random_owners(34, 2, seed=0)
    p = Node2VecParams(WalkParams(2, 6), dim=8, batch_size=32, neg_share=8, negative=2)
    mine = np.flatnonzero(owners == 0)
    tables = init_tables(34, 8, 0)
    out = local_round(tables, client_graph(g, owners, 0), mine, p, 1, 0.025, 1e-4, 0)
    touched = out.row_counts["in_vectors"] > 0
    reachable = np.zeros(34, bool)
    reachable[mine] = True
    held = client_graph(g, owners, 0)
    reachable[held.indices] = True                      # a neighbour of its nodes
    assert touched.any() and not (touched & ~reachable).any()
    changed = np.abs(out.tables["in_vectors"] - tables["in_vectors"]).sum(1) > 0
    assert changed.any() and not (changed & ~touched).any()    # (a touched row may not move: out rows start at 0)
