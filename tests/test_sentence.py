"""The sentence-encoder family's parts: the packaged all-MiniLM-L6-v2 against independent
references, the trainable parts and their tables, the contrastive trainer, record-level DP
(per-sample gradients checked one sample at a time), retrieval metrics and the pair reader.

A tiny random BERT (2 layers, width 32) with a hashing tokenizer keeps the training tests fast;
one test loads the real packaged model."""
from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
import torch

from fedembed.errors import CorpusError
from fedembed.sentence.contrastive import Features, embed, in_batch_loss, train_pairs
from fedembed.sentence.dp import PairDP, public_loss, train_pairs_dp
from fedembed.sentence.encoder import BertConfig, Encoder, mean_pool, normalize
from fedembed.sentence.pairs import read_pairs
from fedembed.sentence.retrieval import ranks, retrieval
from fedembed.sentence.tokenize import pad
from fedembed.sentence.trainable import SentenceModel


class HashTokenizer:
    """[CLS] hashed words [SEP]: a stand-in for WordPiece with the same call shape."""

    def __call__(self, texts):
        return pad([[1] + [3 + zlib.crc32(w.encode()) % 90 for w in t.split()] + [2] for t in texts])


def tiny(kind: str, seed: int = 0) -> SentenceModel:
    torch.manual_seed(seed)
    enc = Encoder(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=64, max_position_embeddings=64))
    return SentenceModel(enc, kind, rank=4, seed=seed)


WORDS = [f"w{i}" for i in range(60)]


def synthetic_pairs(n: int, seed: int) -> tuple[list[str], list[str]]:
    """Anchor: three topic words; positive: two of them plus noise — learnable, not trivial."""
    rng = np.random.default_rng(seed)
    a, p = [], []
    for _ in range(n):
        topic = rng.choice(WORDS, 3, replace=False)
        noise = rng.choice(WORDS, 3)
        a.append(" ".join(topic))
        p.append(" ".join([*topic[:2], *noise]))
    return a, p


# ---- the real packaged model

def test_packaged_minilm_matches_independent_references():
    """Our plain-torch forward on the packaged safetensors against (1) the published
    all-MiniLM-L6-v2 vector of 'This is an example sentence' (model card examples and
    sentence-transformers' docs print its first values) and (2) sentence-transformers'
    own encode of the same package."""
    from fedembed.sentence.encoder import load_encoder
    from fedembed.sentence.package import model_dir
    from fedembed.sentence.tokenize import WordPiece

    d = model_dir()
    enc = load_encoder(d)
    texts = ["This is an example sentence", "Each sentence is converted"]
    ids, mask = WordPiece(d / "tokenizer.json")(texts)
    with torch.no_grad():
        ours = normalize(mean_pool(enc(ids, mask), mask)).numpy()
    published = np.array([0.0676569, 0.0634959, 0.0487131, 0.0793050, 0.0374480])
    assert np.allclose(ours[0, :5], published, atol=2e-6)
    assert ours.shape == (2, 384) and np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)
    from sentence_transformers import SentenceTransformer

    ref = SentenceTransformer(str(d), device="cpu").encode(texts)
    assert np.abs(ref - ours).max() < 1e-5


# ---- trainable parts

@pytest.mark.parametrize("kind", ["adapter", "lora", "top"])
def test_a_new_trainable_part_leaves_the_model_unchanged_and_round_trips(kind):
    base, model = tiny("adapter"), tiny(kind)
    with torch.no_grad():
        model.adapter.weight.zero_() if kind == "adapter" else None
    tok = HashTokenizer()
    texts = ["w1 w2 w3", "w4 w5"]
    ids, mask = tok(texts)
    frozen = normalize(mean_pool(base.encoder(ids, mask), mask))
    assert torch.allclose(model(*Features(model, tok, texts).batch(np.arange(2))), frozen, atol=1e-6)
    tables = model.tables()
    assert tables and all(t.ndim == 2 and t.dtype == np.float32 for t in tables.values())
    moved = {k: v + 0.5 for k, v in tables.items()}
    model.load_tables(moved)
    assert all(np.array_equal(model.tables()[k], moved[k]) for k in moved)
    with pytest.raises(ValueError):
        model.load_tables({"nope": np.zeros((1, 1), np.float32)})


