"""`data.format = "devices"`: a deployed federation whose nodes hold all the data; the server
holds only the public vocabulary (driven in process through the real ClientApp handlers)."""
from __future__ import annotations

import numpy as np
import pytest

import fedembed
from fedembed import compose
from fedembed import checkpoint, metrics
from fedembed.run import federate
from fedembed.data import device
from fedembed.errors import ConfigError
from inprocess_grid import InProcessGrid

pytestmark = pytest.mark.usefixtures("task_identity", "one_torch_thread")


def _devices(tmp_path, small_corpus, n: int = 3) -> list[str]:
    """The Lee corpus split line by line over `n` device files."""
    lines = small_corpus["corpus"].read_text(encoding="utf-8").splitlines()
    paths = []
    for k in range(n):
        p = tmp_path / f"device_{k}.txt"
        p.write_text("\n".join(lines[k::n]) + "\n", encoding="utf-8")
        paths.append(str(p))
    return paths


def test_a_federation_trains_on_data_only_the_devices_hold(tmp_path, write_scenario, small_corpus, monkeypatch):
    monkeypatch.setenv(device.CACHE_ENV, str(tmp_path / "device_cache"))
    cfg = compose.load(write_scenario(data={"corpus": "", "format": "devices"}))
    grid = InProcessGrid(3, per_pull=3)
    for k, path in enumerate(_devices(tmp_path, small_corpus)):
        grid.contexts[k].node_config["data-path"] = path
    report = federate(grid, cfg, tmp_path / "run", progress=False)
    rows = metrics.read(tmp_path / "run")
    assert [r["clients_ok"] for r in rows] == [3, 3] and rows[-1]["examples"] > 0
    assert report["run"]["tokens"] is None and checkpoint.load(tmp_path / "run").round == 2
    assert not list((tmp_path / "run" / "data").glob("client_*"))          # no shard on the server
    assert np.isfinite(checkpoint.load(tmp_path / "run").tables["in_vectors"]).all()


def test_a_node_without_its_own_data_is_told_so(tmp_path, write_scenario, small_corpus, monkeypatch):
    monkeypatch.setenv(device.CACHE_ENV, str(tmp_path / "device_cache"))
    cfg = compose.load(write_scenario(data={"corpus": "", "format": "devices"}))
    with pytest.raises(Exception, match='data.format = "devices".*fedembed client --data'):
        federate(InProcessGrid(3), cfg, tmp_path / "run", progress=False)


def test_devices_data_rules_out_what_needs_the_corpus_on_the_server(tmp_path, write_scenario):
    with pytest.raises(ConfigError, match="rules out eval.baseline"):
        compose.load(write_scenario(data={"format": "devices"}, eval={"baseline": True}))
    with pytest.raises(ConfigError, match="rules out privacy_attacks.canary, privacy_attacks.membership"):
        compose.load(write_scenario(data={"format": "devices"},
                                       privacy_attacks={"canary": True, "membership": True}))
    with pytest.raises(ConfigError, match="is for a deployed federation"):
        fedembed.simulate(write_scenario(data={"format": "devices"}), tmp_path / "sim", progress=False)
    assert not (tmp_path / "sim").exists()                                    # nothing written for a refused run
