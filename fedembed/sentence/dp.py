"""Record-level DP-SGD for the sentence encoder: one pair is the unit of privacy.

Why the negatives are public under DP: with in-batch negatives, pair j's texts enter the
loss of every other pair in the batch, so adding or removing j changes every per-sample
gradient, not one — the per-sample clip would no longer bound the sensitivity and the
accountant's ε would be wrong. Under DP each pair's loss therefore ranks its positive against
`negatives`: vectors of public texts (never the client's), embedded by the current model
without gradients at the start of the call, so the loss of pair i depends on pair i alone.

Each step (Abadi et al. 2016, as Opacus runs it): Poisson-sample the pairs with rate q; get
every pair's gradient over the trainable part from Opacus' per-sample gradient hooks
(GradSampleModule; the anchor's and the positive's forward passes accumulate into the same
sample) — for the adapter, the same norms and clipped sum in closed form (`adapter_clipped_sum`,
checked against Opacus in tests); clip each to L2 norm C over all parameters; add N(0, σ²C²) to the sum; divide by the
expected batch q·n; apply with Adam (post-processing). Opacus' accountant is stepped with (σ, q)
each step. Sampling and noise come from OS entropy, never the scenario's public seed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from fedembed.privacy.sampling import secret_rng
from fedembed.sentence.contrastive import SCALE, Features, PairStats
from fedembed.sentence.trainable import SentenceModel


@dataclass(frozen=True)
class PairDP:
    clip: float
    noise_multiplier: float
    expected_batch: float

    def sample_rate(self, n: int) -> float:
        return min(1.0, self.expected_batch / max(n, 1))


def public_loss(a: torch.Tensor, p: torch.Tensor, negatives: torch.Tensor, scale: float = SCALE) -> torch.Tensor:
    """Per-pair losses [B]: positive i against the public negatives only (no other pair)."""
    own = (a * p).sum(1, keepdim=True)
    logits = torch.cat((own, a @ negatives.T), 1) * scale
    return torch.nn.functional.cross_entropy(logits, torch.zeros(len(a), dtype=torch.long), reduction="none")


def per_sample_clip_sum(params: list[torch.nn.Parameter], clip: float) -> tuple[list[torch.Tensor], np.ndarray]:
    """Σ_i g_i·min(1, C/‖g_i‖) per parameter, from Opacus' `grad_sample`; also the norms ‖g_i‖."""
    flat = torch.cat([p.grad_sample.reshape(len(p.grad_sample), -1) for p in params], 1)
    norms = flat.norm(dim=1)
    factor = (clip / (norms + 1e-12)).clamp(max=1.0)
    return [torch.einsum("i,i...->...", factor, p.grad_sample) for p in params], norms.numpy()


def adapter_clipped_sum(model: SentenceModel, xa: torch.Tensor, xp: torch.Tensor, negatives: torch.Tensor,
                        clip: float) -> tuple[list[torch.Tensor], torch.Tensor, np.ndarray]:
    """The adapter's clipped per-pair gradient sum without materialising per-pair gradients.

    The adapter is one linear map on the frozen vector, y = W x + b, applied to the anchor and to
    the positive: pair i's gradient is dW_i = g_a xₐᵀ + g_p x_pᵀ, db_i = g_a + g_p (g: the loss's
    gradient at y), so ‖·‖² = ‖g_a‖²‖xₐ‖² + ‖g_p‖²‖x_p‖² + 2(g_a·g_p)(xₐ·x_p) + ‖g_a + g_p‖²
    exactly (the ghost norm of Goodfellow 2015 / Li et al. 2022), and the clipped sum is two
    matrix products. Same result as Opacus' per-sample gradients (a test checks it), at the cost
    of the non-private step. Returns ([ΣW, Σb] in the order of model.trainable()), losses, norms.
    """
    lin = model.adapter
    ya = (xa @ lin.weight.T + lin.bias).detach().requires_grad_()
    yp = (xp @ lin.weight.T + lin.bias).detach().requires_grad_()
    from fedembed.sentence.encoder import normalize

    losses = public_loss(normalize(xa + ya), normalize(xp + yp), negatives)
    losses.sum().backward()
    ga, gp = ya.grad, yp.grad
    sq = ((ga * ga).sum(1) * (xa * xa).sum(1) + (gp * gp).sum(1) * (xp * xp).sum(1)
          + 2 * (ga * gp).sum(1) * (xa * xp).sum(1) + ((ga + gp) ** 2).sum(1))
    norms = sq.clamp(min=0).sqrt()
    c = (clip / (norms + 1e-12)).clamp(max=1.0)[:, None]
    sums = {"adapter.weight": (c * ga).T @ xa + (c * gp).T @ xp, "adapter.bias": (c * (ga + gp)).sum(0)}
    return [sums[k] for k in model.trainable()], losses.detach(), norms.numpy()


def train_pairs_dp(model: SentenceModel, anchors: Features, positives: Features, negatives: Features,
                   steps: int, lr: float, dp: PairDP, accountant, optimizer: str = "adam") -> PairStats:
    """`steps` DP-SGD steps (Poisson batches) over the pairs; `accountant` is an Opacus accountant.
    `optimizer`: "adam" (as the non-private trainer) or "sgd" (plain steps on the noisy mean, whose
    noise averages out over steps instead of being rescaled coordinate by coordinate)."""
    from opacus import GradSampleModule

    from fedembed.sentence.contrastive import embed

    n = len(anchors)
    q = dp.sample_rate(n)
    bank = torch.from_numpy(embed(model, negatives))
    ghost = model.kind == "adapter"      # exact per-pair norms in closed form: no per-pair gradients held
    gsm = None if ghost else GradSampleModule(model, batch_first=True, loss_reduction="sum")
    params = list(model.trainable().values())
    opt = torch.optim.Adam(params, lr=lr) if optimizer == "adam" else torch.optim.SGD(params, lr=lr)
    rng = secret_rng()
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    t0, seen, loss_sum = time.perf_counter(), 0, 0.0
    model.train()
    try:
        for _ in range(steps):
            idx = np.flatnonzero(rng.random(n) < q)
            sums = [torch.zeros_like(p) for p in params]
            if len(idx) and ghost:
                (xa,), (xp,) = anchors.batch(idx), positives.batch(idx)
                sums, losses, _ = adapter_clipped_sum(model, xa, xp, bank, dp.clip)
                loss_sum += float(losses.sum())
                seen += len(idx)
            elif len(idx):
                losses = public_loss(gsm(*anchors.batch(idx)), gsm(*positives.batch(idx)), bank)
                losses.sum().backward()
                sums, _ = per_sample_clip_sum(params, dp.clip)
                loss_sum += float(losses.detach().sum())
                seen += len(idx)
            for p, s in zip(params, sums):
                noise = torch.normal(0.0, dp.noise_multiplier * dp.clip, p.shape, generator=gen)
                p.grad = (s + noise) / (q * n)
                p.grad_sample = None
            opt.step()
            accountant.step(noise_multiplier=dp.noise_multiplier, sample_rate=q)
    finally:
        if gsm is not None:
            gsm._close()
        model.eval()
    return PairStats(loss_sum / max(seen, 1), seen, time.perf_counter() - t0)
