"""A device's own privacy policy (fedembed/deploy/policy.py) around the real ClientApp.

Every message goes through fedembed's in-process SuperNode (`InProcessNode.handle`, what
`fedembed client` runs) with the policy's mod installed, into client/app.py's handlers and
fedembed/federation/secure_client.py; the server side is the real server loop (plain and SecAgg+
rounds), so the mask messages are the ones `ServerRound.mask_record` makes.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from flwr.app import Context, Error, Message, RecordDict

from fedembed import compose, metrics
from fedembed.deploy import policy as policy_mod
from fedembed.deploy.node_runtime import InProcessNode, RunInfo
from fedembed.deploy.policy import Policy
from fedembed.errors import ConfigError, FedembedError
from fedembed.federation import wire
from fedembed.privacy.accountant import Accountant
from fedembed.run import federate
from fedembed.secagg import messages as msg
from inprocess_grid import InProcessGrid

pytestmark = pytest.mark.usefixtures("task_identity", "one_torch_thread")

DP = {"user_level": True, "noise_multiplier": 0.8, "clip": 1.0}
SECURE = {"secagg": {"enabled": True}, "federation": {"rounds": 1, "row_weight": "presence"}}


class NodeGrid(InProcessGrid):
    """The in-process grid, each partition answered by its own in-process SuperNode with the device's policy."""

    def __init__(self, num: int, device_policy: Policy, run_id: int = 1) -> None:
        self.nodes_ = {p: InProcessNode("fedembed", "client.app:app", {"partition-id": p, "num-partitions": num},
                                        mods=policy_mod.mods(device_policy)) for p in range(num)}
        self.runs = {p: RunInfo(Context(run_id=run_id, node_id=100 + p, state=RecordDict(), run_config={},
                                        node_config={"partition-id": p, "num-partitions": num}))
                     for p in range(num)}
        super().__init__(num, serve=lambda p, m: self.nodes_[p].handle(m, self.runs[p]))

    def refusals(self) -> list[str]:
        return [str(r.error.reason) for _, r in self.replies
                if r.has_error() and r.error.code == policy_mod.ERROR_CODE]


def _run(write_scenario, tmp_path, grid: NodeGrid, **sections):
    cfg = compose.load(write_scenario(**sections))
    federate(grid, cfg, tmp_path / "run", progress=False)
    return metrics.read(tmp_path / "run")


# ---- no policy: the node is as it was ---------------------------------------------------------

def test_without_a_policy_nothing_is_installed_and_plain_rounds_are_answered(tmp_path, write_scenario):
    assert not Policy().active and policy_mod.mods(Policy()) == []
    grid = NodeGrid(3, Policy())
    assert all(node.call is node.app for node in grid.nodes_.values())     # the ClientApp itself, unwrapped
    rows = _run(write_scenario, tmp_path, grid, secagg={"enabled": False}, federation={"rounds": 1})
    assert rows[0]["clients_ok"] == 3 and not grid.refusals()


# ---- require_secagg ---------------------------------------------------------------------------

def test_a_plain_train_message_is_refused_under_require_secagg(tmp_path, write_scenario, caplog):
    grid = NodeGrid(3, Policy(require_secagg=True))
    with caplog.at_level(logging.WARNING, logger="fedembed.deploy.policy"):
        with pytest.raises(FedembedError, match="no client update could be aggregated.*require_secagg"):
            _run(write_scenario, tmp_path, grid, secagg={"enabled": False}, federation={"rounds": 1})
    refused = grid.refusals()
    assert len(refused) == 3 and {t for t, _ in grid.replies} == {"query", "train"}
    assert refused[0].startswith("device policy refused train (run 1, round 1): require_secagg: a plain train")
    assert [r.getMessage() for r in caplog.records] == refused             # logged on the device, once each
    assert all(policy_mod.rounds_trained(run.context) == 0 for run in grid.runs.values())


def test_a_secure_round_passes_require_secagg(tmp_path, write_scenario):
    grid = NodeGrid(3, Policy(require_secagg=True))
    rows = _run(write_scenario, tmp_path, grid, **SECURE)
    assert rows[0]["clients_ok"] == 3 and not grid.refusals()


# ---- noise and rounds -------------------------------------------------------------------------

