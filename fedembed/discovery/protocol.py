"""The server's side of discovery: which candidates a round offers, what its noisy sum keeps.

A `DiscoveryState` is the whole protocol between rounds (JSON, saved after every round so a
killed run resumes at the next one): the trie's surviving prefixes, the candidate words, and
the rounds spent. The server only ever reads the noisy sum of a round's votes.

Thresholds are set from the noise std σ actually in the sum and the number of slots n of
each kind, so that noise alone passes an expected `f` of them: τ = σ·Φ⁻¹(1 − f/n).
- a trie level's "continue" slots: f = prefix_false_positives (a prefix no one holds dies at
  the next level, where no one votes under it; it costs vector length, not precision), and at
  most max_prefixes kept, the highest first;
- its "end" slots: f = candidate_false_positives — generous, because a candidate word is only a
  candidate: the refinement rounds decide;
- refinement: the last round keeps the words above f = false_positives (the expected number of
  noise-only words in the vocabulary); an earlier one prunes at f = candidate_false_positives.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import norm

from fedembed.discovery.alphabet import Alphabet
from fedembed.discovery.domain import Domain, TrieLevel, WordList
from fedembed.discovery.params import DiscoveryParams


@dataclass
class DiscoveryState:
    step: int = 0                                          # rounds done (trie levels, then refinement)
    prefixes: list[str] = field(default_factory=lambda: [""])
    candidates: dict[str, float] = field(default_factory=dict)   # word → its noisy vote when it became one
    scores: dict[str, float] = field(default_factory=dict)       # the discovered words' last noisy votes
    rounds: list[dict[str, Any]] = field(default_factory=list)   # what each round offered, kept and spent
    done: bool = False
    attempts: int = 0                                      # vote rounds sent, aborted ones too (their numbers)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DiscoveryState":
        return cls(**d)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict()), encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "DiscoveryState":
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))

    def history(self) -> list[tuple[float, float]]:
        """(noise multiplier present in the sum, sample rate) of every round that released a sum."""
        return [(r["noise_multiplier"], r["sample_rate"]) for r in self.rounds]

    def vocabulary(self) -> list[tuple[str, float]]:
        """The discovered words, highest noisy vote first (ties by word)."""
        return sorted(self.scores.items(), key=lambda ws: (-ws[1], ws[0]))


def threshold(std: float, expected: float, slots: int) -> float:
    """τ such that noise N(0, std²) alone passes `expected` of `slots` slots on average."""
    if slots == 0:
        return np.inf
    return std * float(norm.isf(min(0.5, expected / slots)))


def refining(state: DiscoveryState, params: DiscoveryParams) -> bool:
    return state.step >= len(params.chunks) or not state.prefixes


def domain(state: DiscoveryState, params: DiscoveryParams) -> Domain:
    """The candidates of the next round."""
    if not refining(state, params):
        depth = sum(params.chunks[:state.step])
        return TrieLevel(Alphabet(params.alphabet, params.max_length), state.prefixes, depth,
                         params.chunks[state.step])
    return WordList(sorted(state.candidates))


def noise_multiplier(state: DiscoveryState, params: DiscoveryParams) -> float:
    """z of the next round (a trie that ran out of prefixes skips to refinement's share)."""
    if not refining(state, params):
        return params.noise_multipliers[state.step]
    done = sum(1 for r in state.rounds if r["kind"] == "refine")
    return params.noise_multipliers[len(params.chunks) + done]


def absorb(state: DiscoveryState, params: DiscoveryParams, dom: Domain, noisy: np.ndarray, std: float,
           spent: dict[str, Any]) -> None:
    """Take one round's noisy sum (noise std `std`, in vote units) into the state.

    `spent`: the round's accounting (noise multiplier present, sample rate, voters), kept
    with it for the ledger.
    """
    if len(noisy) != dom.size:
        raise ValueError(f"the round's sum has {len(noisy)} values, its domain {dom.size}")
    record: dict[str, Any] = {"step": state.step, **spent}
    if isinstance(dom, TrieLevel):
        ends = dom.is_end(np.arange(dom.size))
        tc = threshold(std, params.prefix_false_positives, int((~ends).sum()))
        te = threshold(std, params.candidate_false_positives, int(ends.sum()))
        cont = np.flatnonzero(~ends & (noisy > tc))
        cont = cont[np.argsort(-noisy[cont], kind="stable")][:params.max_prefixes]
        new = np.flatnonzero(ends & (noisy > te))
        for i in new:
            state.candidates.setdefault(dom.label(i)[0], float(noisy[i]))
        state.prefixes = sorted(dom.label(i)[0] for i in cont)
        record.update(kind="trie", depth=dom.depth, chunk=dom.chunk, slots=dom.size, prefix_threshold=tc,
                      candidate_threshold=te, prefixes=len(state.prefixes), new_candidates=len(new))
    else:
        last = sum(1 for r in state.rounds if r["kind"] == "refine") + 1 == params.refine_rounds
        tau = threshold(std, params.false_positives if last else params.candidate_false_positives, dom.size)
        keep = np.flatnonzero(noisy > tau)
        kept = {dom.words[i]: float(noisy[i]) for i in keep}
        if last:
            state.scores, state.done = kept, True
        else:
            state.candidates = kept
        record.update(kind="refine", slots=dom.size, threshold=tau, kept=len(kept))
    state.rounds.append(record)
    state.step += 1
    if not state.done and refining(state, params) and not state.candidates:
        state.done = True                 # nothing left to refine: the vocabulary is empty
