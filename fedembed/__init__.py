"""fedembed: privacy-preserving federated embeddings (Flower + Opacus + SecAgg+).

Notebook façade: `fedembed.simulate(config, out)` runs a scenario, `fedembed.load(run_dir)`
reads a finished (or checkpointed) run back.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from fedembed.loader import Run


def simulate(*args: Any, **kwargs: Any) -> dict[str, Any]:
    from fedembed.simulation import simulate as _simulate

    return _simulate(*args, **kwargs)


def load(run_dir: str) -> "Run":
    from fedembed.loader import load as _load

    return _load(run_dir)
