"""FedAvg (McMahan et al. 2017): every row weighted by the client's number of examples."""
from __future__ import annotations

import numpy as np

from fedembed.aggregate import AGGREGATORS, BaseRule


@AGGREGATORS.register("fedavg")
class FedAvg(BaseRule):
    def __init__(self, cfg) -> None:
        pass

    def client_weights(self, row_counts: dict[str, np.ndarray], examples: int) -> dict[str, np.ndarray]:
        return {k: np.full(len(c), float(examples), dtype=np.float32) for k, c in row_counts.items()}
