"""Partitioners (IID, natural), the on-disk shards, and prepare/write_shards end to end."""
from __future__ import annotations

import logging
from collections import Counter, defaultdict

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import stats

from fedembed import compose
from fedembed.data import shards as shards_mod
from fedembed.data.corpus import Document, read_corpus
from fedembed.data.partition import PARTITIONERS, make
from fedembed.data.prepare import prepare
from fedembed.data.text_shards import write_shards
from fedembed.data.shards import Manifest, ShardWriter, load_shard, shard_paths
from fedembed.errors import ConfigError, CorpusError
from fedembed.vocab import Vocabulary


def doc(unit: str, n: int = 3) -> Document:
    return Document(unit, f"{unit}:1", ["w"] * n)


def assign(part, documents):
    return [part.client_of(i, d) for i, d in enumerate(documents)]


# --------------------------------------------------------------------------- IID

def test_registry():
    assert set(PARTITIONERS) == {"iid", "natural", "dirichlet", "quantity", "vocab_skew"}
    with pytest.raises(ConfigError, match="unknown partitioner 'bogus'"):
        make("bogus", 3, 0)


def test_iid_uniform_and_seeded():
    documents = [doc(f"u{i % 3}") for i in range(20_000)]
    a = assign(make("iid", 5, seed=11), documents)
    assert a == assign(make("iid", 5, seed=11), documents)       # reproducible
    assert a != assign(make("iid", 5, seed=12), documents)       # the seed matters
    counts = np.bincount(a, minlength=5)
    assert counts.min() > 0 and len(counts) == 5
    assert stats.chisquare(counts).pvalue > 1e-4
    assert np.abs(counts / len(a) - 0.2).max() < 0.02
    # IID ignores natural units: every unit is spread over every client
    per_unit = defaultdict(set)
    for d, c in zip(documents, a):
        per_unit[d.unit].add(c)
    assert all(len(cs) == 5 for cs in per_unit.values())


def test_iid_not_periodic_across_draw_blocks():
    a = np.array(assign(make("iid", 4, seed=0), [doc("u")] * 3 * 4096))
    assert not np.array_equal(a[:4096], a[4096:8192])


# --------------------------------------------------------------------------- natural

def test_natural_keeps_units_whole_and_balances():
    rng = np.random.default_rng(3)
    sizes = {f"file{i:03d}": int(s) for i, s in enumerate(rng.integers(50, 150, size=100))}
    k = 7
    part = make("natural", k, seed=0)
    assert part.needs_units
    part.fit(sizes)
    documents = [doc(u, 1) for u in sizes for _ in range(3)]
    clients = assign(part, documents)
    per_unit = defaultdict(set)
    for d, c in zip(documents, clients):
        per_unit[d.unit].add(c)
    assert all(len(cs) == 1 for cs in per_unit.values())          # a unit is never split
    load = Counter()
    units = Counter()
    for u, s in sizes.items():
        load[part.client[u]] += s
        units[part.client[u]] += 1
    assert set(load) == set(range(k)) and min(units.values()) >= 1
    total, biggest = sum(sizes.values()), max(sizes.values())
    for c in range(k):
        assert abs(load[c] - total / k) <= biggest, (c, load[c], total / k)
    # consecutive units stay together
    order = [part.client[u] for u in sizes]
    assert order == sorted(order)


def test_natural_one_unit_per_client_when_equal():
    part = make("natural", 4, seed=0)
    part.fit({"a": 1000, "b": 1, "c": 1, "d": 5})
    assert part.client == {"a": 0, "b": 1, "c": 2, "d": 3}


def test_natural_big_first_unit_still_leaves_a_unit_for_everyone():
    part = make("natural", 3, seed=0)
    part.fit({"huge": 10_000, **{f"s{i}": 1 for i in range(6)}})
    assert part.client["huge"] == 0
    assert set(part.client.values()) == {0, 1, 2}


