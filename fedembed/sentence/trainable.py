"""The small trainable part of the sentence encoder, and its tables.

Three kinds (`adapter`, `lora`, `top`), measured against each other in docs/BENCHMARKS.md
("Sentence encoder: which part to train"):

- `adapter`: a residual linear map on the frozen sentence vector, e' = norm(e + W e + b),
  W and b zero at the start (so round 1 starts from the untuned model). The frozen encoder
  runs once per text, ever; training touches 384·385 numbers.
- `lora`: rank-r updates B·A (B zero at the start) on every layer's query and value
  projections; every step runs the whole encoder forward and backward.
- `top`: the last transformer layer trained in full; the lower layers run without gradients.

The trainable parameters travel as tables: 2-D float32 arrays named by parameter (a bias
as one row), so the update pipeline (weights, clipping, SecAgg+'s flatten) sees the shapes
it knows; every row has weight 1, which makes row-wise aggregation a plain mean.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fedembed.sentence.encoder import Encoder, mean_pool, normalize
from fedembed.sentence.keys import KINDS


def table_name(param: str) -> str:
    """Parameter names as table names ('.' is a separator elsewhere: SecAgg+ layouts, npz keys)."""
    return param.replace(".", "__")


class LoRALinear(nn.Module):
    """base(x) + (alpha / r)·B(A(x)), the base frozen; A small random, B zero (Hu et al. 2021).
    A and B are nn.Linear, whose per-sample gradients Opacus computes."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, seed: int) -> None:
        super().__init__()
        self.base = base
        self.lora_a = nn.Linear(base.in_features, rank, bias=False)
        self.lora_b = nn.Linear(rank, base.out_features, bias=False)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.lora_a.weight.copy_(torch.randn(rank, base.in_features, generator=gen) / base.in_features ** 0.5)
            self.lora_b.weight.zero_()
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * self.lora_b(self.lora_a(x))


class SentenceModel(nn.Module):
    """The frozen encoder with one kind of trainable part.

    `features(ids, mask)` is what can be computed once and kept (the adapter's frozen
    sentence vectors; the token ids otherwise); `forward(features)` gives normalised sentence
    vectors with gradients through the trainable part only."""

    def __init__(self, encoder: Encoder, kind: str = "adapter", rank: int = 8, alpha: float = 16.0,
                 seed: int = 0) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"trainable part {kind!r} is not one of {KINDS}")
        self.kind, self.encoder = kind, encoder
        encoder.requires_grad_(False)
        d = encoder.config.hidden_size
        if kind == "adapter":
            self.adapter = nn.Linear(d, d)
            nn.init.zeros_(self.adapter.weight)
            nn.init.zeros_(self.adapter.bias)
        elif kind == "lora":
            for i, layer in enumerate(encoder.layers):
                att = layer.attention.self
                att.query = LoRALinear(att.query, rank, alpha, seed * 1000 + 2 * i)
                att.value = LoRALinear(att.value, rank, alpha, seed * 1000 + 2 * i + 1)
        else:
            encoder.layers[-1].requires_grad_(True)

    @property
    def cacheable(self) -> bool:
        """Whether `features` depend only on the frozen encoder (computed once per text)."""
        return self.kind == "adapter"

    @torch.no_grad()
    def features(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "adapter":
            return normalize(mean_pool(self.encoder(ids, mask), mask))
        return ids, mask

    def forward(self, ids_or_vec: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.kind == "adapter":
            e = ids_or_vec
            return normalize(e + self.adapter(e))
        if self.kind == "top":
            n = len(self.encoder.layers)
            with torch.no_grad():
                low = self.encoder(ids_or_vec, mask, stop=n - 1)
            states = self.encoder(ids_or_vec, mask, start=n - 1, states=low)
        else:
            states = self.encoder(ids_or_vec, mask)
        return normalize(mean_pool(states, mask))

    def trainable(self) -> dict[str, nn.Parameter]:
        return {k: p for k, p in self.named_parameters() if p.requires_grad}

    def tables(self) -> dict[str, np.ndarray]:
        """The trainable parameters as 2-D float32 tables (a 1-D parameter as one row)."""
        return {k: p.detach().numpy().astype(np.float32).reshape(-1, p.shape[-1]) if p.dim() > 1
                else p.detach().numpy().astype(np.float32).reshape(1, -1) for k, p in self.trainable().items()}

    def load_tables(self, tables: dict[str, np.ndarray]) -> None:
        params = self.trainable()
        if set(tables) != set(params):
            raise ValueError(f"tables {sorted(tables)} do not match the trainable part's {sorted(params)}")
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(torch.from_numpy(np.asarray(tables[k], dtype=np.float32)).reshape(p.shape))