def test_only_the_trainable_part_has_gradients():
    for kind, expect in (("adapter", {"adapter.weight", "adapter.bias"}), ("top", None), ("lora", None)):
        names = set(tiny(kind).trainable())
        if expect:
            assert names == expect
        elif kind == "top":
            assert names and all(n.startswith("encoder.encoder.layer.1.") for n in names)
        else:
            assert names and all(".lora_" in n for n in names)


# ---- training

def test_in_batch_loss_is_cross_entropy_over_the_batch():
    a, p = normalize(torch.randn(4, 8)), normalize(torch.randn(4, 8))
    logits = a @ p.T * 20
    want = -torch.log_softmax(logits, 1).diagonal().mean()
    assert torch.allclose(in_batch_loss(a, p), want)


@pytest.mark.parametrize("kind", ["adapter", "lora"])
def test_contrastive_training_improves_held_out_retrieval(kind):
    torch.set_num_threads(1)
    model, tok = tiny(kind, seed=1), HashTokenizer()
    a, p = synthetic_pairs(256, 0)
    ea, ep = synthetic_pairs(100, 1)
    before = retrieval(embed(model, Features(model, tok, ea)), embed(model, Features(model, tok, ep)))
    stats = train_pairs(model, Features(model, tok, a), Features(model, tok, p), epochs=3, lr=3e-3,
                        batch_size=32, seed=0)
    after = retrieval(embed(model, Features(model, tok, ea)), embed(model, Features(model, tok, ep)))
    assert stats.pairs == 3 * 256 and np.isfinite(stats.loss)
    assert after["mrr"] > before["mrr"] + 0.05, (before, after)


# ---- record-level DP

@pytest.mark.parametrize("kind", ["adapter", "lora", "top"])
def test_opacus_per_sample_gradients_are_each_pairs_own(kind):
    """Anchor and positive go through the model in two passes; Opacus' per-sample gradient of
    pair i must equal the gradient of pair i's loss computed alone."""
    from opacus import GradSampleModule

    model, tok = tiny(kind, seed=2), HashTokenizer()
    with torch.no_grad():
        for prm in model.trainable().values():
            prm.normal_(0, 0.1)
    a, p = ["w1 w2 w3", "w4 w5 w6 w7", "w8 w9", "w10 w11 w12 w13 w14"], ["w2 w3", "w5 w6", "w9 w8 w20", "w13 w14 w15"]
    fa, fp, fn = Features(model, tok, a), Features(model, tok, p), Features(model, tok, ["w30 w31", "w40 w41 w42"])
    bank = torch.from_numpy(embed(model, fn))
    params = list(model.trainable().values())
    gsm = GradSampleModule(model, batch_first=True, loss_reduction="sum")
    public_loss(gsm(*fa.batch(np.arange(4))), gsm(*fp.batch(np.arange(4))), bank).sum().backward()
    per_sample = [prm.grad_sample.clone() for prm in params]
    gsm._close()
    for i in range(4):
        for prm in params:
            prm.grad = None
        public_loss(model(*fa.batch([i])), model(*fp.batch([i])), bank).sum().backward()
        for prm, g in zip(params, per_sample):
            assert torch.allclose(prm.grad, g[i], atol=1e-5)


def test_dp_training_clips_adds_noise_and_accounts(monkeypatch):
    from opacus.accountants import RDPAccountant

    import fedembed.sentence.dp as dp_mod

    monkeypatch.setattr(dp_mod, "secret_rng", lambda: np.random.default_rng(7))
    model, tok = tiny("adapter", seed=3), HashTokenizer()
    a, p = synthetic_pairs(64, 2)
    fa, fp = Features(model, tok, a), Features(model, tok, p)
    fn = Features(model, tok, [" ".join(np.random.default_rng(i).choice(WORDS, 4)) for i in range(16)])
    acc = RDPAccountant()
    before = model.tables()
    stats = train_pairs_dp(model, fa, fp, fn, steps=5, lr=1e-2, dp=PairDP(1.0, 1.0, 16), accountant=acc)
    assert 0 < stats.pairs and len(acc.history) == 1 and acc.history[0][2] == 5
    assert 0 < acc.get_epsilon(1e-5) < float("inf")
    after = model.tables()
    assert any(not np.array_equal(before[k], after[k]) for k in before)
    assert not any(hasattr(prm, "grad_sample") and prm.grad_sample is not None for prm in model.parameters())


