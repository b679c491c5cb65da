"""Differential privacy for fedembed: user-level DP-FedAvg, its accounting and the privacy ledger.

One job per module:
- `params`     resolve and check the [privacy] settings (δ, q, z from a target ε, the adaptive split)
- `sampling`   Poisson client sampling from secret randomness (what amplification assumes)
- `user_dp`    the mechanism: client-side joint clipping, server-side noise, row-wise division, adaptive C
- `accountant` ε of the Poisson-subsampled Gaussian over rounds (Opacus RDP / PRV)
- `ledger`     per-round, per-unit ε and δ; persisted in the checkpoint, summarised in report.json
- `session`    the hooks the server's round loop calls, tying the mechanism to the ledger
- `tree`       DP-FTRL's tree aggregation: noisy prefix-sum increments, seeded node noise, clients' shares
- `tree_accounting`  its ε: the whole tree release as one Gaussian mechanism, no amplification
- `schedule`   fixed, public participation schedules (every round; cyclic cohorts) that DP-FTRL accounts

Record-level DP-SGD inside clients (the `record_*`, `per_sample` and `lazy_noise` modules) keeps
its own accountant and reports its ε through the `ledger.RECORD_EPSILON` reply metric.
"""
