"""Matrix factorisation steps: user-row reconstruction (items frozen) and item updates (users frozen).

Scores: BPR (implicit feedback): x_ui = p_u·q_i + b_i, loss −log σ(x_ui − x_uj) for an observed i
and a uniformly drawn j (Rendle et al. 2009); MSE (explicit ratings): r̂_ui = μ + c_u + b_i +
p_u·q_i. Every step adds an L2 penalty `reg` on the rows it touches.

A row's step in a batch is the mean of its occurrences' gradients (a popular item present a
thousand times in a batch moves as far as a rare one present once), so one learning rate suits
both; a user's reconstruction step likewise averages over its interactions.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

BPR, MSE = "bpr", "mse"


@dataclass(frozen=True)
class MFParams:
    loss: str = BPR
    reg: float = 0.01
    recon_steps: int = 20
    recon_lr: float = 0.5
    batch_size: int = 1024


def _mean_add(table: torch.Tensor, rows: torch.Tensor, grads: torch.Tensor, lr: float, touched=None) -> None:
    """table[r] += lr · mean of the grads of r's occurrences."""
    sums = torch.zeros((len(table), *grads.shape[1:]), dtype=table.dtype).index_add_(0, rows, grads)
    n = torch.bincount(rows, minlength=len(table)).to(table.dtype)
    hit = n > 0
    table[hit] += lr * sums[hit] / n[hit].view(-1, *([1] * (grads.dim() - 1)))
    if touched is not None:
        touched += n.double()


def reconstruct(items: torch.Tensor, item_bias: torch.Tensor, offset: float, users: torch.Tensor,
                pos: torch.Tensor, ratings: torch.Tensor, p: torch.Tensor, c: torch.Tensor, params: MFParams,
                gen: torch.Generator) -> None:
    """Fit the user rows `p` [n, D] (and biases `c` [n], MSE) to the interactions, items frozen.

    MSE: each user's ridge regression on [q_i, 1] — exact. BPR: `recon_steps` full-batch steps."""
    n, d = p.shape
    if len(users) == 0:
        return
    if params.loss == MSE:
        x = torch.cat([items[pos], torch.ones(len(pos), 1, dtype=items.dtype)], 1).double()        # [m, D+1]
        y = (ratings - offset - item_bias[pos, 0]).double()
        a = torch.zeros(n, d + 1, d + 1, dtype=torch.float64).index_add_(0, users, x[:, :, None] * x[:, None, :])
        b = torch.zeros(n, d + 1, dtype=torch.float64).index_add_(0, users, x * y[:, None])
        a += params.reg * torch.eye(d + 1, dtype=torch.float64)
        sol = torch.linalg.solve(a, b).to(p.dtype)
        p[:], c[:] = sol[:, :d], sol[:, d]
        return
    for _ in range(params.recon_steps):
        neg = torch.randint(0, len(items), (len(pos),), generator=gen)
        diff = items[pos] - items[neg]
        x = (p[users] * diff).sum(1) + item_bias[pos, 0] - item_bias[neg, 0]
        g = torch.sigmoid(-x)                                            # −∂loss/∂x
        _mean_add(p, users, g[:, None] * diff - params.reg * p[users], params.recon_lr)


def item_step(items: torch.Tensor, item_bias: torch.Tensor, offset: torch.Tensor, p: torch.Tensor,
              c: torch.Tensor, users: torch.Tensor, pos: torch.Tensor, ratings: torch.Tensor, lr: float,
              params: MFParams, gen: torch.Generator, touched: torch.Tensor) -> float:
    """One SGD step of the items on a batch, users frozen. Returns the loss sum."""
    reg = params.reg
    pu = p[users]
    if params.loss == MSE:
        e = ratings - (offset[0, 0] + c[users] + item_bias[pos, 0] + (pu * items[pos]).sum(1))
        qi = items[pos]
        _mean_add(items, pos, e[:, None] * pu - reg * qi, lr, touched)
        _mean_add(item_bias, pos, (e - reg * item_bias[pos, 0])[:, None], lr)
        offset += lr * e.mean()
        return float((e * e).sum())
    neg = torch.randint(0, len(items), (len(pos),), generator=gen)
    qi, qj = items[pos], items[neg]
    x = (pu * (qi - qj)).sum(1) + item_bias[pos, 0] - item_bias[neg, 0]
    g = torch.sigmoid(-x)
    rows = torch.cat([pos, neg])
    _mean_add(items, rows, torch.cat([g[:, None] * pu - reg * qi, -g[:, None] * pu - reg * qj]), lr, touched)
    _mean_add(item_bias, rows, torch.cat([g - reg * item_bias[pos, 0], -g - reg * item_bias[neg, 0]])[:, None], lr)
    return float(torch.nn.functional.softplus(-x).sum())


def sgd_epochs(items, item_bias, offset, p, c, users, pos, ratings, epochs: int, lr_start: float, lr_end: float,
               params: MFParams, rng: np.random.Generator, gen: torch.Generator, touched: torch.Tensor) -> tuple[float, int]:
    """`epochs` shuffled passes of `item_step`, the learning rate falling linearly; (loss sum, examples)."""
    m = len(pos)
    total = max(epochs * m, 1)
    loss, seen = 0.0, 0
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(m))
        for lo in range(0, m, params.batch_size):
            b = order[lo:lo + params.batch_size]
            lr = lr_start + (lr_end - lr_start) * seen / total
            loss += item_step(items, item_bias, offset, p, c, users[b], pos[b], ratings[b], lr, params, gen,
                              touched)
            seen += len(b)
    return loss, seen
