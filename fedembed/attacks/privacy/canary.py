"""Canary exposure (Carlini et al. 2019, "The Secret Sharer"): how far the model singles out planted text.

Every planted canary is ranked, by `scoring.sentence_scores`, among the never-planted
reference canaries drawn from the same distribution (plant.py):

    exposure = log2(|R|) − log2(rank),   R = the references plus the canary itself,

with rank 1 the best score (ties share the mean rank). A model that learned nothing gives
a rank uniform on 1..|R| (mean exposure ≈ 1/ln 2 ≈ 1.44 bits, which the never-planted
controls show); one that memorised the canary gives the maximum, log2 |R|. Planted vs
reference scores are also the two samples of the empirical ε lower bound.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from fedembed.attacks.privacy import PRIVACY_ATTACKS, AttackContext
from fedembed.attacks.privacy.empirical_epsilon import epsilon_lower_bound
from fedembed.attacks.privacy.plant import Planted
from fedembed.attacks.privacy.roc import auc
from fedembed.attacks.privacy.scoring import sentence_scores
from fedembed.errors import FedembedError


def exposure(scores: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Exposure in bits of each score against the reference scores (higher score = more likely)."""
    ref = np.sort(np.asarray(reference, float))
    s = np.asarray(scores, float)
    above = len(ref) - np.searchsorted(ref, s, side="right")
    ties = np.searchsorted(ref, s, side="right") - np.searchsorted(ref, s, side="left")
    rank = 1.0 + above + ties / 2.0
    return np.log2(len(ref) + 1.0) - np.log2(rank)


def summarize(inserted: np.ndarray, controls: np.ndarray, references: np.ndarray, delta: float,
              confidence: float) -> dict[str, Any]:
    e, c = exposure(inserted, references), exposure(controls, references)
    bound = epsilon_lower_bound(inserted, np.concatenate([references, controls]), delta, confidence)
    return {"exposure_mean": float(e.mean()), "exposure_median": float(np.median(e)),
            "exposure_max": float(e.max()), "control_exposure_mean": float(c.mean()),
            "max_exposure": float(np.log2(len(references) + 1.0)),
            "auc": auc(inserted, np.concatenate([references, controls])), "epsilon_lb": bound.epsilon,
            "details": {"exposures": e.round(4).tolist(), "control_exposures": c.round(4).tolist(),
                        "epsilon_lb": bound.to_dict()}}


@PRIVACY_ATTACKS.register("canary")
def run(ctx: AttackContext) -> dict[str, Any]:
    planted = Planted.load(ctx.run_dir)
    if planted is None or len(planted.inserted) == 0:
        raise FedembedError(f"canary attack: no planted canaries in {ctx.run_dir} (the data stage plants them when "
                            f"privacy_attacks.canary is on; prepare the run directory again)")
    window = ctx.cfg.model.window
    score = lambda rows: sentence_scores(ctx.tables, list(rows), window)  # noqa: E731
    figures = summarize(score(planted.inserted), score(planted.controls), score(planted.references),
                        ctx.privacy.get("delta") or 0.0, ctx.cfg.privacy_attacks.confidence)
    details = figures.pop("details")
    details.update(target_client=int(planted.target), canaries=len(planted.inserted),
                   repetitions=int(planted.repetitions), candidates=len(planted.references))
    return {"figures": figures, "details": details}
