"""A device's own privacy policy: a Flower client mod that refuses what the device did not agree to.

The server decides everything a round asks of a device: whether its update is masked
(`secagg.enabled`), how much noise the device adds, how many rounds it trains. A device that
runs `fedembed client` checks each message against its own policy first and answers one that
breaks it with an error reply naming the rule and what the message asked for (also logged on
the device); the ClientApp's handlers never see it, and know nothing of the policy.

The rules, and exactly what the device can check from one message:

* `require_secagg`: a plain `train` message is refused (its reply would carry the update in
  the clear); a `train.secagg_mask` message must name at least one peer to mask with (with
  none, the self mask is all there is, and the server unmasks it from this device's own share).
* `min_noise_multiplier` z_min: only a SecAgg+ mask message under distributed DP carries noise
  the device adds itself. It says the device's noise share std σ_i (`noise_std`) and the
  survivor floor f the shares were calibrated for (`floor`: the round is unmasked only if at
  least f masked updates arrive, fedembed/privacy/distributed.py); the train content beside
  it carries the scenario, whose `privacy.clip` C is what this device clips its update to
  (`privacy.user_level`). Any released sum carries at least f − 1 shares besides this
  device's own, std σ_i·√(f − 1), over a sum whose sensitivity is C:

      z = σ_i·√(f − 1) / C

  With adaptive clipping the clip bit (sensitivity ½) is summed too, with share std σ_b,i, so
  the released pair is one Gaussian mechanism of z = (z_u⁻² + (2·σ_b,i·√(f − 1))⁻²)^−½, the
  z the server accounts. z is 0 for a plain train message, a scenario that does not clip, or
  an unnoised clip bit; the noise cannot be checked (refused) when the message does not say
  m, says an m smaller than its own peers + 1, or noises without subtractive dither (the
  quantization error would then depend on the data). m is the server's claim: a server that
  lies about it is outside this check (the noise present is σ_i·√m' for the m' shares that
  really are in the sum); against the server together with the other clients, only this
  device's own share σ_i/C counts.
* `max_epsilon` per round: ε of one round of the Gaussian mechanism at that z, without
  amplification by sampling (the device cannot trust a sampling it does not control), from
  Opacus' RDP accountant at the device's `delta`.
* `max_rounds` per run: the rounds this device trained in a run (plain `train` and
  `train.secagg_mask` messages it answered), counted in the run's `context.state`.

Messages that carry nothing of the device's data (`query`, the SecAgg+ key, share and unmask
stages) always pass. Without any rule the mod is not installed: the node behaves as before.
"""
from __future__ import annotations

import json
import logging
import math
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

from fedembed.errors import ConfigError

log = logging.getLogger(__name__)

ERROR_CODE = 4661            # the Error code of a reply refused by the device's policy
STATE = "device_policy"      # ConfigRecord in the run's context.state: {"run_id", "rounds"}
PLAIN, MASK = "train", "train.secagg_mask"   # the messages whose reply depends on the device's data
DEFAULT_DELTA = 1e-5


@dataclass(frozen=True)
class Noise:
    """The noise multiplier a message asks this device for; `z` None when it cannot be told."""
    z: float | None
    how: str          # how z follows from the message, or why it cannot be told


