"""One real Flower simulation (Ray backend) with secure aggregation: the ClientApp's stage
handlers, context.state between stages, and the error replies of dropouts, for real."""
from __future__ import annotations

import pytest

import fedembed
from fedembed import metrics

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"), pytest.mark.slow]  # Ray: ~60 s here


def test_secure_simulation_survives_a_dropout_and_aborts_cleanly_beyond_the_threshold(tmp_path, write_scenario):
    out = tmp_path / "run"
    report = fedembed.simulate(write_scenario(partition={"num_clients": 4}, federation={"rounds": 2},
                                              secagg={"enabled": True, "drop_mask": 0.3}), out, progress=False)
    rows = metrics.read(out)
    assert [r["round"] for r in rows] == [1, 2]
    # seeded dropouts (seed 0): in round 1 two of four clients drop before masking, so the other two
    # (fewer than the threshold t = 3) refuse to unmask and the round aborts; round 2 loses one and goes on
    assert rows[0]["event"] == "secagg_abort" and rows[0]["secagg"]["dropped"]["mask"] == 2
    assert "event" not in rows[1] and rows[1]["clients_ok"] == 3 and rows[1]["secagg"]["dropped"]["mask"] == 1
    assert report["quality"]["wordsim353"]["oov"] < 1.0
