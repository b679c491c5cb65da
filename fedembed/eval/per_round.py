"""Word-similarity figures of the global tables after a round (`eval.every_round`), for the
quality-per-round plot. Analogies are left to the final report: they cost seconds a round."""
from __future__ import annotations

from typing import Any

import numpy as np

from fedembed import models
from fedembed.eval.wordsim import evaluate
from fedembed.export import keyed_vectors


def figures(cfg, words: list[str], tables: dict[str, np.ndarray]) -> dict[str, Any]:
    """{"wordsim353": spearman, "simlex999": spearman} of this round's global vectors."""
    result = evaluate(keyed_vectors(words, models.make(cfg).word_vectors(tables)), analogies=False)
    return {name: result[name]["spearman"] for name in ("wordsim353", "simlex999")}