def test_a_mask_message_below_the_minimum_noise_multiplier_is_refused(tmp_path, write_scenario):
    grid = NodeGrid(3, Policy(min_noise_multiplier=1.0))
    with pytest.raises(FedembedError, match="trained nothing"):            # every device refused: no round ran
        _run(write_scenario, tmp_path, grid, privacy=DP, **SECURE)
    rows = metrics.read(tmp_path / "run")
    assert rows[0]["event"] == "secagg_abort"
    refused = grid.refusals()
    assert len(refused) == 3 and all(t != msg.MASK or r.has_error() for t, r in grid.replies)
    # z as the device reads it off the message: sigma_i = z*C/sqrt(f - 1), f = 3 of 3 -> the scenario's 0.8
    assert "train.secagg_mask (run 1, round 1): min_noise_multiplier = 1: it asks for z = 0.8 (" in refused[0]
    assert "survivor floor of f = 3 (cohort of m = 3), clip C = 1" in refused[0]


def test_a_mask_message_above_the_minimum_is_answered_until_the_rounds_run_out(tmp_path, write_scenario):
    grid = NodeGrid(3, Policy(min_noise_multiplier=0.75, max_epsilon=10.0, max_rounds=1))
    rows = _run(write_scenario, tmp_path, grid, privacy=DP, secagg={"enabled": True},
                federation={"rounds": 2, "row_weight": "presence"})
    assert rows[0]["clients_ok"] == 3 and "event" not in rows[0]       # round 1: answered
    assert rows[1]["event"] == "secagg_abort"                          # round 2: the (N+1)th, refused
    refused = grid.refusals()
    assert len(refused) == 3
    assert refused[0] == ("device policy refused train.secagg_mask (run 1, round 2): max_rounds = 1: this "
                          "device already trained 1 round(s) in run 1")
    assert all(policy_mod.rounds_trained(run.context) == 1 for run in grid.runs.values())


def _mask_message(noise: float = 0.5, cohort: int | None = 5, peers=(1, 2), dither: bool = True,
                  privacy: dict | None = None, extra: int = 0, bit_noise: float = 0.0,
                  floor: int | None = None) -> Message:
    """A mask message as the server sends it: the train content with the scenario, and the secagg record."""
    over = {f"privacy.{k}": v for k, v in (privacy or {"user_level": True, "clip": 2.0}).items()}
    conf = compose.load(None, {**over, "federation.row_weight": "presence"})
    ins = wire.TrainInstruction(3, 0.025, 0.02, 0, conf.to_dict(), "")
    content = wire.train_content(wire.arrays({"t": np.zeros((2, 2), np.float32)}),
                                 wire.arrays({"counts": np.ones(2)}), ins)
    rec = {"round": 3, "peers": list(peers), "noise_std": noise, "dither": dither, "extra": extra,
           "bit_noise_std": bit_noise}
    if cohort is not None:
        rec["cohort"] = cohort
    if cohort is not None:
        rec["floor"] = cohort if floor is None else floor
    content[msg.SECAGG] = msg.get(msg.record(**rec))
    return Message(content=content, dst_node_id=7, message_type=msg.MASK, group_id="3.mask")


def _context(run_id: int = 5) -> Context:
    return Context(run_id=run_id, node_id=7, node_config={"partition-id": 0}, state=RecordDict(), run_config={})


def test_the_noise_multiplier_and_epsilon_a_device_reads_off_a_message():
    noise = policy_mod.noise_of(_mask_message(noise=0.5, cohort=5))       # z = 0.5 * sqrt(5 - 1) / C, C = 2
    assert noise.z == pytest.approx(0.5) and "f = 5" in noise.how
    lower = policy_mod.noise_of(_mask_message(noise=0.5, cohort=5, floor=3))   # fewer survivors guaranteed
    assert lower.z == pytest.approx(0.5 * 2 ** 0.5 / 2)
    z_b = 2 * 0.25 * 2                                                   # the clip bit: 2 * sigma_b * sqrt(f - 1)
    adaptive = policy_mod.noise_of(_mask_message(noise=0.5, extra=1, bit_noise=0.25))
    assert adaptive.z == pytest.approx((0.5 ** -2 + z_b ** -2) ** -0.5)
    assert policy_mod.noise_of(_mask_message(extra=1, bit_noise=0.0)).z == 0.0       # an unnoised clip bit
    assert policy_mod.noise_of(_mask_message(privacy={"user_level": False})).z == 0.0
    for bad, why in [(_mask_message(cohort=None), "does not say the cohort"),
                     (_mask_message(cohort=2), "cohort of m = 2 but names 2 peer"),
                     (_mask_message(floor=1), "survivor floor of f = 1"),
                     (_mask_message(dither=False), "without subtractive dither")]:
        assert policy_mod.noise_of(bad).z is None and why in policy_mod.noise_of(bad).how
    eps = Accountant("rdp").peek(0.5, 1.0, 1e-6)
    assert policy_mod.epsilon_per_round(0.5, 1e-6) == eps and policy_mod.epsilon_per_round(0.0, 1e-6) == math.inf
    over = Policy(max_epsilon=eps * 0.99, delta=1e-6).refusal(_mask_message(), _context())
    assert over.startswith("device policy refused train.secagg_mask (run 5, round 3): max_epsilon = ")
    assert f"epsilon = {eps:.4g} at z = 0.5" in over
    assert Policy(max_epsilon=eps * 1.01, delta=1e-6).refusal(_mask_message(), _context()) is None


