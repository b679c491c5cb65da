"""The subword family (`model.family = "fasttext"`): fastText's n-grams and vectors, vectors for words
no client ever sent, gensim-loadable export, serving unseen words, SecAgg+ and user-level DP."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fedembed import checkpoint, compose, metrics, models
from fedembed.cli import main
from fedembed.data.holdout import held_out
from fedembed.errors import ConfigError
from fedembed.loader import view
from fedembed.models.subwords import compose as compose_vectors, ngram_buckets, subwords, unseen_vector
from fedembed.run import federate
from fedembed.train.fasttext import FastTextTrainer
from fedembed.train.word2vec import Word2VecParams
from conftest import scenario_toml
from inprocess_grid import InProcessGrid

FT = {"family": "fasttext", "dim": 16, "window": 3, "negative": 3}


def _scenario(tmp_path, small_corpus, name="ft.toml", **sections):
    sections.setdefault("model", FT)
    sections.setdefault("fasttext", {"buckets": 4000})
    vocab = {"source": str(small_corpus["words"]), "min_count": 3, "holdout": 0.2, **sections.pop("vocab", {})}
    p = tmp_path / name
    p.write_text(scenario_toml(small_corpus, vocab=vocab, **sections), encoding="utf-8")
    return compose.load(p)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_corpus):
    """One federated fasttext run over the Lee corpus (3 clients, 3 rounds, gensim's FastText baseline)."""
    from flwr.supercore.task_identity import TaskIdentity

    tmp = tmp_path_factory.mktemp("ft")
    cfg = _scenario(tmp, small_corpus, federation={"rounds": 3}, eval={"baseline": True})
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in (("_run_id", 1), ("_task_id", 1), ("_node_id", 0)):
            mp.setattr(TaskIdentity, k, v)
        report = federate(InProcessGrid(cfg.partition.num_clients), cfg, tmp / "run", progress=False)
    torch.set_num_threads(before)
    cfg.save(tmp / "run" / "config.toml")
    return tmp / "run", report


# ---- n-grams and vectors, exactly fastText's

def test_ngrams_are_fasttexts_with_boundary_marks():
    from gensim.models.fasttext import ft_hash_bytes

    want = sorted(ft_hash_bytes(g.encode()) % 1000 for g in ("<ab", "abc", "bc>", "<abc", "abc>", "<abc>"))
    assert sorted(ngram_buckets("abc", 3, 6, 1000)) == want
    sub = subwords(["abc", "de"], 3, 6, 1000)
    assert sub.flat[sub.offsets[0]] == 0 and sub.flat[sub.offsets[1]] == 1         # each word's own row first
    assert all(b >= 2 for b in sub.flat[1:sub.offsets[1]])                          # then V + bucket


def test_a_word_vector_is_the_mean_of_its_row_and_buckets():
    rng = np.random.default_rng(0)
    words, buckets = rng.normal(size=(2, 4)).astype(np.float32), rng.normal(size=(50, 4)).astype(np.float32)
    sub = subwords(["cat", "dogs"], 3, 4, 50)
    got = compose_vectors(words, buckets, sub)
    ids = ngram_buckets("dogs", 3, 4, 50)
    np.testing.assert_allclose(got[1], (words[1] + buckets[ids].sum(0)) / (1 + len(ids)), rtol=1e-5)
    np.testing.assert_allclose(unseen_vector("dogma", buckets, 3, 4),
                               buckets[ngram_buckets("dogma", 3, 4, 50)].mean(0), rtol=1e-5)


def test_the_trainer_feeds_each_center_its_row_and_buckets():
    sub = subwords(["aa", "bbb", "cccc"], 3, 4, 20)
    tr = FastTextTrainer(torch.zeros(23, 4), torch.zeros(3, 4), np.array([5, 3, 2]),
                         Word2VecParams(batch_size=4, neg_share=2), sub)
    packed = tr.packed(torch.tensor([2, 0, 2]))
    rows = [sub.flat[sub.offsets[i]:sub.offsets[i + 1]].tolist() for i in (2, 0, 2)]
    assert packed.flat.tolist() == sum(rows, []) and packed.offsets.tolist() == [0, *np.cumsum([len(r) for r in rows])]


# ---- the federated run

def test_held_out_words_are_in_no_shard_and_get_trained_subword_vectors(trained):
    run_dir, report = trained
    family, run = view(run_dir)
    held = held_out(run.cfg.vocab.holdout, run.cfg.seed)
    assert held and not held & set(run.rows.words)                      # never in the vocabulary, so never trained
    oov = report["quality"]["oov"]
    assert oov["held_out_words"] == len(held) and oov["simlex999"]["pairs"] > 50
    assert oov["simlex999"]["spearman"] is not None and "oov" in report["baseline"]["gensim"]
    assert "oov.simlex999.spearman" in report["ratio_to_baseline"]
    init = family.init_tables(len(run.rows), run.cfg.seed)
    assert np.abs(run.tables["ngram_buckets"] - init["ngram_buckets"]).max() > 1e-3   # buckets were trained


def test_an_unseen_word_is_closer_to_its_morphological_neighbours_than_to_random_words(trained):
    """Ranked by cosine among all vocabulary words (raw cosines of a briefly trained SGNS share a
    common direction), a held-out word's in-vocabulary kin (same first 5 letters) come out near
    the top, random words in the middle."""
    run_dir, _ = trained
    family, run = view(run_dir)
    vectors = family.word_vectors(run.tables, run.rows.words)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    rng = np.random.default_rng(1)
    kin_rank, random_rank = [], []
    for w in sorted(held_out(run.cfg.vocab.holdout, run.cfg.seed)):
        kin = [i for i, v in enumerate(run.rows.words) if len(w) >= 5 and v[:5] == w[:5]]
        if not kin:
            continue
        u = family.unseen(run.tables, w)
        assert np.linalg.norm(u) > 0
        order = np.argsort(-(unit @ (u / np.linalg.norm(u))))
        rank = np.empty(len(order)); rank[order] = np.arange(len(order)) / len(order)   # 0 = nearest
        kin_rank.append(float(np.mean(rank[kin])))
        random_rank.append(float(np.mean(rank[rng.choice(len(rank), 50, replace=False)])))
    assert len(kin_rank) >= 10
    assert np.median(kin_rank) < 0.05 and 0.3 < np.median(random_rank) < 0.7
    assert np.mean(np.array(kin_rank) < np.array(random_rank)) > 0.9


def test_the_fasttext_export_loads_in_gensim_with_the_same_vectors_for_unseen_words(trained, tmp_path):
    from gensim.models.fasttext import load_facebook_model, load_facebook_vectors

    run_dir, report = trained
    family, run = view(run_dir)
    assert (run_dir / "embeddings.fasttext.bin").is_file()
    assert main(["export", str(run_dir), str(tmp_path / "m.bin"), "--format", "fasttext-bin"]) == 0
    kv = load_facebook_vectors(str(tmp_path / "m.bin"))
    ours = family.word_vectors(run.tables, run.rows.words)
    np.testing.assert_allclose(kv.vectors[[kv.key_to_index[w] for w in run.rows.words]], ours, atol=1e-5)
    for w in ("unforeseeably", "qzxv", "bankers", *sorted(held_out(run.cfg.vocab.holdout, run.cfg.seed))[:5]):
        assert w not in kv.key_to_index
        np.testing.assert_allclose(kv[w], family.unseen(run.tables, w), atol=1e-5)
    model = load_facebook_model(str(tmp_path / "m.bin"))   # the whole model, output rows included
    assert model.wv.vectors_ngrams.shape == run.tables["ngram_buckets"].shape


def test_evaluate_and_export_from_the_cli(trained, tmp_path, capsys):
    run_dir, _ = trained
    assert main(["evaluate", str(run_dir), "--no-analogies"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"wordsim353", "simlex999", "oov"}
    assert main(["export", str(run_dir), str(tmp_path / "v.txt")]) == 0   # word2vec text of composed vectors
    assert (tmp_path / "v.txt").read_text(encoding="utf-8").split("\n", 1)[0].endswith(" 16")


def test_serve_answers_unseen_words_from_their_ngrams(trained):
    from fedembed.serving import EmbeddingClient, EmbeddingServer, load_model

    run_dir, _ = trained
    family, run = view(run_dir)
    model = load_model(run_dir)
    assert model.oov_vectors and len(model.index) == len(run.rows)
    with EmbeddingServer(model, port=0) as s, EmbeddingClient(s.address) as c:
        assert c.info()["oov_vectors"]
        got = c.vectors(["unforeseeably", run.rows.words[5]])
        np.testing.assert_allclose(got[0], family.unseen(run.tables, "unforeseeably"), atol=1e-5)
        hits = c.neighbors("governments", k=5)
        assert len(hits) == 5 and all(w in run.rows.index for w, _ in hits)
        sim = c.similarity([("unforeseeably", "unforeseen")])[0]
        a, b = family.unseen(run.tables, "unforeseeably"), family.unseen(run.tables, "unforeseen")
        assert sim == pytest.approx(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)), abs=1e-5)


