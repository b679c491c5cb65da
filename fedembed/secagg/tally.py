"""A round's metrics as exact sums under the masks: what the server may learn of them is their total.

Under SecAgg+ nothing but the masked vector leaves a client. What the server wants of the
clients' round metrics — the mean training loss, the examples trained, how many values the
range clip changed — it can have as sums over the survivors, like the update itself: each
client writes them into its vector's last values (after the update and the clip bit) and the
masks hide them with the rest.

They are counters, not model values, so they travel exactly: each is rounded to an integer
(stochastically: loss·examples in fixed point, `LOSS_SCALE`), clamped to [0, 2^VALUE_BITS)
and cut into limbs of bits − 1 bits. A limb is at most L = 2^(bits−1) − 1, the largest
quantized value the ring was sized for, so the sum of the round's limbs cannot wrap either;
the quantizer passes these values through unscaled and without rounding noise
(`Quantizer(exact=…)`), and the server recombines the limb sums into exact totals.

Which metrics are summed is the server's choice, made from the scenario (`names_for`), and
stated in the mask request: none under user-level DP (only the noised sum may depend on the
data; the round's loss is then unavailable), the range-clip count only under record-level DP
(a function of the noised tables; the loss is of the raw data and stays home), and loss,
examples and the clip count otherwise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LOSS_SUM, EXAMPLES, CLIPPED = "loss_sum", "examples", "secagg_clipped"
KNOWN = (LOSS_SUM, EXAMPLES, CLIPPED)
LOSS_SCALE = 2 ** 16          # loss·examples is summed in units of 2^−16
VALUE_BITS = 48               # a counter is clamped to [0, 2^48): 2.8·10^14 examples, or loss·examples ≈ 4·10^9


def names_for(user_level: bool, record_level: bool) -> tuple[str, ...]:
    """The sums a round asks its clients for (module docstring)."""
    if user_level:
        return ()
    return (CLIPPED,) if record_level else KNOWN


@dataclass(frozen=True)
class Tally:
    names: tuple[str, ...]
    bits: int                 # the round's quantization bits: a limb holds bits − 1 of them

    def __post_init__(self) -> None:
        unknown = sorted(set(self.names) - set(KNOWN))
        if unknown or len(set(self.names)) != len(self.names) or self.bits < 2:
            raise ValueError(f"tally of {list(self.names)} at {self.bits} bits: names must be distinct, of {KNOWN}")

    @property
    def limb_bits(self) -> int:
        return self.bits - 1

    @property
    def limbs(self) -> int:
        return math.ceil(VALUE_BITS / self.limb_bits)

    @property
    def size(self) -> int:
        return len(self.names) * self.limbs

    @property
    def limb_max(self) -> int:
        return 2 ** self.limb_bits - 1

    def encode(self, metrics: dict[str, float], rng: np.random.Generator | None = None) -> np.ndarray:
        """This client's values as limbs (float64 holding small integers), in `names` order; a
        metric the client does not have counts as 0."""
        rng = rng or np.random.default_rng()
        out = np.zeros(self.size, dtype=np.float64)
        for i, name in enumerate(self.names):
            value = _value(name, metrics)
            n = min(max(int(math.floor(value + rng.random())), 0), 2 ** VALUE_BITS - 1) if math.isfinite(value) else 0
            for j in range(self.limbs):
                out[i * self.limbs + j] = (n >> (j * self.limb_bits)) & self.limb_max
        return out

    def decode(self, sums: np.ndarray) -> dict[str, float]:
        """The totals from the summed limbs (each an exact integer)."""
        if sums.size != self.size:
            raise ValueError(f"{sums.size} summed tally values, expected {self.size}")
        out = {}
        for i, name in enumerate(self.names):
            limbs = sums[i * self.limbs:(i + 1) * self.limbs]
            total = sum(int(round(float(v))) << (j * self.limb_bits) for j, v in enumerate(limbs))
            out[name] = total / LOSS_SCALE if name == LOSS_SUM else float(total)
        return out


def _value(name: str, metrics: dict[str, float]) -> float:
    if name == LOSS_SUM:
        return float(metrics.get("loss", 0.0)) * float(metrics.get(EXAMPLES, 0.0)) * LOSS_SCALE
    return float(metrics.get(name, 0.0))
