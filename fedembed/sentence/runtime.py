"""What a process keeps between rounds for the sentence family: the loaded model and, for the
adapter, the frozen sentence vectors of each shard's texts.

Why a cache: loading the encoder reads 90 MB, and the frozen encoder's vectors of a client's
texts never change (the frozen part is the public base model), so a client that trains in
many rounds — a Ray worker, a deployed node — computes them once. Keys are the model, the
trainable kind and the file the texts came from (its size and mtime), so a new shard is a miss.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

from fedembed.sentence.contrastive import Features
from fedembed.sentence.encoder import load_encoder
from fedembed.sentence.tokenize import WordPiece
from fedembed.sentence.trainable import SentenceModel

_MODELS: dict[tuple, tuple[SentenceModel, WordPiece]] = {}
_FEATURES: OrderedDict[tuple, Features] = OrderedDict()
_MAX_FEATURES = 16


def model_path(cfg) -> Path:
    from fedembed.sentence.package import model_dir

    return Path(cfg.sentence.model) if cfg.sentence.model else model_dir()


def model_for(cfg) -> tuple[SentenceModel, WordPiece]:
    """The base encoder with this scenario's trainable part (fresh at the scenario's seed)."""
    s = cfg.sentence
    path = model_path(cfg)
    key = (str(path), s.trainable, s.rank, s.max_length, cfg.seed)
    if key not in _MODELS:
        from fedembed.errors import ConfigError

        for name in ("config.json", "model.safetensors", "tokenizer.json"):
            if not (path / name).is_file():
                raise ConfigError(f"sentence.model: {path / name} is missing")
        _MODELS.clear()   # one model per process: a new scenario replaces it
        _MODELS[key] = (SentenceModel(load_encoder(path), s.trainable, rank=s.rank, seed=cfg.seed),
                        WordPiece(path / "tokenizer.json", s.max_length))
    return _MODELS[key]


def features(model: SentenceModel, tok: WordPiece, texts: list[str], source: str, which: str) -> Features:
    """`Features` of `texts`, cached for the adapter by (model, source file, which texts)."""
    if not model.cacheable:
        return Features(model, tok, texts)
    try:
        st = os.stat(source)
        stamp = (st.st_size, st.st_mtime_ns)
    except OSError:
        return Features(model, tok, texts)
    key = (id(model), source, stamp, which, len(texts))
    if key in _FEATURES:
        _FEATURES.move_to_end(key)
        return _FEATURES[key]
    f = Features(model, tok, texts)
    _FEATURES[key] = f
    if len(_FEATURES) > _MAX_FEATURES:
        _FEATURES.popitem(last=False)
    return f
