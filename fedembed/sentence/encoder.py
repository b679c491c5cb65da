"""A BERT encoder in plain torch (all-MiniLM-L6-v2's architecture) and its sentence vectors.

Why not transformers' BertModel: the federated family needs to run the frozen lower layers
once and the trainable part many times, insert LoRA into named projections, and give Opacus
modules whose per-sample gradients it knows (nn.Linear, nn.LayerNorm); a 90-line encoder with
the checkpoint's own parameter names does all three, and loads the packaged safetensors with
`load_state_dict` as is. A test checks its vectors against sentence-transformers' own on the
packaged model. Sentence vectors are the mean of the last layer's token states over the
attention mask, L2-normalised — all-MiniLM-L6-v2's pooling (1_Pooling/config.json) and its
Normalize module.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    @classmethod
    def from_file(cls, path: Path) -> BertConfig:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})


class Embeddings(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.word_embeddings(ids) + self.position_embeddings(pos)[None] + self.token_type_embeddings.weight[0]
        return self.LayerNorm(x)


class SelfAttention(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.heads = c.num_attention_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.heads

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, h, d // h).transpose(1, 2)
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // h) + bias    # bias: 0 or -inf-ish on padding
        return (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)


class DenseNorm(nn.Module):
    """dense → dropout (none: inference and fine-tuning alike) → residual → LayerNorm."""

    def __init__(self, d_in: int, d_out: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.LayerNorm = nn.LayerNorm(d_out, eps=eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class Attention(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.self = SelfAttention(c)
        self.output = DenseNorm(c.hidden_size, c.hidden_size, c.layer_norm_eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, bias), x)


class Intermediate(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.gelu(self.dense(x))


class Layer(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.attention = Attention(c)
        self.intermediate = Intermediate(c)
        self.output = DenseNorm(c.intermediate_size, c.hidden_size, c.layer_norm_eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        a = self.attention(x, bias)
        return self.output(self.intermediate(a), a)


class LayerStack(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(Layer(c) for _ in range(c.num_hidden_layers))


class Encoder(nn.Module):
    """BERT without its pooler; `forward` gives the last layer's token states."""

    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.config = c
        self.embeddings = Embeddings(c)
        self.encoder = LayerStack(c)

    @property
    def layers(self) -> nn.ModuleList:
        return self.encoder.layer

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, start: int = 0, states: torch.Tensor | None = None,
                stop: int | None = None) -> torch.Tensor:
        """Token states after layer `stop` (all layers by default), from the ids or, with
        `start` > 0, from `states` (the states after layer `start` − 1, e.g. cached)."""
        bias = (1.0 - mask[:, None, None, :].to(torch.float32)) * torch.finfo(torch.float32).min
        x = self.embeddings(ids) if start == 0 else states
        for layer in self.layers[start:stop]:
            x = layer(x, bias)
        return x


def mean_pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """all-MiniLM-L6-v2's pooling: the mean of the token states the mask keeps."""
    m = mask.unsqueeze(-1).to(states.dtype)
    return (states * m).sum(1) / m.sum(1).clamp(min=1e-9)


def normalize(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.normalize(x, p=2, dim=-1)


def load_encoder(model_dir: Path) -> Encoder:
    """The packaged weights (safetensors) into the encoder, frozen; strict: every parameter found."""
    from safetensors.torch import load_file

    enc = Encoder(BertConfig.from_file(model_dir / "config.json"))
    state = {k: v for k, v in load_file(str(model_dir / "model.safetensors")).items()
             if not k.startswith("pooler.") and k != "embeddings.position_ids"}
    enc.load_state_dict(state, strict=True)
    enc.requires_grad_(False)
    return enc.eval()