def test_natural_too_few_units():
    part = make("natural", 5, seed=0)
    with pytest.raises(CorpusError, match="at least 5 natural units.*has 3"):
        part.fit({"a": 1, "b": 2, "c": 3})


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=1000), min_size=1, max_size=60), st.data())
def test_natural_property(sizes, data):
    k = data.draw(st.integers(min_value=1, max_value=len(sizes)))
    units = {f"u{i}": s for i, s in enumerate(sizes)}
    part = make("natural", k, seed=0)
    part.fit(units)
    order = [part.client[u] for u in units]
    assert order[0] == 0 and order[-1] == k - 1
    assert all(b - a in (0, 1) for a, b in zip(order, order[1:]))  # contiguous, every client used


# --------------------------------------------------------------------------- shards

def test_shard_writer_roundtrip_across_flushes(tmp_path, monkeypatch):
    monkeypatch.setattr(shards_mod, "_FLUSH_TOKENS", 7)
    rng = np.random.default_rng(5)
    k = 3
    expected: list[list[list[int]]] = [[] for _ in range(k)]
    w = ShardWriter(tmp_path, k)
    for i in range(300):
        c = int(rng.integers(k))
        ids = rng.integers(0, 1000, size=int(rng.integers(0, 12)))
        w.append(c, ids, f"unit{i % 10}")
        if len(ids):
            expected[c].append(ids.tolist())
    stats_ = w.close()
    for c in range(k):
        ids, bounds = load_shard(tmp_path, c)
        assert ids.dtype == np.int32 and bounds.dtype == np.int64
        starts = np.concatenate([[0], bounds[:-1]])
        assert [ids[a:b].tolist() for a, b in zip(starts, bounds)] == expected[c]
        assert stats_.tokens[c] == len(ids) == sum(map(len, expected[c]))
        assert stats_.sentences[c] == len(expected[c])
        assert stats_.units[c] == 10


def test_shard_writer_holds_no_file_open_per_client(tmp_path, monkeypatch):
    """10,000 clients used to need 30,000 open files; 300 clients now write under a limit of 64."""
    import resource

    monkeypatch.setattr(shards_mod, "_FLUSH_TOKENS", 50)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    try:
        w = ShardWriter(tmp_path, 300)
        for i in range(900):
            w.append(i % 300, np.array([i, i + 1], dtype=np.int64), f"u{i}")
        stats_ = w.close()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert stats_.tokens == [6] * 300 and stats_.sentences == [3] * 300
    ids, bounds = load_shard(tmp_path, 7)
    assert ids.tolist() == [7, 8, 307, 308, 607, 608] and bounds.tolist() == [2, 4, 6]


def test_empty_shard_and_inconsistent_shard(tmp_path):
    ShardWriter(tmp_path, 2).close()
    ids, bounds = load_shard(tmp_path, 1)
    assert len(ids) == 0 and len(bounds) == 0
    with pytest.raises(FileNotFoundError, match="client 5"):
        load_shard(tmp_path, 5)
    w = ShardWriter(tmp_path / "x", 1)
    w.append(0, np.arange(5), "u")
    w.close()
    ids_path, _ = shard_paths(tmp_path / "x", 0)
    ids_path.write_bytes(ids_path.read_bytes()[:8])  # truncated
    with pytest.raises(ValueError, match="inconsistent"):
        load_shard(tmp_path / "x", 0)


def test_manifest_roundtrip(tmp_path):
    m = Manifest(4, "abc", [1, 0, 3, 0], [1, 0, 1, 0], [1, 0, 1, 0], [1, 3])
    m.save(tmp_path / "manifest.json")
    assert Manifest.load(tmp_path / "manifest.json") == m
    assert m.active == [0, 2]


# --------------------------------------------------------------------------- write_shards / prepare

def make_corpus_dir(tmp_path, n_files=6, lines=40, seed=0):
    rng = np.random.default_rng(seed)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "rare", "oov"]
    root = tmp_path / "corpus"
    root.mkdir()
    for f in range(n_files):
        with open(root / f"f{f}.txt", "w") as fh:
            for _ in range(lines):
                fh.write(" ".join(rng.choice(words, size=int(rng.integers(1, 15)))) + " 42\n")
    return root