@dataclass(frozen=True)
class Policy:
    require_secagg: bool = False
    min_noise_multiplier: float | None = None
    max_epsilon: float | None = None       # per round, at `delta`, no amplification
    delta: float = DEFAULT_DELTA
    max_rounds: int | None = None          # per run

    def __post_init__(self) -> None:
        if not isinstance(self.require_secagg, bool):
            raise ConfigError(f"require_secagg must be true or false, got {self.require_secagg!r}")
        for name in ("min_noise_multiplier", "max_epsilon", "delta", "max_rounds"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or (name == "max_rounds" and not isinstance(value, int))):
                raise ConfigError(f"{name} must be a number{' (whole)' if name == 'max_rounds' else ''}, "
                                  f"got {value!r}")
        if self.min_noise_multiplier is not None and not self.min_noise_multiplier >= 0:
            raise ConfigError(f"min_noise_multiplier must be >= 0, got {self.min_noise_multiplier}")
        if self.max_epsilon is not None and not self.max_epsilon > 0:
            raise ConfigError(f"max_epsilon must be > 0, got {self.max_epsilon}")
        if not 0 < self.delta < 1:
            raise ConfigError(f"delta must be in (0, 1), got {self.delta}")
        if self.max_rounds is not None and self.max_rounds < 1:
            raise ConfigError(f"max_rounds must be >= 1, got {self.max_rounds}")

    @property
    def active(self) -> bool:
        return (self.require_secagg or self.min_noise_multiplier is not None or self.max_epsilon is not None
                or self.max_rounds is not None)

    def describe(self) -> str:
        """One line for the device's log: what it will refuse."""
        if not self.active:
            return "no device policy (every message the ClientApp can answer is answered)"
        rules = (["SecAgg+ required"] if self.require_secagg else []) + \
            ([f"z >= {self.min_noise_multiplier:g}"] if self.min_noise_multiplier is not None else []) + \
            ([f"epsilon <= {self.max_epsilon:g} per round at delta = {self.delta:g}"]
             if self.max_epsilon is not None else []) + \
            ([f"at most {self.max_rounds} rounds per run"] if self.max_rounds is not None else [])
        return "device policy: " + ", ".join(rules)

    # -- one message ---------------------------------------------------------------------
    def refusal(self, message, context) -> str | None:
        """Why this device refuses `message` (every rule it breaks), or None."""
        mtype = message.metadata.message_type
        if not self.active or mtype not in (PLAIN, MASK):
            return None
        broken: list[str] = []
        if self.require_secagg:
            if mtype == PLAIN:
                broken.append("require_secagg: a plain train message; its reply would carry this device's "
                              "update unmasked")
            elif not _secagg(message.content).get("peers"):
                broken.append("require_secagg: the mask message gives this device no peer to mask with; the "
                              "server could unmask its update alone")
        if self.min_noise_multiplier is not None or self.max_epsilon is not None:
            noise = noise_of(message)
            if noise.z is None:
                broken.append(f"{_noise_rules(self)}: the noise cannot be checked: {noise.how}")
            else:
                if self.min_noise_multiplier is not None and noise.z < self.min_noise_multiplier:
                    broken.append(f"min_noise_multiplier = {self.min_noise_multiplier:g}: it asks for "
                                  f"z = {noise.z:.4g} ({noise.how})")
                if self.max_epsilon is not None:
                    eps = epsilon_per_round(noise.z, self.delta)
                    if not eps <= self.max_epsilon:
                        broken.append(f"max_epsilon = {self.max_epsilon:g} per round (delta = {self.delta:g}, no "
                                      f"amplification): it asks for epsilon = {eps:.4g} at z = {noise.z:.4g} "
                                      f"({noise.how})")
        if self.max_rounds is not None:
            done = rounds_trained(context)
            if done >= self.max_rounds:
                broken.append(f"max_rounds = {self.max_rounds}: this device already trained {done} round(s) in "
                              f"run {context.run_id}")
        if not broken:
            return None
        return (f"device policy refused {mtype} (run {context.run_id}, round {_round_of(message)}): "
                + "; ".join(broken))


def _noise_rules(policy: Policy) -> str:
    return " and ".join(r for r, v in (("min_noise_multiplier", policy.min_noise_multiplier),
                                       ("max_epsilon", policy.max_epsilon)) if v is not None)


def _secagg(content) -> Any:
    from fedembed.secagg import messages as msg

    return content.config_records.get(msg.SECAGG, {})


def _round_of(message) -> str:
    from fedembed.federation import wire

    rec = _secagg(message.content) or message.content.config_records.get(wire.TRAIN, {})
    return str(rec.get("round", "?"))


def _scenario_privacy(content) -> dict[str, Any]:
    """The `[privacy]` of the scenario the train content carries (what this device will apply)."""
    from fedembed.federation import wire

    train = content.config_records.get(wire.TRAIN)
    if train is None or "config" not in train:
        return {}
    return dict(json.loads(str(train["config"])).get("privacy", {}))


