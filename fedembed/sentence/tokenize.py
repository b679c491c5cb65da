"""Texts → padded id and mask tensors, with the packaged tokenizer (tokenizer.json).

The model's own WordPiece tokenizer (lower-casing BERT normaliser, [CLS] … [SEP]) through the
`tokenizers` library; sequences are cut at `max_length` tokens and padded to the batch's
longest, not to 128, so a batch of short descriptions costs what its texts cost.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch


class TextTokenizer(Protocol):
    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]: ...


class WordPiece:
    """The packaged tokenizer; `max_length` caps each text (all-MiniLM-L6-v2 was trained at 128)."""

    def __init__(self, path: Path, max_length: int = 128) -> None:
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(path))
        self.tok.no_padding()
        self.tok.enable_truncation(max_length)
        self.pad_id = self.tok.token_to_id("[PAD]") or 0

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.tok.encode_batch(list(texts))
        return pad([e.ids for e in enc], self.pad_id)


def pad(seqs: list[list[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids [B, T], mask [B, T]) with T the longest sequence (at least 1)."""
    t = max((len(s) for s in seqs), default=1) or 1
    ids = torch.full((len(seqs), t), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), t), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, :len(s)] = 1
    return ids, mask
