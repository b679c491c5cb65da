"""The `[sentence]` keys' checks (light: no torch), run when a scenario is validated."""
from __future__ import annotations

from fedembed.errors import ConfigError

KINDS = ("adapter", "lora", "top")


def check(cfg) -> None:
    s = cfg.sentence
    if not s.pairs:
        raise ConfigError(f"sentence.pairs: model.family = {cfg.model.family!r} trains on text pairs; "
                          f"give a JSON Lines file of {{\"client_id\", \"anchor\", \"positive\"}}")
    if s.trainable not in KINDS:
        raise ConfigError(f"sentence.trainable: {s.trainable!r} is not one of {list(KINDS)}")
    if s.rank < 1:
        raise ConfigError(f"sentence.rank must be at least 1, got {s.rank}")
    if not 8 <= s.max_length <= 512:
        raise ConfigError(f"sentence.max_length must be in [8, 512], got {s.max_length}")
    if not 0.0 < s.eval_fraction < 0.5:
        raise ConfigError(f"sentence.eval_fraction must be in (0, 0.5), got {s.eval_fraction}")
    if s.negatives < 1:
        raise ConfigError(f"sentence.negatives must be at least 1, got {s.negatives}")
    if cfg.privacy.record.enabled and cfg.privacy.record.unit != "sentence":
        raise ConfigError("privacy.record.unit: the sentence family's record is one pair (unit = \"sentence\")")
    if cfg.train.mode != "local":
        raise ConfigError("train.mode: model.family = \"sentence\" trains local epochs (train.mode = \"local\")")