def cfg_for(corpus, **over):
    return compose.load(None, {"data.corpus": str(corpus), "vocab.min_count": 1, **over})


def decoded(shard_dir, vocab: Vocabulary, k):
    out = []
    for c in range(k):
        ids, bounds = load_shard(shard_dir, c)
        starts = np.concatenate([[0], bounds[:-1]]).astype(int)
        out.append([[vocab.words[t] for t in ids[a:b]] for a, b in zip(starts, bounds)])
    return out


@pytest.mark.parametrize("name", ["natural", "iid"])
def test_write_shards_decode_back_to_in_vocabulary_tokens(tmp_path, monkeypatch, name):
    monkeypatch.setattr(shards_mod, "_FLUSH_TOKENS", 13)
    root = make_corpus_dir(tmp_path)
    vocab = Vocabulary(["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"], [8, 7, 6, 5, 4, 3, 2, 1])
    k = 3
    cfg = cfg_for(root, **{"partition.name": name, "partition.num_clients": k, "seed": 9})
    manifest = write_shards(cfg, vocab, tmp_path / "data")
    # expected: every document's in-vocabulary tokens, on the client the (re-made) partitioner picks
    documents = list(read_corpus(root))
    part = make(name, k, 9)
    if part.needs_units:
        sizes = Counter()
        for d in documents:
            sizes[d.unit] += len(d.tokens)
        part.fit(dict(sizes))
    expected = [[] for _ in range(k)]
    unit_client = defaultdict(set)
    for i, d in enumerate(documents):
        c = part.client_of(i, d)
        unit_client[d.unit].add(c)
        kept = [t for t in d.tokens if t in vocab.index]
        if kept:
            expected[c].append(kept)
    got = decoded(tmp_path / "data", vocab, k)
    assert got == expected
    assert manifest.tokens == [sum(map(len, e)) for e in expected]
    assert manifest.sentences == [len(e) for e in expected]
    assert manifest.vocab_fingerprint == vocab.fingerprint() and manifest.skipped == []
    assert all("rare" not in s and "oov" not in s for c in got for s in c)
    if name == "natural":
        assert all(len(cs) == 1 for cs in unit_client.values())
        assert manifest.units == [2, 2, 2]


def test_client_without_tokens_is_skipped_with_warning(tmp_path, caplog):
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "a.txt").write_text("alpha beta\n" * 5)
    (root / "b.txt").write_text("unknown words only\n" * 5)   # no in-vocabulary token
    (root / "c.txt").write_text("gamma alpha\n" * 5)
    vocab = Vocabulary(["alpha", "beta", "gamma"], [3, 2, 1])
    cfg = cfg_for(root, **{"partition.num_clients": 3})
    with caplog.at_level(logging.WARNING, logger="fedembed"):
        manifest = write_shards(cfg, vocab, tmp_path / "data")
    assert manifest.skipped == [1] and manifest.active == [0, 2]
    assert manifest.tokens == [10, 0, 10]
    assert any("client 1" in r.getMessage() and "skipped" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)


def test_min_tokens_threshold(tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "a.txt").write_text("alpha " * 50)
    (root / "b.txt").write_text("alpha " * 5)
    vocab = Vocabulary(["alpha"], [1])
    cfg = cfg_for(root, **{"partition.num_clients": 2, "partition.min_tokens": 10})
    assert write_shards(cfg, vocab, tmp_path / "data").skipped == [1]


def test_all_clients_empty_is_an_error(tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "a.txt").write_text("nothing known\n")
    (root / "b.txt").write_text("still nothing\n")
    vocab = Vocabulary(["alpha"], [1])
    cfg = cfg_for(root, **{"partition.num_clients": 2})
    with pytest.raises(CorpusError, match=f"no client has at least 1 in-vocabulary tokens.*{root}"):
        write_shards(cfg, vocab, tmp_path / "data")


def test_natural_too_few_files_via_write_shards(tmp_path):
    root = make_corpus_dir(tmp_path, n_files=2)
    cfg = cfg_for(root, **{"partition.num_clients": 3})
    with pytest.raises(CorpusError, match="at least 3 natural units"):
        write_shards(cfg, Vocabulary(["alpha"], [1]), tmp_path / "data")


