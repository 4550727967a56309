"""Differentially private counts for sealed audits: the noise a server adds to each encrypted
count cell before the total leaves it (``run --dp-epsilon``), and what the transcript says of it.

Neighbouring relation: two test sets that differ in one row (added or removed), or in the
model's prediction on one row. Either moves exactly one (group, true label) count cell by at most
1 and leaves the others alone: the L1 sensitivity over all cells is 1. The auditor chooses and
encrypts the rows (it may mask them, repeat them, difference runs), so noise it cannot remove,
added on the server, plus a budget per auditor key (:mod:`.budget`), is what bounds how much the
counts say about any one prediction of a private model.

Mechanism (one today): the discrete Laplace (two-sided geometric) distribution of scale
1/epsilon, P(Z = k) proportional to exp(-epsilon |k|), drawn exactly (Canonne, Kamath & Steinke
2020, arXiv 2004.00010, algorithms 1 and 2: integer arithmetic on a rational epsilon with
uniform integers from :mod:`secrets`; no floating point, so no biased tails). The circuit adds
``noise + NOISE_OFFSET`` to an 11-bit counter holding a total of at most 1023, so the noise must
lie in [-NOISE_OFFSET, NOISE_OFFSET - 1]: it is drawn conditioned on that range (a draw outside
is redrawn). The one output a neighbour cannot produce (the range's far end) makes the mechanism
(epsilon, delta)-DP per run, with delta that end's probability; :data:`EPSILON_RANGE` keeps
delta below 1e-12. Runs compose: k runs on one key give (k epsilon, k delta).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any

import numpy as np

from ..errors import PrivacyError

NOISE_OFFSET = 512  # the counter gets noise + 512, so the noise lies in [-512, 511]
MAX_COUNT = 1023  # rows one 11-bit counter may count: count + noise + 512 stays below 2**11
EPSILON_RANGE = (0.05, 10.0)  # delta <= 2e-13 at 0.05; above 10 the noise is almost always 0
NEIGHBOURING = ("two test sets that differ in one row (added or removed), or in the model's "
                "prediction on one row: either moves one (group, true label) count cell by at "
                "most 1 and no other cell")
SENSITIVITY = 1  # L1, over all count cells, under NEIGHBOURING


def _rational(epsilon: float) -> Fraction:
    """Epsilon as the decimal it was written as (0.1 is 1/10, not the binary float near it)."""
    return Fraction(repr(float(epsilon)))


def _bernoulli(p: Fraction) -> bool:
    return secrets.randbelow(p.denominator) < p.numerator


def _bernoulli_exp(gamma: Fraction) -> bool:
    """True with probability exp(-gamma), gamma >= 0, exactly (CKS 2020, algorithm 1)."""
    while gamma > 1:  # exp(-gamma) = exp(-1)^floor(gamma) * exp(-(gamma - floor(gamma)))
        if not _bernoulli_exp(Fraction(1)):
            return False
        gamma -= 1
    k = 1
    while _bernoulli(gamma / k):
        k += 1
    return k % 2 == 1


def _discrete_laplace(epsilon: Fraction) -> int:
    """One draw with P(Z = k) proportional to exp(-epsilon |k|), exactly (CKS 2020, algorithm 2
    with scale t / s = 1 / epsilon)."""
    s, t = epsilon.numerator, epsilon.denominator
    while True:
        u = secrets.randbelow(t)
        if not _bernoulli_exp(Fraction(u, t)):
            continue
        v = 0
        while _bernoulli_exp(Fraction(1)):
            v += 1
        y = (u + t * v) // s  # u + t v is geometric of ratio exp(-1/t); y of ratio exp(-s/t)
        negative = secrets.randbits(1)
        if negative and y == 0:  # else 0 would be drawn twice as often as it should
            continue
        return -y if negative else y


def _laplace_simulated(epsilon: float, size: tuple[int, ...], rng: np.random.Generator,
                       ) -> np.ndarray:
    """The same distribution from a seeded generator (floating point): for the intervals that
    account for the noise and for coverage checks, never for the noise a server adds."""
    p = -math.expm1(-epsilon)
    return rng.geometric(p, size) - rng.geometric(p, size)


def _laplace_delta(epsilon: float) -> float:
    """Probability, under the conditioned noise, of the range's far end (+511): an output one
    neighbour can produce and the other cannot. The rest of the range keeps the privacy loss
    within epsilon (the conditioning divides both neighbours' probabilities alike)."""
    r = math.exp(-epsilon)
    inside = -math.expm1(-NOISE_OFFSET * epsilon)  # 1 - r^512: the mass outside is r^512
    return (1 - r) / (1 + r) * r ** (NOISE_OFFSET - 1) / inside


def _laplace_tail(epsilon: float, k: int) -> float:
    """P(|Z| >= k) for k >= 1 under the conditioned noise (its range ends at -512 and 511)."""
    r = math.exp(-epsilon)
    c = (1 - r) / (1 + r) / -math.expm1(-NOISE_OFFSET * epsilon)
    upper = c * (r ** k - r ** NOISE_OFFSET) / (1 - r)  # k .. 511
    lower = c * (r ** k - r ** (NOISE_OFFSET + 1)) / (1 - r)  # -512 .. -k
    return upper + lower


def _laplace_sd(epsilon: float) -> float:
    r = math.exp(-epsilon)
    return math.sqrt(2 * r) / (1 - r)


@dataclass(frozen=True)
class Mechanism:
    name: str
    description: str
    draw_one: Callable[[Fraction], int]  # exact, from the OS
    simulate: Callable[[float, tuple[int, ...], np.random.Generator], np.ndarray]
    delta: Callable[[float], float]
    tail: Callable[[float, int], float]  # P(|Z| >= k) of the conditioned noise
    sd: Callable[[float], float]  # standard deviation of one cell's noise (before conditioning)


MECHANISMS = {m.name: m for m in (
    Mechanism("discrete_laplace",
              "discrete Laplace (two-sided geometric) noise of scale 1/epsilon on each count "
              "cell, P(Z = k) proportional to exp(-epsilon |k|), conditioned on [-512, 511]",
              _discrete_laplace, _laplace_simulated, _laplace_delta, _laplace_tail,
              _laplace_sd),
)}
DEFAULT = "discrete_laplace"


def mechanism(name: str = DEFAULT) -> Mechanism:
    if name not in MECHANISMS:
        raise PrivacyError(f"Unknown noise mechanism {name!r}; this version knows "
                           f"{', '.join(MECHANISMS)}.")
    return MECHANISMS[name]


def check_epsilon(epsilon: Any) -> float:
    """Epsilon as a float within :data:`EPSILON_RANGE`, or one sentence."""
    low, high = EPSILON_RANGE
    try:
        value = float(epsilon)
    except (TypeError, ValueError):
        value = math.nan
    if not low <= value <= high:  # also refuses NaN
        raise PrivacyError(f"Epsilon must be a number from {low} to {high} (got {epsilon!r}): "
                           f"below {low} the noise would outgrow the counter's range, above "
                           f"{high} it would be almost always 0.")
    return value


def draw(epsilon: float, n_cells: int, name: str = DEFAULT) -> list[int]:
    """Centered noise for ``n_cells`` count cells, each in [-NOISE_OFFSET, NOISE_OFFSET - 1],
    drawn exactly from the OS's randomness; the circuit adds ``noise + NOISE_OFFSET``."""
    exact, one = _rational(check_epsilon(epsilon)), mechanism(name).draw_one
    out = []
    for _ in range(n_cells):
        z = one(exact)
        while not -NOISE_OFFSET <= z < NOISE_OFFSET:  # conditioned on the range: redraw
            z = one(exact)
        out.append(z)
    return out


def describe(epsilon: float, name: str = DEFAULT) -> dict[str, Any]:
    """The transcript's ``dp`` entry: mechanism, epsilon, delta, sensitivity and neighbouring
    relation, and the noise's range and standard deviation; never the noise drawn."""
    epsilon, m = check_epsilon(epsilon), mechanism(name)
    return {"mechanism": m.name, "epsilon": epsilon, "delta": m.delta(epsilon),
            "sensitivity": SENSITIVITY, "neighbouring": NEIGHBOURING,
            "noise_range": [-NOISE_OFFSET, NOISE_OFFSET - 1], "noise_sd": m.sd(epsilon),
            "description": m.description}


def chosen_rows(epsilon: float, error: float = 0.05, name: str = DEFAULT) -> dict[str, Any]:
    """What the guarantee does not cover: an auditor that encrypts one input in k rows (rows are
    ciphertexts; nothing can check that they differ, and near-copies predict alike) learns that
    input's prediction at k epsilon. Putting inputs j = 0, 1, ... in ``spacing * 2**j`` rows of
    one cell makes the noisy count spell their predictions in binary above the noise: this is
    how many one cell gives per run, and how often all of them read right (exact, from the
    conditioned noise's distribution), at the smallest spacing wrong at most ``error`` of the
    time. The counter holds at most :data:`MAX_COUNT` rows."""
    epsilon, m = check_epsilon(epsilon), mechanism(name)
    for half in range(1, NOISE_OFFSET):
        wrong = m.tail(epsilon, half)  # P(|Z| >= half): the rounding reads another number
        if wrong <= error:
            break
    spacing = 2 * half
    predictions = (MAX_COUNT // spacing + 1).bit_length() - 1  # largest m: spacing (2^m - 1) fits
    return {"predictions_per_cell_per_run": predictions, "rows_per_step": spacing,
            "all_right": 1 - wrong,
            "what": "an auditor that encrypts one input in many rows (nothing can check that "
                    "rows differ) reads that many predictions per count cell per run despite "
                    "the noise: epsilon bounds what one row reveals, the budget's number of "
                    "runs what a key can extract"}


@lru_cache(maxsize=32)
def simulated_noise(epsilon: float, shape: tuple[int, ...], seed: int,
                    name: str = DEFAULT) -> np.ndarray:
    """Seeded draws of the conditioned noise (read-only, cached): what the widened intervals
    and their coverage checks integrate over."""
    rng, simulate = np.random.default_rng(seed), mechanism(name).simulate
    noise = simulate(epsilon, shape, rng)
    outside = (noise < -NOISE_OFFSET) | (noise >= NOISE_OFFSET)
    while outside.any():
        noise[outside] = simulate(epsilon, (int(outside.sum()),), rng)
        outside = (noise < -NOISE_OFFSET) | (noise >= NOISE_OFFSET)
    noise.setflags(write=False)
    return noise
