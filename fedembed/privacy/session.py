"""The server's privacy state for one run: the user-level mechanism plus the ledger.

The round loop (fedembed/federation/server.py) calls these hooks in order — budget check,
the round's client config, a check of each reply, the release of the round's sum, the round's
ledger entry —
and never needs to know which mechanism is on; with privacy off they reduce to the plain
row-wise mean and a ledger with no units. Both pieces live in the checkpoint's `extra`:
"privacy" (the ledger) and "user_dp" (the resolved noise multiplier and the current C).
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from fedembed.aggregate import divide_rows
from fedembed.privacy import distributed
from fedembed.privacy.accountant import Accountant
from fedembed.privacy.ledger import RECORD, RECORD_DELTA, RECORD_EPSILON, USER, Ledger
from fedembed.privacy.user_dp import CLIP_BIT, CentralGaussian

log = logging.getLogger(__name__)
LEDGER_KEY, MECHANISM_KEY = "privacy", "user_dp"


class PrivacySession:
    def __init__(self, cfg, extra: dict[str, Any], rng: np.random.Generator | None = None,
                 public_counts: np.ndarray | None = None) -> None:
        """`public_counts`: the public vocabulary's counts, which `privacy.denominator = "public"` needs."""
        self.ledger = Ledger.from_dict(extra.get(LEDGER_KEY))
        self.user = CentralGaussian.start(cfg, extra.get(MECHANISM_KEY), rng, public_counts)
        self.distributed = bool(cfg.secagg.enabled)  # clients add the noise in shares (privacy/distributed.py)
        self._spend: float | None = None             # z actually present this round (distributed), None = z
        self._released = True                        # False when secure aggregation aborted the round
        if self.user is not None:
            p = self.user.params
            mechanism = distributed.MECHANISM if self.distributed else CentralGaussian.mechanism
            self.ledger.open(USER, mechanism, p.delta, Accountant(p.accountant))
            if p.noise_multiplier == 0:
                log.warning("privacy.user_level with noise_multiplier = 0: updates are clipped but not "
                            "noised, so ε is infinite")
            else:
                log.info("user-level DP: z = %.4g, q = %.4g, C = %.4g, δ = %.3g, %s accountant",
                         p.noise_multiplier, p.sample_rate, self.user.clip, p.delta, p.accountant)
        self._bits = 0.0
        self._record: tuple[float, float] | None = None

    def budget_stop(self, rnd: int) -> str | None:
        """Why round `rnd` must not run (it would exceed the budget), or None."""
        if self.user is None:
            return None
        p = self.user.params
        return self.ledger.would_exceed(rnd, USER, p.noise_multiplier, p.sample_rate, p.budget)

    def round_config(self, cfg) -> dict[str, Any]:
        """The scenario sent to clients, with privacy.clip set to this round's C."""
        conf = cfg.to_dict()
        if self.user is not None:
            conf["privacy"]["clip"] = self.user.clip
        return conf

    @property
    def checks_replies(self) -> bool:
        """Whether `check_reply` looks at a reply's dense tables (user-level DP does)."""
        return self.user is not None

    def check_reply(self, tables: dict[str, np.ndarray], weights: dict[str, np.ndarray],
                    metrics: dict[str, float]) -> None:
        if self.user is not None:
            self.user.check_reply(tables, weights, metrics)

    def observe(self, metrics: dict[str, float]) -> None:
        """Fold in an accepted reply's privacy metrics (clip bit; record-level ε)."""
        self._bits += float(metrics.get(CLIP_BIT, 0.0))
        if RECORD_EPSILON in metrics:
            eps, delta = float(metrics[RECORD_EPSILON]), float(metrics.get(RECORD_DELTA, 0.0))
            self._record = (max(eps, self._record[0]), delta) if self._record else (eps, delta)

    def noise_share_std(self, calibrated_for: int) -> float:
        """Distributed DP: the noise std each of `calibrated_for` clients adds before masking (else 0)."""
        if self.user is None or not self.distributed:
            return 0.0
        return distributed.share_std(self.user.noise_std, calibrated_for)

    def release(self, sums: dict[str, np.ndarray], weights: dict[str, np.ndarray],
                noise_in_sums: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
        """The round's row-wise mean, as released: noisy under user-level DP (also when no client
        was sampled). `noise_in_sums` = (survivors, calibrated for) when the clients' noise shares
        are already in the sums (SecAgg+ with distributed DP); otherwise a trusted server adds it."""
        if self.user is None:
            return divide_rows(sums, weights)
        if noise_in_sums is None:
            deltas = self.user.noisy_mean(sums, weights)
            self.user.adapt(self._bits)
            return deltas
        survivors, calibrated_for = noise_in_sums
        self._spend = distributed.effective_multiplier(self.user.params.noise_multiplier, survivors, calibrated_for)
        deltas = distributed.noisy_mean(self.user, sums, weights, survivors, calibrated_for)
        distributed.adapt(self.user, self._bits)   # the bit sum carries the clients' noise already
        return deltas

    def abort_round(self) -> None:
        """Secure aggregation aborted the round: nothing was released, nothing is spent."""
        self._released = False

    def end_round(self, rnd: int) -> dict[str, Any] | None:
        """Spend the round on the ledger; returns its entry for metrics.jsonl (None with privacy off)."""
        if self.user is not None and self._released:
            p = self.user.params
            z = p.noise_multiplier if self._spend is None else self._spend
            extra = {} if self._spend is None else {"effective_noise_multiplier": z}
            self.ledger.spend(USER, z, p.sample_rate, {**self.user.round_params(), **extra})
        self._spend, self._released = None, True
        if self._record is not None:
            self.ledger.report(RECORD, self._record[0], self._record[1])
        self._bits, self._record = 0.0, None
        return self.ledger.close_round(rnd)

    def save(self, extra: dict[str, Any]) -> None:
        extra[LEDGER_KEY] = self.ledger.to_dict()
        if self.user is not None:
            extra[MECHANISM_KEY] = self.user.state()

    def summary(self) -> dict[str, Any]:
        return self.ledger.summary()