def test_prepare_with_word_list_and_reuse(tmp_path):
    root = make_corpus_dir(tmp_path, n_files=4)
    wl = tmp_path / "words.txt"
    wl.write_text("Alpha 100\nbeta 50\ngamma 20\n")
    cfg = cfg_for(root, **{"partition.num_clients": 2, "vocab.source": str(wl)})
    run = tmp_path / "run"
    run.mkdir()
    prep = prepare(cfg, run)
    assert prep.vocab.words == ["alpha", "beta", "gamma"]
    assert (run / "vocab.tsv").is_file() and (run / "data" / "manifest.json").is_file()
    assert sum(prep.manifest.tokens) > 0 and prep.manifest.num_clients == 2
    again = prepare(cfg, run)  # reused: same vocabulary and manifest
    assert again.manifest == prep.manifest and again.vocab.fingerprint() == prep.vocab.fingerprint()


# --------------------------------------------------------------------------- non-IID partitioners

import json  # noqa: E402

from fedembed.data.partition import labels as labels_mod, stats as stats_mod  # noqa: E402


def _cfg(**over):
    return compose.load(None, over)


def first_pass_then_assign(part, documents, labeler=None):
    """What prepare.write_shards does: a first pass (observe + fit), then one client per document."""
    sizes = Counter()
    for i, d in enumerate(documents):
        sizes[d.unit] += len(d.tokens)
        if labeler is not None:
            labeler.observe(i, d)
        if hasattr(part, "observe"):
            part.observe(i, d)
    part.fit(dict(sizes))
    return assign(part, documents)


def label_hist(documents, clients, k):
    names = sorted({d.unit.split("/")[0] for d in documents})
    h = np.zeros((k, len(names)), dtype=np.int64)
    for d, c in zip(documents, clients):
        h[c, names.index(d.unit.split("/")[0])] += 1
    return h


def sourced_docs(n_labels=4, per_label=500):
    return [doc(f"src{c}/{i}", 5) for c in range(n_labels) for i in range(per_label)]


@pytest.mark.parametrize("alpha, near_iid", [(1000.0, True), (0.05, False)])
def test_dirichlet_alpha_controls_label_skew(alpha, near_iid):
    documents, k = sourced_docs(), 5
    cfg = _cfg(**{"partition.name": "dirichlet", "partition.alpha": alpha, "partition.num_clients": k})
    part = make("dirichlet", k, 3, cfg)
    clients = first_pass_then_assign(part, documents)
    s = stats_mod.label_summary(label_hist(documents, clients, k))
    if near_iid:
        assert s["label_tv_mean"] < 0.08 and s["labels_per_client_mean"] == 4
        assert np.bincount(clients, minlength=k).min() > 250     # roughly equal sizes too
    else:
        assert s["label_tv_mean"] > 0.4 and s["top_label_share_mean"] > 0.7


def test_dirichlet_reproducible_from_seed_and_label_kinds():
    documents, k = sourced_docs(3, 100), 4
    cfg = _cfg(**{"partition.name": "dirichlet", "partition.alpha": 0.3, "partition.num_clients": k})
    a = first_pass_then_assign(make("dirichlet", k, 1, cfg), documents)
    assert a == first_pass_then_assign(make("dirichlet", k, 1, cfg), documents)
    assert a != first_pass_then_assign(make("dirichlet", k, 2, cfg), documents)
    unit = _cfg(**{"partition.name": "dirichlet", "partition.label": "unit", "partition.num_clients": k})
    assert isinstance(make("dirichlet", k, 1, unit).labeler, labels_mod.UnitLabeler)


