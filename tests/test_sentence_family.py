"""model.family = "sentence" through the Family API, on a tiny BERT written to disk the way the
packaged model is (config.json, model.safetensors, tokenizer.json): the pairs source holds
whole clients out, the federation fine-tunes the adapter (plain; record-level DP-SGD; SecAgg+
with user-level DP), and the report gives retrieval next to the untuned model and centralized
fine-tuning; `fedembed evaluate` and `fedembed export` work on the run."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fedembed import checkpoint, compose, models
from fedembed.cli import main
from fedembed.errors import ConfigError, CorpusError
from fedembed.run import federate
from inprocess_grid import InProcessGrid

pytestmark = pytest.mark.usefixtures("task_identity", "one_torch_thread")
WORDS = [f"w{i}" for i in range(40)]


@pytest.fixture
def tiny_model(tmp_path):
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, models as tm, normalizers, pre_tokenizers, processors

    from fedembed.sentence.encoder import BertConfig, Encoder

    d = tmp_path / "tiny_bert"
    d.mkdir()
    cfg = BertConfig(vocab_size=4 + len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64)
    (d / "config.json").write_text(json.dumps(cfg.__dict__), encoding="utf-8")
    torch.manual_seed(0)
    save_file({k: v.contiguous() for k, v in Encoder(cfg).state_dict().items()}, str(d / "model.safetensors"))
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, **{w: 4 + i for i, w in enumerate(WORDS)}}
    tok = Tokenizer(tm.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.save(str(d / "tokenizer.json"))
    return d


@pytest.fixture
def pairs_file(tmp_path):
    rng = np.random.default_rng(0)
    lines = []
    for c in range(12):
        for _ in range(10):
            topic = rng.choice(WORDS, 3, replace=False)
            lines.append({"client_id": f"m{c}", "anchor": " ".join(topic),
                          "positive": " ".join([*topic[:2], *rng.choice(WORDS, 2)])})
    p = tmp_path / "pairs.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    return p


def scenario(write_scenario, model_dir, pairs, **extra):
    sections = {"model": {"family": "sentence"},
                "sentence": {"pairs": str(pairs), "model": str(model_dir), "eval_fraction": 0.25,
                             "max_length": 16},
                "train": {"lr": 3e-3, "batch_size": 8, "neg_share": 8, "local_epochs": 2},
                "federation": {"rounds": 2}, "partition": {"num_clients": 3}}
    for k, v in extra.items():
        sections.setdefault(k, {}).update(v)
    return compose.load(write_scenario(**sections))


def test_sentence_runs_reports_evaluates_and_exports(tmp_path, write_scenario, tiny_model, pairs_file, capsys):
    cfg = scenario(write_scenario, tiny_model, pairs_file, eval={"baseline": True})
    fam = models.make(cfg)
    assert (fam.data_kind, fam.row_tables, fam.record_dp) == ("pairs", (), True)
    report = federate(InProcessGrid(3), cfg, tmp_path / "run", progress=False)
    q = report["quality"]["retrieval"]
    assert q["pairs"] > 0 and 0 <= q["recall@1"] <= q["recall@10"] <= 1
    assert set(report["baseline"]) == {"untuned", "central"} and "gain.recall@1" in report["ratio_to_baseline"]
    tables = checkpoint.load(tmp_path / "run").tables
    assert np.abs(tables["adapter__weight"]).sum() > 0          # the adapter moved from zero
    eval_clients = {json.loads(l)["anchor"] for l in (tmp_path / "run" / "data" / "pairs_eval.jsonl").open()}
    trained = {json.loads(l)["anchor"] for c in range(3) for l in (tmp_path / "run" / "data" / f"pairs_{c:05d}.jsonl").open()}
    assert eval_clients and not eval_clients & trained           # whole clients held out
    cfg.save(tmp_path / "run" / "config.toml")
    assert main(["evaluate", str(tmp_path / "run")]) == 0
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "part.npz"), "--format", "sentence-npz"]) == 0
    with np.load(tmp_path / "part.npz") as z:
        assert np.array_equal(z["adapter__weight"], tables["adapter__weight"])
    capsys.readouterr()
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "x.txt")]) == 2
    assert "sentence-npz" in capsys.readouterr().err


def test_sentence_record_level_dp(tmp_path, write_scenario, tiny_model, pairs_file):
    cfg = scenario(write_scenario, tiny_model, pairs_file, federation={"rounds": 1},
                   privacy={"record": {"enabled": True, "noise_multiplier": 1.0, "expected_batch": 4,
                                       "delta": 1e-3}})
    report = federate(InProcessGrid(3), cfg, tmp_path / "run", progress=False)
    assert 0 < report["privacy"]["epsilon"] < float("inf")


@pytest.mark.parametrize("kind", ["lora", "top"])
def test_sentence_lora_and_top_under_secagg_and_user_level_dp(tmp_path, write_scenario, tiny_model, pairs_file, kind):
    cfg = scenario(write_scenario, tiny_model, pairs_file, sentence={"trainable": kind, "rank": 2},
                   federation={"rounds": 1, "row_weight": "presence"}, secagg={"enabled": True},
                   privacy={"user_level": True, "noise_multiplier": 0.3, "delta": 1e-3})
    report = federate(InProcessGrid(3), cfg, tmp_path / "run", progress=False)
    assert report["privacy"]["epsilon"] > 0
    tables = checkpoint.load(tmp_path / "run").tables
    assert set(tables) == set(models.make(cfg).tables) and all(np.isfinite(t).all() for t in tables.values())


def test_sentence_scenario_errors(tmp_path, write_scenario, tiny_model, pairs_file):
    with pytest.raises(ConfigError, match="sentence.pairs"):
        compose.load(write_scenario(model={"family": "sentence"}))
    with pytest.raises(ConfigError, match="sentence.trainable"):
        scenario(write_scenario, tiny_model, pairs_file, sentence={"trainable": "head"})
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"client_id": "a", "anchor": "x", "positive": "y"}\n{"client_id": "a", "anchor": 3}\n')
    cfg = scenario(write_scenario, tiny_model, bad)
    with pytest.raises(CorpusError, match=rf"^{bad}:2: "):
        federate(InProcessGrid(3), cfg, tmp_path / "run", progress=False)


def test_serving_a_sentence_run_embeds_text_and_searches_its_corpus(tmp_path, write_scenario, tiny_model, pairs_file):
    """`fedembed serve RUN_DIR` on a sentence run: EmbedText gives the report's vectors, and
    NearestNeighbors with a corpus sentence's own vector finds that sentence first."""
    import grpc

    from fedembed.serving._proto import embedding_service_pb2 as pb, embedding_service_pb2_grpc as pb_grpc
    from fedembed.serving.model import load_model
    from fedembed.serving.server import EmbeddingServer

    cfg = scenario(write_scenario, tiny_model, pairs_file, federation={"rounds": 1})
    federate(InProcessGrid(3), cfg, tmp_path / "run", progress=False)
    cfg.save(tmp_path / "run" / "config.toml")
    served = load_model(tmp_path / "run")
    corpus = served.index.words
    assert served.model == "sentence" and len(corpus) > 3
    with EmbeddingServer(served) as server:
        stub = pb_grpc.EmbeddingServiceStub(grpc.insecure_channel(server.address))
        assert stub.Info(pb.InfoRequest()).embeds_text
        got = stub.EmbedText(pb.EmbedTextRequest(texts=corpus[:2]))
        vec = np.array(got.vectors[1].values, dtype=np.float32)
        assert np.allclose(vec, served.index.vectors[1], atol=1e-5) and abs(np.linalg.norm(vec) - 1) < 1e-5
        hits = stub.NearestNeighbors(pb.NearestNeighborsRequest(vector=pb.Vector(values=vec.tolist()), k=3))
        assert hits.neighbors[0].word == corpus[1]
        with pytest.raises(grpc.RpcError) as err:
            stub.EmbedText(pb.EmbedTextRequest(texts=["w1", " "]))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "text 1" in err.value.details()



def test_sentence_user_level_dp_on_a_trusted_server_has_no_row_plan(tmp_path, write_scenario, tiny_model, pairs_file):
    """A trusted server (no SecAgg+) with user-level DP: the plan and the measured signal-to-noise are
    per row by public count, which an adapter has not; the run goes on without them and is charged."""
    cfg = scenario(write_scenario, tiny_model, pairs_file, federation={"rounds": 1, "row_weight": "presence"},
                   secagg={"enabled": False}, privacy={"user_level": True, "noise_multiplier": 0.3, "delta": 1e-3})
    report = federate(InProcessGrid(3), cfg, tmp_path / "run", progress=False)
    assert 0 < report["privacy"]["epsilon"] < float("inf")
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r for r in rows if "privacy" in r] and all("snr" not in r["privacy"] for r in rows if "privacy" in r)
    cfg.save(tmp_path / "s.toml")
    assert main(["plan", "--config", str(tmp_path / "s.toml"), "--out", str(tmp_path / "plan")]) == 2
