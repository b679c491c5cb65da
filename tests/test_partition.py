"""Partitioners (IID, natural), the on-disk shards, and prepare/write_shards end to end."""
from __future__ import annotations

import logging
from collections import Counter, defaultdict

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import stats

from fedembed import config as config_mod
from fedembed.data import shards as shards_mod
from fedembed.data.corpus import Document, read_corpus
from fedembed.data.partition import PARTITIONERS, make
from fedembed.data.prepare import prepare, write_shards
from fedembed.data.shards import Manifest, ShardWriter, load_shard, shard_paths
from fedembed.errors import ConfigError, CorpusError
from fedembed.vocab import Vocabulary, from_counts


def doc(unit: str, n: int = 3) -> Document:
    return Document(unit, f"{unit}:1", ["w"] * n)


def assign(part, documents):
    return [part.client_of(i, d) for i, d in enumerate(documents)]


# --------------------------------------------------------------------------- IID

def test_registry():
    assert set(PARTITIONERS) == {"iid", "natural"}
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
    return config_mod.load(None, {"data.corpus": str(corpus), "vocab.min_count": 1, **over})


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