def test_quantity_skew_sizes_follow_sigma():
    rng = np.random.default_rng(0)
    documents = [doc(f"src{i % 3}/{i}", int(n)) for i, n in enumerate(rng.integers(5, 50, size=4000))]
    k = 8
    cvs = {}
    for sigma in (0.0, 1.5):
        cfg = _cfg(**{"partition.name": "quantity", "partition.sigma": sigma, "partition.num_clients": k})
        part = make("quantity", k, 7, cfg)
        clients = first_pass_then_assign(part, documents)
        tokens = np.zeros(k)
        for d, c in zip(documents, clients):
            tokens[c] += len(d.tokens)
        np.testing.assert_allclose(tokens / tokens.sum(), part.shares, atol=0.01)  # sizes meet the draw
        assert np.bincount(clients, minlength=k).min() >= 1
        cvs[sigma] = stats_mod.size_summary(tokens)["tokens_cv"]
        # content stays IID: every client's label mix is close to the global one
        hist = label_hist(documents, clients, k)
        big = hist.sum(axis=1) > 200
        assert stats_mod.label_summary(hist[big])["label_tv_mean"] < 0.1
    assert cvs[0.0] < 0.05 and cvs[1.5] > 0.3
    # log-normal shares: the log sizes of many clients have the configured spread
    cfg = _cfg(**{"partition.name": "quantity", "partition.sigma": 1.0, "partition.num_clients": 400})
    part = make("quantity", 400, 1, cfg)
    first_pass_then_assign(part, documents[:1000])
    assert 0.85 < np.std(np.log(part.shares)) < 1.15


def test_quantity_reproducible_and_every_client_served():
    documents = [doc(f"u{i}", 3) for i in range(30)]
    cfg = _cfg(**{"partition.name": "quantity", "partition.sigma": 3.0, "partition.num_clients": 10})
    a = first_pass_then_assign(make("quantity", 10, 5, cfg), documents)
    assert a == first_pass_then_assign(make("quantity", 10, 5, cfg), documents)
    assert set(a) == set(range(10))


def topic_docs(n_topics=5, per_topic=120, seed=0):
    """Documents drawn from disjoint topic vocabularies plus common words; unit = topic."""
    rng = np.random.default_rng(seed)
    common = [f"common{j}" for j in range(15)]
    out = []
    for t in range(n_topics):
        words = [f"t{t}w{j}" for j in range(60)]
        for i in range(per_topic):
            toks = list(rng.choice(words, size=25)) + list(rng.choice(common, size=10))
            out.append(Document(f"topic{t}/{i}", f"x:{i}", [str(w) for w in toks]))
    order = rng.permutation(len(out))
    return [out[j] for j in order]


def mean_jaccard(documents, clients, k):
    vocab = [set() for _ in range(k)]
    for d, c in zip(documents, clients):
        vocab[c].update(d.tokens)
    pairs = [(a, b) for a in range(k) for b in range(a + 1, k) if vocab[a] and vocab[b]]
    return np.mean([len(vocab[a] & vocab[b]) / len(vocab[a] | vocab[b]) for a, b in pairs])


def test_vocab_skew_overlap_below_iid():
    documents, k = topic_docs(), 5
    iid = mean_jaccard(documents, assign(make("iid", k, 0), documents), k)
    results = {}
    for skew in (1.0, 0.5, 0.0):
        cfg = _cfg(**{"partition.name": "vocab_skew", "partition.vocab_skew": skew, "partition.num_clients": k})
        clients = first_pass_then_assign(make("vocab_skew", k, 0, cfg), documents)
        results[skew] = mean_jaccard(documents, clients, k)
        assert clients == first_pass_then_assign(make("vocab_skew", k, 0, cfg), documents)  # seeded
    assert iid > 0.9
    assert results[1.0] < 0.3 < results[0.5] < results[0.0]
    assert abs(results[0.0] - iid) < 0.05


def test_topic_labels_are_deterministic_and_recover_topics():
    documents = topic_docs(4, 80, seed=1)
    cfg = _cfg(**{"partition.label": "topic", "partition.topics": 4, "seed": 3})
    runs = []
    for _ in range(2):
        lab = labels_mod.make(cfg)
        assert lab.needs_pass
        for i, d in enumerate(documents):
            lab.observe(i, d)
        runs.append([lab.label(i, d) for i, d in enumerate(documents)])
    assert runs[0] == runs[1]
    truth = [d.unit.split("/")[0] for d in documents]
    purity = sum(Counter(t for t, l in zip(truth, runs[0]) if l == c).most_common(1)[0][1]
                 for c in set(runs[0])) / len(documents)
    assert purity > 0.95