def noise_of(message) -> Noise:
    """The noise multiplier of what this device's reply to `message` releases (module doc)."""
    if message.metadata.message_type != MASK:
        return Noise(0.0, "a plain train message: this device adds no noise")
    c = _secagg(message.content)
    privacy = _scenario_privacy(message.content)
    if not privacy.get("user_level"):
        return Noise(0.0, "the scenario it carries does not clip updates (privacy.user_level = false)")
    clip = float(privacy.get("clip", 0.0))
    if not clip > 0:
        return Noise(None, f"the scenario it carries clips to C = {clip:g}")
    if "cohort" not in c or "floor" not in c:
        return Noise(None, "the mask message does not say the cohort m and the survivor floor f its noise "
                           "share was calibrated for")
    m, f, sigma = int(c["cohort"]), int(c["floor"]), float(c.get("noise_std", 0.0))
    peers = len(c.get("peers", []))
    if m < peers + 1:
        return Noise(None, f"it says a cohort of m = {m} but names {peers} peer(s) of this device")
    if not 2 <= f <= m:
        return Noise(None, f"it says a survivor floor of f = {f} for a cohort of m = {m} (needs 2 <= f <= m)")
    if sigma > 0 and not bool(c.get("dither", False)):
        return Noise(None, "it asks for noise without subtractive dither (the quantization error would "
                           "depend on the data)")
    z_u = sigma * math.sqrt(f - 1) / clip
    how = (f"noise share sigma_i = {sigma:.4g} for a survivor floor of f = {f} (cohort of m = {m}), clip "
           f"C = {clip:g}: z = sigma_i*sqrt(f-1)/C")
    if int(c.get("extra", 0)) > 0:       # adaptive clipping: the clip bit is released too
        sigma_b = float(c.get("bit_noise_std", 0.0))
        z_b = 2.0 * sigma_b * math.sqrt(f - 1)
        how += f", with the clip bit's share sigma_b = {sigma_b:.4g}: z = (z_u^-2 + (2*sigma_b*sqrt(f-1))^-2)^-1/2"
        return Noise(0.0 if z_u == 0 or z_b == 0 else (z_u ** -2 + z_b ** -2) ** -0.5, how)
    return Noise(z_u, how)


def epsilon_per_round(z: float, delta: float) -> float:
    """ε of one Gaussian mechanism of multiplier z (sample rate 1), Opacus' RDP accountant."""
    from fedembed.privacy.accountant import Accountant

    return Accountant("rdp").peek(z, 1.0, delta) if z > 0 else math.inf


def rounds_trained(context) -> int:
    """Rounds this device trained in `context`'s run (a run of the same series starts at 0)."""
    rec = context.state.config_records.get(STATE)
    return int(rec["rounds"]) if rec is not None and int(rec["run_id"]) == int(context.run_id) else 0


def _count_round(context) -> None:
    from flwr.app import ConfigRecord

    context.state[STATE] = ConfigRecord({"run_id": int(context.run_id), "rounds": rounds_trained(context) + 1})


Mod = Callable[[Any, Any, Callable[[Any, Any], Any]], Any]


def mod(policy: Policy) -> Mod:
    """A Flower client mod (message, context, call_next) → reply that enforces `policy`."""
    def device_policy(message, context, call_next):
        from flwr.app import Error, Message

        why = policy.refusal(message, context)
        if why is not None:
            log.warning(why)
            return Message(Error(code=ERROR_CODE, reason=why), reply_to=message)
        reply = call_next(message, context)
        if message.metadata.message_type in (PLAIN, MASK) and not reply.has_error():
            _count_round(context)
        return reply

    return device_policy


def mods(policy: Policy) -> list[Mod]:
    """The mods a node installs for `policy`: none without a rule (the node behaves as before)."""
    return [mod(policy)] if policy.active else []


# -- from a file and flags --------------------------------------------------------------------
def load(path: Path | None, **flags: Any) -> Policy:
    """A policy TOML file (top-level keys named as `Policy`'s fields), overridden by the flags
    that were given (None = not given)."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path).expanduser()
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read the policy file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"policy file {path} is not valid TOML: {exc}") from None
        known = {f.name for f in fields(Policy)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"policy file {path}: unknown key(s) {', '.join(unknown)} "
                              f"(known: {', '.join(sorted(known))})")
    values.update({k: v for k, v in flags.items() if v is not None})
    try:
        return Policy(**values)
    except TypeError as exc:
        raise ConfigError(f"policy: {exc}") from None
