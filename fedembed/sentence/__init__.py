"""The sentence-encoder family's parts: a MiniLM (BERT) encoder in plain torch, loaded offline
from a registry package; the small trainable part fine-tuned federatedly; the contrastive
trainer, with and without record-level DP; pairs and retrieval evaluation.

One job per module: `package` (where the packaged weights are), `encoder` (the frozen BERT
and its mean-pooled, normalised sentence vectors), `tokenize`, `trainable` (adapter, LoRA or
top layer, and their tables), `pairs` (reading text pairs), `contrastive` (the in-batch loss
and the non-private trainer), `dp` (DP-SGD with Opacus' per-sample gradients and accountant),
`retrieval` (recall@k, MRR).
"""