def test_a_mask_message_that_does_not_say_its_cohort_is_refused():
    why = Policy(min_noise_multiplier=0.1).refusal(_mask_message(cohort=None), _context())
    assert "min_noise_multiplier: the noise cannot be checked: the mask message does not say the cohort" in why
    assert Policy(require_secagg=True).refusal(_mask_message(cohort=None), _context()) is None
    assert "no peer to mask with" in Policy(require_secagg=True).refusal(_mask_message(peers=(), cohort=1),
                                                                         _context())


def test_rounds_are_counted_per_run_and_only_for_answered_training():
    p = Policy(max_rounds=2)
    wrapped = policy_mod.mod(p)
    ctx = _context(run_id=5)
    ok = lambda m, c: Message(content=RecordDict(), reply_to=m)                       # noqa: E731
    failed = lambda m, c: Message(Error(code=1, reason="failed"), reply_to=m)         # noqa: E731
    m = _mask_message()
    assert wrapped(m, ctx, failed).error.code == 1
    assert policy_mod.rounds_trained(ctx) == 0                                        # an error reply: not counted
    for _ in range(2):
        assert not wrapped(m, ctx, ok).has_error()
    assert wrapped(m, ctx, ok).error.code == policy_mod.ERROR_CODE                    # the third
    ctx.run_id = 6                                                                    # the next run of the series
    assert not wrapped(m, ctx, ok).has_error() and policy_mod.rounds_trained(ctx) == 1
    keys = Message(content=msg.record(round=1), dst_node_id=7, message_type=msg.KEYS)
    assert not Policy(max_rounds=1, require_secagg=True, min_noise_multiplier=5).refusal(keys, ctx)


# ---- from the command line --------------------------------------------------------------------

def test_policy_file_flags_and_bad_values(tmp_path):
    f = tmp_path / "policy.toml"
    f.write_text("require_secagg = true\nmin_noise_multiplier = 0.5\nmax_rounds = 10\n", encoding="utf-8")
    assert policy_mod.load(f, max_rounds=3, delta=None) == Policy(True, 0.5, None, 1e-5, 3)
    f.write_text("max_round = 10\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown key.*max_round .*known: delta"):
        policy_mod.load(f)
    for bad, match in [({"max_rounds": 0}, "max_rounds must be >= 1"), ({"delta": 1.0}, "delta must be in"),
                       ({"max_epsilon": 0}, "max_epsilon must be > 0"), ({"max_rounds": 1.5}, "whole"),
                       ({"require_secagg": "yes"}, "true or false")]:
        with pytest.raises(ConfigError, match=match):
            policy_mod.load(None, **bad)
    with pytest.raises(ConfigError, match="not valid TOML"):
        f.write_text("= 1", encoding="utf-8")
        policy_mod.load(f)


def test_fedembed_client_refuses_a_policy_it_could_not_enforce(tmp_path, capsys):
    from fedembed.cli import main

    (tmp_path / "d.txt").write_text("a b c\n", encoding="utf-8")
    base = ["client", "--data", str(tmp_path / "d.txt"), "--superlink", "127.0.0.1:1", "--insecure"]
    assert main([*base, "--runtime", "flower", "--require-secagg"]) == 2
    assert "a device policy needs --runtime inprocess" in capsys.readouterr().err
    assert main([*base, "--max-rounds", "0"]) == 2
    assert "max_rounds must be >= 1" in capsys.readouterr().err
