"""The server's privacy state for one run: the user-level mechanism plus the ledger.

The round loop (fedembed/federation/server.py) calls these hooks in order — budget check,
the round's client config, a check of each reply, the charge of the round's release, the
release itself, the round's ledger entry — and never needs to know which mechanism is on;
with privacy off they reduce to the plain row-wise mean and a ledger with no units. Both
pieces live in the checkpoint's `extra`: "privacy" (the ledger) and "user_dp" (the resolved
noise multiplier and the current C).

What a run may never do, and how it is kept from it:

- *End above its budget.* The pre-round check previews the round at the noise it is guaranteed
  to carry: under SecAgg+ the clients' noise shares are calibrated so that any set of survivors
  the round will unmask (≥ `floor`, fedembed/secagg/params.py `survivor_floor`) carries at least
  z, so a round with dropouts can only be charged more noise than previewed, never less.
- *Use a release before it is charged.* `charge` spends the round on the ledger and then calls
  `on_charge` (the loop writes the ledger ahead, fedembed/privacy/write_ahead.py) before the
  secure sum is unmasked or the central noise is added; a crash between the release and the
  checkpoint is charged again on resume.
- *Leave a started round uncharged.* Whether a SecAgg+ round aborts depends on who was sampled
  and who dropped, so an aborted round is charged at the noise it would have released with.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np

from fedembed.aggregate import divide_rows
from fedembed.privacy import distributed
from fedembed.privacy.accountant import Accountant
from fedembed.privacy.ledger import RECORD, RECORD_DELTA, RECORD_EPSILON, USER, Ledger
from fedembed.privacy.params import UNTRUSTED
from fedembed.privacy.plan import measured_snr
from fedembed.privacy.user_dp import CLIP_BIT, CentralGaussian

log = logging.getLogger(__name__)
LEDGER_KEY, MECHANISM_KEY = "privacy", "user_dp"
RELEASED = "released-tables"   # the view of whoever sees only the released tables (amplified by q)
SIMULATED = "simulated-users"  # research mode: what the users actually simulated get (privacy.noise_population)


class PrivacySession:
    def __init__(self, cfg, extra: dict[str, Any], rng: np.random.Generator | None = None,
                 public_counts: np.ndarray | None = None, shapes: dict[str, tuple[int, ...]] | None = None,
                 row_tables: tuple[str, ...] | None = None, release_rows: int = 0) -> None:
        """`public_counts`: the public vocabulary's counts, which `privacy.denominator = "public"` needs;
        `shapes`: the global tables' shapes (DP-FTRL's tree holds noise of those shapes); `row_tables`:
        the tables indexed by the row index, whose signal-to-noise by public count the ledger records
        (None: every table as long as the counts; () for a family with none, such as an adapter)."""
        self.ledger = Ledger.from_dict(extra.get(LEDGER_KEY))
        if cfg.privacy.user_level and cfg.privacy.mechanism == "ftrl_tree":
            from fedembed.privacy.ftrl import TreeGaussian

            self.user = TreeGaussian.start(cfg, extra.get(MECHANISM_KEY), public_counts, shapes or {})
        else:
            self.user = CentralGaussian.start(cfg, extra.get(MECHANISM_KEY), rng, public_counts)
        self.distributed = bool(cfg.secagg.enabled)  # clients add the noise in shares (privacy/distributed.py)
        self.on_charge: Callable[[int], None] | None = None   # the loop's write-ahead of the ledger
        self.counts = public_counts if row_tables is None or row_tables else None
        self.row_tables = row_tables
        self.release_rows = release_rows    # > 0: rows past K stay at their start (privacy/release_rows.py)
        self.snr: dict[str, float] | None = None   # the last release's signal-to-noise by frequency band
        self._round = 0
        self._charged = False
        self._spend: float | None = None             # z charged this round when it differs from z
        if self.user is not None:
            p = self.user.params
            mechanism = distributed.MECHANISM if self.distributed else self.user.mechanism
            views = {RELEASED: Accountant(p.accountant)} if p.threat_model == UNTRUSTED else {}
            if p.simulated:     # research mode: the headline is the deployment's; the simulated users' own too
                views[SIMULATED] = Accountant(p.accountant)
            self.ledger.open(USER, mechanism, p.delta, Accountant(p.accountant), p.threat_model, views)
            if p.noise_multiplier == 0:
                log.warning("privacy.user_level with noise_multiplier = 0: updates are clipped but not "
                            "noised, so ε is infinite")
            else:
                log.info("user-level DP: z = %.4g, q = %.4g (credited: %.4g, %s), C = %.4g, δ = %.3g, %s accountant",
                         p.noise_multiplier, p.sample_rate, p.headline_rate, p.threat_model, self.user.clip,
                         p.delta, p.accountant)
        self._bits = 0.0
        self._record: tuple[float, float] | None = None

    def budget_stop(self, rnd: int) -> str | None:
        """Why round `rnd` must not run (it would exceed the budget), or None. The preview is at z:
        no round of this run is charged less noise than that (see the module docstring)."""
        if self.user is None:
            return None
        return self.ledger.would_exceed(rnd, USER, *self._next_charge(), self.user.params.budget)

    def _next_charge(self) -> tuple[float, float]:
        """(z, q) of the next round's nominal charge: DP-FedAvg's z at the rate the headline credits,
        or what brings DP-FTRL's ledger to the tree's μ² (no amplification)."""
        return self.user.next_charge(self.ledger.units[USER].accountant.history)

    def round_config(self, cfg, rnd: int = 0) -> dict[str, Any]:
        """The scenario sent to clients, with privacy.clip set to this round's C; opens round `rnd`."""
        self._round, self._charged, self._spend = rnd, False, None
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

    def check_sum(self, tables: dict[str, np.ndarray], weights: dict[str, np.ndarray],
                  metrics: dict[str, float], users: int) -> None:
        """A FedSGD cohort's sum of `users` clipped updates: at most users·C (fedembed/train/cohort.py)."""
        if self.user is not None:
            self.user.check_sum(tables, weights, metrics, users)

    def observe(self, metrics: dict[str, float]) -> None:
        """Fold in an accepted reply's privacy metrics (clip bit; record-level ε)."""
        self._bits += float(metrics.get(CLIP_BIT, 0.0))
        if RECORD_EPSILON in metrics:
            eps, delta = float(metrics[RECORD_EPSILON]), float(metrics.get(RECORD_DELTA, 0.0))
            self._record = (max(eps, self._record[0]), delta) if self._record else (eps, delta)

    def noise_share_std(self, calibrated_for: int) -> float:
        """Distributed DP: the noise std each client adds before masking so that any `calibrated_for`
        survivors' sum carries z, also without the target client (else 0)."""
        if self.user is None or not self.distributed:
            return 0.0
        return distributed.share_std(self.user.noise_std, calibrated_for)

    def charge(self, noise_in_sums: tuple[int, int] | None = None) -> None:
        """Spend this round on the ledger — before its release is computed or used — and write the
        ledger ahead (`on_charge`). `noise_in_sums` = (survivors, floor) under SecAgg+: the noise
        actually present; None: the round's nominal z (central noise, or an aborted round)."""
        if self._charged:
            return
        self._charged = True
        if self.user is not None:
            p = self.user.params
            z, q = self._next_charge()
            if noise_in_sums is not None:
                self._spend = z = distributed.effective_multiplier(p.noise_multiplier, *noise_in_sums)
            self.ledger.spend(USER, z, q, {}, views={RELEASED: (z, p.sample_rate),
                                                      SIMULATED: (z * p.noise_scale, p.sample_rate)})
        if self._record is not None:
            self.ledger.report(RECORD, self._record[0], self._record[1])
        if self.on_charge is not None:
            self.on_charge(self._round)

    def release(self, sums: dict[str, np.ndarray], weights: dict[str, np.ndarray],
                noise_in_sums: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
        """The round's row-wise mean, as released: noisy under user-level DP (also when no client
        was sampled). `noise_in_sums` = (survivors, floor) when the clients' noise shares are already
        in the sums (SecAgg+ with distributed DP); otherwise a trusted server adds it. Charged first."""
        self.charge(noise_in_sums)
        if self.user is None:
            return divide_rows(sums, weights)
        if noise_in_sums is None:
            if self.counts is not None:         # the trusted server holds the noiseless sum
                self.snr = measured_snr(sums, self.user.noise_std, self.counts, self.row_tables)
            deltas = self.user.noisy_mean(sums, weights)
            self.user.adapt(self._bits)
            return self._released(deltas)
        deltas = distributed.noisy_mean(self.user, sums, weights, *noise_in_sums)
        distributed.adapt(self.user, self._bits)   # the bit sum carries the clients' noise already
        return self._released(deltas)

    def _released(self, deltas: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.release_rows:
            return deltas
        from fedembed.privacy.release_rows import server_release

        return server_release(deltas, self.release_rows, self.row_tables or tuple(deltas))

    def end_round(self, rnd: int) -> dict[str, Any] | None:
        """Close the round's ledger entry (charging it if nothing was: an aborted round still
        counts); returns the entry for metrics.jsonl (None with privacy off)."""
        self.charge()
        if self.user is not None:
            extra = {} if self._spend is None else {"effective_noise_multiplier": self._spend}
            self.ledger.annotate(USER, {**self.user.round_params(), **extra})
        self._spend, self._charged = None, False
        self._bits, self._record = 0.0, None
        entry = self.ledger.close_round(rnd)
        if entry is not None and self.snr:
            entry["snr"], self.snr = self.snr, None
        return entry

    def save(self, extra: dict[str, Any]) -> None:
        extra[LEDGER_KEY] = self.ledger.to_dict()
        if self.user is not None:
            extra[MECHANISM_KEY] = self.user.state()

    def summary(self) -> dict[str, Any]:
        """report.json's `privacy`; a research-mode run says so: its ε is the simulated deployment's."""
        out = self.ledger.summary()
        p = self.user.params if self.user is not None else None
        out["simulated"] = bool(p is not None and p.simulated)
        if out["simulated"]:
            out["deployment"] = dict(p.deployment, noise_scale=p.noise_scale,
                                     note="research mode (privacy.noise_population): the noise is scaled to what "
                                          "this deployment would add; its ε is not a guarantee for the users "
                                          "simulated (theirs: epsilon_by_threat['simulated-users'])")
        return out
