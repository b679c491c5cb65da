"""User/item embeddings (`model.family = "mf"`): loaders, Federated Reconstruction, no user row in any
message, ranking metrics next to centralized and popularity, SecAgg+ and user-level DP, CLI and serving.
Synthetic planted structure only (a real matrix is bench/mf.py's)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fedembed import checkpoint, compose, metrics, models
from fedembed.cli import main
from fedembed.data import ratings_io
from fedembed.data.sources.ratings import RatingsSource, load_heldout
from fedembed.errors import ConfigError, CorpusError
from fedembed.federation import wire
from fedembed.loader import view
from fedembed.models.mf import USER_ROWS, support_query
from fedembed.run import federate
from fedembed.train.mf import MFParams, reconstruct
from inprocess_grid import InProcessGrid

pytestmark = pytest.mark.usefixtures("task_identity", "one_torch_thread")
GROUPS = 4


def planted(path: Path, users: int = 120, items: int = 80, per_user: int = 16, seed: int = 0) -> Path:
    """Users in GROUPS groups, each interacting with items of its own group only; ratings 1-5, timestamped."""
    rng = np.random.default_rng(seed)
    rows = ["user,item,rating,timestamp"]
    for u in range(users):
        own = [i for i in range(items) if i % GROUPS == u % GROUPS]
        for t, i in enumerate(rng.choice(own, size=per_user, replace=False)):
            rows.append(f"u{u},i{i},{int(rng.integers(1, 6))},{t}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _cfg(tmp_path, name="mf.toml", **sections):
    import tomli_w

    base = {"data": {"corpus": str(planted(tmp_path / "ratings.csv"))}, "vocab": {"min_count": 1},
            "partition": {"name": "iid", "num_clients": 4}, "model": {"family": "mf", "dim": 8},
            "train": {"lr": 1.0, "batch_size": 256, "neg_share": 16},
            "federation": {"rounds": 6}, "eval": {"baseline": False}, "secagg": {"enabled": False}}
    for sec, vals in sections.items():
        base.setdefault(sec, {}).update(vals)
    (tmp_path / name).write_text(tomli_w.dumps(base), encoding="utf-8")
    return compose.load(tmp_path / name)


def _run(tmp_path, cfg, name="run", grid=None):
    grid = grid or InProcessGrid(cfg.partition.num_clients)
    report = federate(grid, cfg, tmp_path / name, progress=False)
    cfg.save(tmp_path / name / "config.toml")
    return report, grid


# ---- loaders

def test_the_common_formats_load_the_same_interactions(tmp_path):
    (tmp_path / "u.data").write_text("1\t10\t5\t881250949\n2\t10\t3\t891717742\n", encoding="utf-8")
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,10,5,881250949\n2,10,3,891717742\n")
    (tmp_path / "r.jsonl").write_text('{"user": 1, "item": "10", "rating": 5, "timestamp": 881250949}\n'
                                      '{"user": "2", "item": 10, "rating": 3, "timestamp": 891717742}\n')
    (tmp_path / "noheader.csv").write_text("1,10,5\n2,10,3\n")
    want = [("1", "10", 5.0), ("2", "10", 3.0)]
    for f in ("u.data", "ratings.csv", "r.jsonl", "noheader.csv"):
        assert [(x.user, x.item, x.rating) for x in ratings_io.read(tmp_path / f)] == want, f


def test_debian_package_index_packages_are_users_and_dependencies_items(tmp_path):
    (tmp_path / "x_Packages").write_text(
        "Package: app\nVersion: 1\nDepends: libc6 (>= 2.3), libfoo1 | libfoo2, app\nDescription: x\n long text\n\n"
        "Package: lib\nPre-Depends: libc6:any\n\nPackage: solo\n", encoding="utf-8")
    got = [(x.user, x.item, x.rating) for x in ratings_io.read(tmp_path / "x_Packages")]
    assert got == [("app", "libc6", 1.0), ("app", "libfoo1", 1.0), ("lib", "libc6", 1.0)]


@pytest.mark.parametrize("name, text, says", [
    ("r.csv", "user,item,rating\n1,2,5\n1,3,lots\n", "r.csv:3: rating 'lots' is not a number"),
    ("r.csv", "1,2,5\n1,3\n", "r.csv:2: expected user,item,rating[,timestamp], got 2 field(s)"),
    ("r.csv", "1,2,nan\n", "r.csv:1: rating 'nan' is not finite"),
    ("r.jsonl", '{"user": 1, "item": 2}\n{"user": 1\n', "r.jsonl:2: not valid JSON"),
    ("r.jsonl", '{"item": 2}\n', "r.jsonl:1: the record has no 'user'"),
    ("r.jsonl", '{"user": [1], "item": 2}\n', "r.jsonl:1: user must be a string or an integer"),
    ("u.data", "1\t2\t5\t9\n1 2 5 9\n", "u.data:2: expected user\titem\trating"),
    ("r.csv", "a b,2,5\n", "r.csv:1: user 'a b' is empty or holds whitespace"),
])
def test_bad_input_is_one_line_naming_file_and_line(tmp_path, name, text, says):
    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(CorpusError) as e:
        list(ratings_io.read(tmp_path / name))
    assert says in str(e.value) and "\n" not in str(e.value)


def test_a_bad_ratings_file_stops_preparation_with_one_line(tmp_path):
    from fedembed.data.prepare import prepare

    cfg = _cfg(tmp_path)
    (tmp_path / "ratings.csv").write_text("user,item,rating\n1,2,5\n1,3,x\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"ratings.csv:3: rating 'x' is not a number"):
        prepare(cfg, tmp_path / "run", source=RatingsSource())


def test_users_are_never_split_and_their_latest_interactions_are_held_out(tmp_path):
    from fedembed.data.prepare import prepare

    cfg = _cfg(tmp_path)
    prep = prepare(cfg, tmp_path / "run", source=RatingsSource())
    held = load_heldout(prep.shard_dir)
    names = [line.split("\t") for line in (tmp_path / "run" / "users.tsv").read_text().splitlines()]
    assert len({n[2] for n in names}) == len(names) == 120                  # each user on exactly one client
    assert sum(prep.manifest.sentences) == 120 and len(held.items) == 120 * 3   # round(0.2 · 16) = 3 each
    data = RatingsSource().load(prep.shard_dir, 0)
    assert set(np.unique(data.users)) == set(range(data.num_users))
    assert not any(name in (prep.shard_dir / "client_00000.ratings.npz").read_bytes().decode("latin-1")
                   for *_, name in names[:5])                               # shards hold no user names


# ---- Federated Reconstruction

def test_reconstruction_solves_the_ridge_exactly_for_mse():
    rng = np.random.default_rng(0)
    items, bias = torch.tensor(rng.normal(size=(30, 4)), dtype=torch.float32), torch.zeros(30, 1)
    users = torch.tensor([0] * 10 + [1] * 12)
    pos = torch.tensor(rng.integers(0, 30, 22))
    ratings = torch.tensor(rng.uniform(1, 5, 22), dtype=torch.float32)
    p, c = torch.zeros(2, 4), torch.zeros(2)
    reconstruct(items, bias, 3.0, users, pos, ratings, p, c, MFParams(loss="mse", reg=0.1), torch.Generator())
    x = np.c_[items[pos[:10]].numpy(), np.ones(10)]
    want = np.linalg.solve(x.T @ x + 0.1 * np.eye(5), x.T @ (ratings[:10].numpy() - 3.0))
    np.testing.assert_allclose(np.r_[p[0].numpy(), c[0]], want, rtol=1e-4, atol=1e-5)


def test_support_and_query_split_each_users_interactions():
    users = np.repeat(np.arange(4), [1, 2, 5, 8])
    s, q = support_query(users, 0.5, np.random.default_rng(0))
    assert [int(s[users == u].sum()) for u in range(4)] == [1, 1, 3, 4]
    assert q[users == 0].all() and not (s & q)[users > 0].any()


def _user_rows_absent(grid, rows: np.ndarray) -> None:
    """No reply content the server received holds any user row: not its bytes, nor its values."""
    assert len(rows) and np.abs(rows).max() > 1e-3
    raw = [r.astype(np.float32).tobytes() for r in rows]
    for _, content in grid.seen:
        assert wire.FAMILY_STATE not in content
        for record in content.array_records.values():
            for name, arr in record.items():
                a = arr.numpy()
                blob = a.tobytes()
                assert not any(r in blob for r in raw), name
                if a.ndim == 2 and a.shape[1] == rows.shape[1] and a.dtype.kind == "f":
                    d = np.abs(a[:, None, :].astype(np.float64) - rows[None]).max(axis=2)
                    assert d.min() > 1e-4, name
        for record in content.config_records.values():
            assert USER_ROWS not in json.dumps(dict(record), default=str)


@pytest.mark.parametrize("secagg", [False, True])
def test_no_user_row_appears_in_any_message(tmp_path, secagg):
    cfg = _cfg(tmp_path, mf={"user_state": "keep"}, federation={"rounds": 2},
               secagg={"enabled": secagg})
    _, grid = _run(tmp_path, cfg)
    rows = np.concatenate([wire.family_state(ctx.state)[USER_ROWS] for ctx in grid.contexts.values()])
    assert len(rows) == 120                                       # every user's row, kept on its node
    sent = {name for _, content in grid.seen for name in content.array_records}
    assert sent <= ({"update", "weights"} if not secagg else sent) and len(grid.seen) > 0
    _user_rows_absent(grid, rows)


def test_the_message_check_catches_a_leaked_user_row(tmp_path):
    """The check above can fail: a client that adds its user rows to its reply is caught."""
    from flwr.app import ArrayRecord

    cfg = _cfg(tmp_path, mf={"user_state": "keep"}, federation={"rounds": 1})
    grid = InProcessGrid(cfg.partition.num_clients)

    def leak(content):
        content["extra"] = ArrayRecord({"x": wire.arrays(wire.family_state(grid.contexts[0].state))[USER_ROWS]})
        return content
    grid.tamper = {0: leak}
    _run(tmp_path, cfg, grid=grid)
    rows = wire.family_state(grid.contexts[0].state)[USER_ROWS]
    with pytest.raises(AssertionError):
        _user_rows_absent(grid, rows)


def test_user_rows_stay_per_client_on_a_pool_node(tmp_path):
    cfg = _cfg(tmp_path, mf={"user_state": "keep"}, federation={"rounds": 2}, simulation={"nodes": 2})
    _, grid = _run(tmp_path, cfg, grid=InProcessGrid(2))
    keys = {k for ctx in grid.contexts.values() for k in ctx.state.array_records}
    assert keys == {f"{wire.FAMILY_STATE}.{p}" for p in range(4)}
    rows = np.concatenate([ctx.state.array_records[k][USER_ROWS].numpy()
                           for ctx in grid.contexts.values() for k in ctx.state.array_records])
    _user_rows_absent(grid, rows)


def test_bpr_learns_the_planted_groups_near_the_centralized_model_and_far_above_popularity(tmp_path):
    cfg = _cfg(tmp_path, eval={"baseline": True})
    report, _ = _run(tmp_path, cfg)
    fed, cen, pop = report["quality"], report["baseline"]["centralized"], report["baseline"]["popularity"]
    assert fed["users"] == 120 and fed["recall@10"] > 3 * pop["recall@10"] and fed["recall@10"] > 0.2
    assert fed["ndcg@10"] > 0.7 * cen["ndcg@10"] and report["ratio_to_baseline"]["recall@10"] > 0.7
    assert set(report["headline"]) == {"federated", "centralized (baseline)", "popularity (baseline)"}
    assert report["run"]["family"] == "mf" and (tmp_path / "run" / "embeddings.bin").is_file()
    header = (tmp_path / "run" / "summary.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
    assert {"recall@10", "ndcg@10"} <= set(header)                            # the family's headline columns


def test_mse_reports_rmse(tmp_path):
    cfg = _cfg(tmp_path, mf={"loss": "mse", "reg": 0.1}, train={"lr": 0.05}, federation={"rounds": 2})
    report, _ = _run(tmp_path, cfg)
    assert 0 < report["quality"]["rmse"] < 3 and "recall@10" in report["quality"]


@pytest.mark.parametrize("secagg, private", [(True, False), (True, True), (False, True)])
def test_runs_with_secagg_and_user_level_dp(tmp_path, secagg, private):
    sections = {"secagg": {"enabled": secagg}, "federation": {"rounds": 2, "row_weight": "presence"}}
    if private:
        sections["privacy"] = {"user_level": True, "noise_multiplier": 0.3, "clip": 1.0, "delta": 1e-5,
                               "min_weight": 0.0}   # 4 clients: every row, however noisy its weight
    cfg = _cfg(tmp_path, **sections)
    report, grid = _run(tmp_path, cfg)
    tables = checkpoint.load(tmp_path / "run").tables
    init = models.make(cfg).init_tables(len(tables["item_vectors"]), cfg.seed)
    assert all(np.isfinite(t).all() for t in tables.values())
    assert np.abs(tables["item_vectors"] - init["item_vectors"]).max() > 1e-3
    rows = metrics.read(tmp_path / "run")
    assert ("secagg" in rows[0]) == secagg
    if private:
        assert report["privacy"]["epsilon"] > 0 and rows[0]["privacy"]
    assert report["quality"]["recall@10"] is not None


# ---- CLI and serving

def test_evaluate_export_and_serve_item_vectors(tmp_path, capsys):
    from fedembed.serving import EmbeddingClient, EmbeddingServer, load_model

    cfg = _cfg(tmp_path)
    _run(tmp_path, cfg)
    run_dir = tmp_path / "run"
    assert main(["evaluate", str(run_dir)]) == 0
    assert {"recall@10", "ndcg@10"} <= set(json.loads(capsys.readouterr().out))
    assert main(["export", str(run_dir), str(tmp_path / "items.txt")]) == 0
    family, run = view(run_dir)
    assert (tmp_path / "items.txt").read_text().split("\n", 1)[0] == f"{len(run.rows)} 8"
    model = load_model(run_dir)
    with EmbeddingServer(model, port=0) as s, EmbeddingClient(s.address) as c:
        assert c.info()["model"] == "mf" and not c.info()["oov_vectors"]
        hits = c.neighbors("i0", k=5)
        assert len(hits) == 5 and all(w in run.rows.index for w, _ in hits)
        same_group = sum(int(w[1:]) % GROUPS == 0 for w, _ in hits)
        assert same_group >= 4          # an item's nearest items are its own group's
        vec = c.vectors(["i3"])[0]
        np.testing.assert_allclose(vec, run.tables["item_vectors"][run.rows.index["i3"]], rtol=1e-6)


def test_scenario_checks(tmp_path):
    with pytest.raises(ConfigError, match="mf.loss"):
        _cfg(tmp_path, mf={"loss": "hinge"})
    with pytest.raises(ConfigError, match="record-level DP-SGD"):
        _cfg(tmp_path, privacy={"record": {"enabled": True, "noise_multiplier": 1.0}})
    with pytest.raises(ConfigError, match="built-in corpus is text"):
        _cfg(tmp_path, data={"corpus": "builtin"})
    with pytest.raises(ConfigError, match="privacy_attacks.canary"):
        _cfg(tmp_path, privacy_attacks={"canary": True})
    with pytest.raises(ConfigError, match="is a ratings format"):
        _cfg(tmp_path, model={"family": "sgns"}, data={"format": "udata"})