# ---- privacy and secure aggregation

@pytest.mark.usefixtures("task_identity", "one_torch_thread")
@pytest.mark.parametrize("secagg, private", [(True, False), (True, True)])
def test_runs_with_secagg_and_user_level_dp(tmp_path, small_corpus, secagg, private):
    sections = {"secagg": {"enabled": secagg}, "federation": {"rounds": 1, "row_weight": "presence"},
                "vocab": {"holdout": 0.0}}
    if private:
        sections["privacy"] = {"user_level": True, "noise_multiplier": 0.5, "clip": 1.0, "delta": 1e-5}
    cfg = _scenario(tmp_path, small_corpus, **sections)
    grid = InProcessGrid(cfg.partition.num_clients)
    report = federate(grid, cfg, tmp_path / "run", progress=False)
    tables = checkpoint.load(tmp_path / "run").tables
    init = models.make(cfg).init_tables(len(tables["in_vectors"]), cfg.seed)
    assert set(tables) == {"in_vectors", "ngram_buckets", "out_vectors"}
    assert all(np.isfinite(t).all() for t in tables.values())
    assert np.abs(tables["ngram_buckets"] - init["ngram_buckets"]).max() > 0      # the buckets moved
    row = metrics.read(tmp_path / "run")[0]
    assert row["clients_ok"] == 3 and ("secagg" in row) == secagg
    if private:
        assert report["privacy"]["mechanism"] != "none" and report["privacy"]["epsilon"] > 0


def test_scenario_checks(tmp_path, small_corpus):
    with pytest.raises(ConfigError, match="min_n"):
        _scenario(tmp_path, small_corpus, fasttext={"min_n": 5, "max_n": 3})
    with pytest.raises(ConfigError, match="record-level DP-SGD"):
        _scenario(tmp_path, small_corpus, privacy={"record": {"enabled": True, "noise_multiplier": 1.0}})
    with pytest.raises(ConfigError, match="ngram_buckets"):
        _scenario(tmp_path, small_corpus, federation={"row_weight": "presence"},
                  privacy={"user_level": True, "noise_multiplier": 1.0, "denominator": "public", "delta": 1e-5})
    with pytest.raises(ConfigError, match="vocab.holdout"):
        _scenario(tmp_path, small_corpus, vocab={"holdout": 1.0})