@pytest.mark.parametrize("over, key", [
    ({"partition.alpha": 0.0}, "partition.alpha"),
    ({"partition.alpha": float("inf")}, "partition.alpha"),
    ({"partition.sigma": -1.0}, "partition.sigma"),
    ({"partition.vocab_skew": 1.5}, "partition.vocab_skew"),
    ({"partition.topics": 0}, "partition.topics"),
    ({"partition.label": "colour"}, "partition.label"),
    ({"partition.label": "field"}, "partition.label_field"),
    ({"partition.label": "field", "partition.label_field": "lang"}, "JSON Lines"),
    ({"partition.name": "dirichlett"}, "partition.name"),
    ({"partition.alhpa": 1.0}, "unknown key: partition.alhpa"),
])
def test_bad_partition_parameters_refused_naming_the_key(over, key):
    with pytest.raises(ConfigError, match=key):
        _cfg(**over)


def test_jsonl_field_labels_through_write_shards(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "c.jsonl"
    langs = ["en", "fr", "de"]
    with open(path, "w") as fh:
        for i in range(300):
            fh.write(json.dumps({"text": " ".join(rng.choice(["alpha", "beta", "gamma"], size=8)),
                                 "lang": langs[i % 3], "client_id": f"u{i % 7}"}) + "\n")
            if i % 50 == 0:
                fh.write("\n")  # blank lines are skipped by the reader; labels must stay aligned
    vocab = Vocabulary(["alpha", "beta", "gamma"], [3, 2, 1])
    cfg = cfg_for(path, **{"partition.name": "dirichlet", "partition.num_clients": 3, "partition.alpha": 0.05,
                           "partition.label": "field", "partition.label_field": "lang"})
    manifest = write_shards(cfg, vocab, tmp_path / "data")
    saved = json.loads((tmp_path / "data" / stats_mod.STATS).read_text())
    assert saved["partitioner"] == "dirichlet" and sorted(saved["labels"]) == sorted(langs)
    assert [c["tokens"] for c in saved["clients"]] == manifest.tokens
    per_label = Counter()
    for c in saved["clients"]:
        per_label.update(c["labels"])
    assert per_label == {"en": 100, "fr": 100, "de": 100}
    assert saved["summary"]["label_tv_mean"] > 0.3                     # α = 0.05: skewed
    assert 0 <= saved["summary"]["vocab_overlap"] <= 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "alpha beta", "lang": "en"}) + "\n" + json.dumps({"text": "gamma"}) + "\n")
    with pytest.raises(CorpusError, match="bad.jsonl:2.*partition.label_field"):
        write_shards(cfg_for(bad, **{"partition.name": "dirichlet", "partition.num_clients": 2,
                                     "partition.label": "field", "partition.label_field": "lang"}),
                     vocab, tmp_path / "data2")


@pytest.mark.parametrize("name", ["iid", "natural", "dirichlet", "quantity", "vocab_skew"])
def test_every_partitioner_writes_and_prints_its_statistics(tmp_path, caplog, name):
    root = make_corpus_dir(tmp_path, n_files=8, lines=30)
    vocab = Vocabulary(["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"], [8, 7, 6, 5, 4, 3, 2, 1])
    cfg = cfg_for(root, **{"partition.name": name, "partition.num_clients": 4})
    with caplog.at_level(logging.INFO, logger="fedembed"):
        manifest = write_shards(cfg, vocab, tmp_path / "data")
    saved = stats_mod.load(tmp_path / "data")
    assert saved["label"] == "source" and len(saved["labels"]) == 8      # one label per file here
    rows = saved["clients"]
    assert [r["tokens"] for r in rows] == manifest.tokens
    assert [r["documents"] for r in rows] == manifest.sentences
    assert all(sum(r["labels"].values()) == r["documents"] for r in rows)
    assert saved["summary"]["tokens_max"] == max(manifest.tokens)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert f"partition {name}: label histogram by source" in text and "vocabulary overlap" in text
