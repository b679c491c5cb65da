"""Word soup: random lines over words the gensim evaluation lists contain, and a scenario over it,
for the runs under Flower's runtimes (tests/test_flwr_run.py, tests/test_deploy_e2e.py)."""
from __future__ import annotations

from pathlib import Path

import tomli_w

# Words the gensim evaluation lists (WordSim353, SimLex999, Google analogies) contain, so
# report.json's word-similarity figures have something to score.
EVAL_WORDS = ("tiger cat computer keyboard internet plane car train book paper old new smart intelligent hard "
              "difficult happy cheerful easy fast rapid athens greece baghdad iraq doctor nurse professor student "
              "bread butter television radio media love sex").split()


def word_soup(rng, lines: int) -> str:
    """`lines` lines of 20 words drawn from EVAL_WORDS."""
    return "".join(" ".join(rng.choice(EVAL_WORDS) for _ in range(20)) + "\n" for _ in range(lines))


def word_soup_scenario(directory: Path, name: str, rng) -> Path:
    """A 3-client, 5-round scenario over 600 lines of word soup with the words as its vocabulary,
    for runs under Flower's runtimes (absolute paths: a ServerApp's cwd is not the test's)."""
    corpus, words = directory / "corpus.txt", directory / "words.txt"
    corpus.write_text(word_soup(rng, 600), encoding="utf-8")
    words.write_text("\n".join(EVAL_WORDS) + "\n", encoding="utf-8")
    scenario = directory / "scenario.toml"
    scenario.write_text(f'name = "{name}"\nseed = 0\n' + tomli_w.dumps({
        "data": {"corpus": str(corpus)}, "vocab": {"source": str(words), "min_count": 1},
        "partition": {"name": "iid", "num_clients": 3}, "federation": {"rounds": 5}, "model": {"dim": 16},
        "eval": {"baseline": False}}), encoding="utf-8")
    return scenario