def test_dp_noise_is_what_moves_an_empty_batch(monkeypatch):
    """With q·n ≈ 0 samples drawn, a step is noise alone: σ = 0 leaves the part unchanged."""
    from opacus.accountants import RDPAccountant

    import fedembed.sentence.dp as dp_mod

    monkeypatch.setattr(dp_mod, "secret_rng", lambda: np.random.default_rng(0))
    model, tok = tiny("adapter", seed=3), HashTokenizer()
    a, p = synthetic_pairs(8, 2)
    fa, fp, fn = Features(model, tok, a), Features(model, tok, p), Features(model, tok, ["w1 w2"])
    before = model.tables()
    train_pairs_dp(model, fa, fp, fn, steps=2, lr=1e-2, dp=PairDP(1.0, 0.0, 1e-9), accountant=RDPAccountant())
    assert all(np.array_equal(before[k], model.tables()[k]) for k in before)


# ---- retrieval and pairs

def test_retrieval_metrics():
    a = np.eye(3, dtype=np.float32)
    assert retrieval(a, a) == {"recall@1": 1.0, "recall@10": 1.0, "mrr": 1.0, "pairs": 3}
    p = np.array([[0.5, 1, 0], [1, 0.5, 0], [0, 0, 1]], np.float32)   # 0 and 1 see the other's positive first
    assert ranks(a, p).tolist() == [2, 2, 1]
    assert retrieval(a, np.zeros_like(a))["recall@1"] == 0.0   # ties count against the right answer


def test_pairs_file_and_its_errors(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text(json.dumps({"client_id": 7, "anchor": "a", "positive": "b"}) + "\n\n"
                 + json.dumps({"client_id": "x", "anchor": "c", "positive": "d"}) + "\n", encoding="utf-8")
    pairs = read_pairs(f)
    assert pairs.anchors == ["a", "c"] and pairs.clients == ["7", "x"]
    for body, line, words in [
        ('{"anchor": "a", "positive": "b"}\n{"anchor": "a"}\n', 2, "'positive' must be"),
        ('{"anchor": "a", "positive": "b"}\n{"client_id": "c", "anchor": "a", "positive": "b"}\n', 2, "client_id or none"),
        ('{"client_id": null, "anchor": "a", "positive": "b"}\n', 1, "client_id must be"),
        ('[1, 2]\n', 1, "expected an object"),
        ('{"anchor": "a",\n', 1, "not JSON"),
    ]:
        f.write_text(body, encoding="utf-8")
        with pytest.raises(CorpusError) as err:
            read_pairs(f)
        assert str(err.value).startswith(f"{f}:{line}:") and words in str(err.value)
    f.write_text("\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="no pairs"):
        read_pairs(f)


def test_the_adapters_closed_form_clipped_sum_is_opacus_per_sample_clipping():
    """adapter_clipped_sum (no per-pair gradients held) against Opacus' per-sample gradients,
    clipped and summed: same norms, same sums, with some pairs clipped and some not."""
    from opacus import GradSampleModule

    from fedembed.sentence.dp import adapter_clipped_sum, per_sample_clip_sum

    model, tok = tiny("adapter", seed=4), HashTokenizer()
    with torch.no_grad():
        model.adapter.weight.normal_(0, 0.2)
        model.adapter.bias.normal_(0, 0.2)
    a, p = synthetic_pairs(12, 5)
    fa, fp, fn = Features(model, tok, a), Features(model, tok, p), Features(model, tok, a[:5])
    bank = torch.from_numpy(embed(model, fn))
    idx = np.arange(12)
    params = list(model.trainable().values())
    gsm = GradSampleModule(model, batch_first=True, loss_reduction="sum")
    public_loss(gsm(*fa.batch(idx)), gsm(*fp.batch(idx)), bank).sum().backward()
    flat = torch.cat([q.grad_sample.reshape(12, -1) for q in params], 1)
    clip = float(flat.norm(dim=1).median())              # half the pairs get clipped
    want, want_norms = per_sample_clip_sum(params, clip)
    gsm._close()
    for q in params:
        q.grad = None
    got, _, norms = adapter_clipped_sum(model, fa.batch(idx)[0], fp.batch(idx)[0], bank, clip)
    assert np.allclose(norms, want_norms, rtol=1e-4, atol=1e-6)
    for g, w in zip(got, want):
        assert torch.allclose(g, w, rtol=1e-4, atol=1e-6)
