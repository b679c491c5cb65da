"""Scenario configuration: defaults, refusal of bad keys/types/ranges, TOML roundtrip, overrides."""
from __future__ import annotations

import dataclasses
import math

import pytest

from fedembed import compose, config as C
from fedembed.errors import ConfigError


def test_defaults_are_valid():
    cfg = C.load()
    assert cfg == C.Config()
    assert compose.validate(C.Config()) == cfg
    assert cfg.partition.name == "natural" and cfg.model.family == "sgns" and cfg.federation.rounds == 20
    assert compose.from_dict({}) == cfg


def test_config_imports_no_domain_package():
    """The composition root runs each package's check: config.py itself knows none of them."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(C.__file__).read_text(encoding="utf-8"))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module} | \
        {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert {m for m in imported if m.startswith("fedembed")} == {"fedembed.errors"}


def test_a_client_parses_the_scenario_once_per_text():
    text = '{"federation": {"rounds": 3}}'
    assert C.parse_json(text) is C.parse_json(text) and C.parse_json(text).federation.rounds == 3


@pytest.mark.parametrize("values,match", [
    ({"bogus": 1}, r"unknown key: bogus$"),
    ({"model": {"dimm": 3}}, r"unknown key: model\.dimm$"),
    ({"model": {"dimm": 3, "windoww": 2}}, r"unknown keys: model\.dimm, model\.windoww"),
    ({"federation": {"rounds": 2, "secagg": True}}, r"federation\.secagg"),
])
def test_unknown_keys_refused(values, match):
    with pytest.raises(ConfigError, match=match):
        compose.from_dict(values)


@pytest.mark.parametrize("values,match", [
    ({"model": {"dim": "3"}}, r"model\.dim: expected int, got str"),
    ({"model": {"dim": 3.5}}, r"model\.dim: expected int, got float"),
    ({"model": {"dim": True}}, r"model\.dim: expected int"),
    ({"eval": {"baseline": 1}}, r"eval\.baseline: expected bool"),
    ({"train": {"lr": "fast"}}, r"train\.lr: expected float"),
    ({"data": {"corpus": 5}}, r"data\.corpus: expected str"),
    ({"seed": 1.0}, r"seed: expected int"),
    ({"model": 5}, r"model: expected a \[model\] table"),
])
def test_wrong_types_refused(values, match):
    with pytest.raises(ConfigError, match=match):
        compose.from_dict(values)


def test_int_accepted_for_float():
    cfg = compose.from_dict({"train": {"lr": 1}, "model": {"sample": 0}})
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.model.sample == 0.0 and isinstance(cfg.model.sample, float)


@pytest.mark.parametrize("values,match", [
    ({"model": {"dim": 0}}, r"model\.dim must be > 0"),
    ({"partition": {"num_clients": -2}}, r"partition\.num_clients must be > 0"),
    ({"train": {"lr": 0.0}}, r"train\.lr must be > 0"),
    ({"train": {"lr": math.nan}}, r"train\.lr must be > 0"),
    ({"model": {"sample": -1e-3}}, r"model\.sample must be >= 0"),
    ({"model": {"ns_exponent": math.nan}}, r"model\.ns_exponent must be >= 0"),
    ({"federation": {"round_timeout": -1}}, r"federation\.round_timeout must be >= 0"),
    ({"vocab": {"max_size": -1}}, r"vocab\.max_size must be >= 0"),
    ({"vocab": {"mode": "private"}}, r"vocab\.mode: 'private' is not one of \['discovered', 'public'\]"),
    ({"data": {"format": "xml"}}, r"data\.format: 'xml' is not one of"),
    ({"federation": {"aggregate": "geometric_median"}}, r"federation\.aggregate: 'geometric_median'"),
    ({"federation": {"row_weight": "x"}}, r"federation\.row_weight"),
    ({"partition": {"name": "shards"}}, r"partition\.name: 'shards' is not one of \['dirichlet', 'iid', 'natural', 'quantity', 'vocab_skew'\]"),
    ({"model": {"family": "glove"}}, r"model\.family: 'glove'"),
    ({"federation": {"clients_per_round": 11}}, r"clients_per_round \(11\) exceeds partition\.num_clients \(10\)"),
    ({"train": {"min_lr": 0.5}}, r"train\.min_lr \(0\.5\) exceeds train\.lr"),
    ({"train": {"batch_size": 100}}, r"batch_size \(100\) must be a multiple of train\.neg_share \(32\)"),
])
def test_out_of_range_refused(values, match):
    with pytest.raises(ConfigError, match=match):
        compose.from_dict(values)


def test_toml_roundtrip(tmp_path):
    cfg = compose.from_dict({"name": "ünïcode run", "seed": 7, "data": {"corpus": "/data/x.jsonl"},
                       "model": {"dim": 32, "sample": 1e-4, "family": "cbow"},
                       "federation": {"round_timeout": 30.5, "clients_per_round": 3},
                       "eval": {"baseline": False}})
    p = tmp_path / "scenario.toml"
    cfg.save(p)
    assert not (tmp_path / "scenario.toml.tmp").exists()
    back = C.load(p)
    assert back == cfg and back.to_dict() == cfg.to_dict()
    assert back.model.sample == 1e-4 and back.eval.baseline is False


def test_scenario_file_names_only_differences(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('[model]\ndim = 16\n[partition]\nname = "iid"\n')
    cfg = C.load(p)
    assert cfg.model.dim == 16 and cfg.partition.name == "iid"
    assert cfg.model.window == C.ModelConfig().window and cfg.train == C.TrainConfig()


def test_file_errors_name_file_and_key(tmp_path):
    with pytest.raises(ConfigError, match="config file does not exist: .*missing.toml"):
        C.load(tmp_path / "missing.toml")
    p = tmp_path / "bad.toml"
    p.write_text("[model\n")
    with pytest.raises(ConfigError, match=f"{p}: not valid TOML"):
        C.load(p)
    p.write_text("[model]\ndimension = 3\n")
    with pytest.raises(ConfigError, match=rf"{p}: unknown key: model\.dimension"):
        C.load(p)
    p.write_bytes(b"name = \"caf\xe9\"\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        C.load(p)


def test_dotted_overrides(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text("seed = 3\n[federation]\nrounds = 9\naggregate = \"fedavg\"\n")
    cfg = C.load(p, {"federation.rounds": 2, "model.dim": 20, "seed": 4})
    assert cfg.federation.rounds == 2 and cfg.federation.aggregate == "fedavg"  # file value kept
    assert cfg.model.dim == 20 and cfg.seed == 4
    with pytest.raises(ConfigError, match=r"unknown key: model\.dimx"):
        C.load(None, {"model.dimx": 3})
    with pytest.raises(ConfigError, match=r"model\.dim must be > 0"):
        C.load(None, {"model.dim": 0})
    with pytest.raises(ConfigError, match=r"seed\.x"):     # a key below a scalar
        C.load(p, {"seed.x": 1})


def test_every_section_is_a_dataclass_with_defaults():
    # guards the flattening in config.check(): every top-level non-scalar is a section
    for f in dataclasses.fields(C.Config):
        if f.name not in ("name", "seed"):
            assert dataclasses.is_dataclass(f.default_factory())


def test_shipped_default_scenario_is_the_built_in_default():
    from pathlib import Path

    shipped = C.load(Path(__file__).parent.parent / "simulations" / "scenarios" / "default.toml")
    assert shipped.to_dict() == C.Config().to_dict()
