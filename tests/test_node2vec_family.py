"""model.family = "node2vec" through the Family API: the graph source splits a real graph
(networkx's karate club) across clients, the federation trains it with the ordinary update
pipeline (plain and SecAgg+), and the report, `fedembed evaluate` and `fedembed export` give
node classification and link prediction next to node2vec trained centrally."""
from __future__ import annotations


import networkx as nx
import numpy as np
import pytest

from fedembed import checkpoint, compose, models
from fedembed.cli import main
from fedembed.data.sources.graph import load_eval
from fedembed.errors import ConfigError, CorpusError
from fedembed.run import federate
from inprocess_grid import InProcessGrid

pytestmark = pytest.mark.usefixtures("task_identity", "one_torch_thread")


@pytest.fixture
def karate_files(tmp_path):
    g = nx.karate_club_graph()
    edges = tmp_path / "edges.tsv"
    edges.write_text("".join(f"n{u}\tn{v}\n" for u, v in g.edges()), encoding="utf-8")
    labels = tmp_path / "labels.tsv"
    labels.write_text("".join(f"n{n}\t{g.nodes[n]['club']}\n" for n in g.nodes), encoding="utf-8")
    owners = tmp_path / "owners.csv"
    owners.write_text("".join(f"n{n},org{n % 4}\n" for n in g.nodes), encoding="utf-8")
    return {"edges": str(edges), "labels": str(labels), "owners": str(owners)}


def scenario(write_scenario, files, **extra):
    sections = {"model": {"family": "node2vec", "dim": 16, "window": 3, "negative": 3, "sample": 0.0},
                "train": {"batch_size": 32, "neg_share": 8, "lr": 0.025},
                "graph": {**files, "walks_per_node": 5, "walk_length": 10, "p": 0.5, "q": 2.0, "holdout": 0.15},
                "federation": {"rounds": 3}, "partition": {"num_clients": 3}}
    for k, v in extra.items():
        sections.setdefault(k, {}).update(v)
    return compose.load(write_scenario(**sections))


def test_node2vec_runs_reports_and_evaluates(tmp_path, write_scenario, karate_files):
    cfg = scenario(write_scenario, karate_files, eval={"baseline": True})
    fam = models.make(cfg)
    assert (fam.data_kind, fam.row_tables, fam.record_dp) == ("graph", ("in_vectors", "out_vectors"), False)
    report = federate(InProcessGrid(3), cfg, tmp_path / "run", progress=False)
    q, base = report["quality"], report["baseline"]["gensim"]
    assert q["node_classification"]["macro_f1"] >= 0.6 and 0 <= q["link_prediction"]["auc"] <= 1
    assert q["link_prediction"]["pairs"] == round(0.15 * 78)
    assert base["node_classification"]["classes"] == 2 and 0 <= base["link_prediction"]["auc"] <= 1
    assert set(report["ratio_to_baseline"]) == {"node_classification.macro_f1", "node_classification.micro_f1",
                                                "link_prediction.auc"}
    train, pos, _, labels = load_eval(tmp_path / "run" / "data")
    assert len(labels) == 34 and not train.has_edges(pos[:, 0], pos[:, 1]).any()   # held out of training
    words = (tmp_path / "run" / "embeddings.txt").read_text().splitlines()
    assert words[0] == "34 16" and {w.split()[0] for w in words[1:]} == {f"n{i}" for i in range(34)}
    cfg.save(tmp_path / "run" / "config.toml")
    assert main(["evaluate", str(tmp_path / "run")]) == 0
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "v.txt")]) == 0
    assert (tmp_path / "v.txt").read_text().splitlines()[0] == "34 16"


def test_node2vec_under_secagg_and_user_level_dp(tmp_path, write_scenario, karate_files):
    cfg = scenario(write_scenario, karate_files, federation={"rounds": 1, "row_weight": "presence"},
                   secagg={"enabled": True}, privacy={"user_level": True, "noise_multiplier": 0.5, "delta": 1e-3})
    report = federate(InProcessGrid(3), cfg, tmp_path / "run", progress=False)
    assert report["privacy"]["epsilon"] is not None and report["privacy"]["epsilon"] > 0
    tables = checkpoint.load(tmp_path / "run").tables
    assert set(tables) == {"in_vectors", "out_vectors"} and np.isfinite(tables["in_vectors"]).all()


def test_node2vec_scenario_errors_name_the_key_or_the_line(tmp_path, write_scenario, karate_files):
    with pytest.raises(ConfigError, match="graph.edges"):
        scenario(write_scenario, {})
    with pytest.raises(ConfigError, match="graph.p and graph.q"):
        scenario(write_scenario, karate_files, graph={"q": 0})
    with pytest.raises(ConfigError, match="record-level DP-SGD"):
        scenario(write_scenario, karate_files, privacy={"record": {"enabled": True, "noise_multiplier": 1.0}})
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\nc\n", encoding="utf-8")
    cfg = scenario(write_scenario, {"edges": str(bad)})
    with pytest.raises(CorpusError, match=rf"^{bad}:2: "):
        federate(InProcessGrid(3), cfg, tmp_path / "run", progress=False)
