"""95% intervals for every reading, and one way to print a reading with its interval.

A metric measured on a handful of samples is a guess; the interval says how much of one.
Proportions (accuracy, precision, recall, per-group rates, flip rates) get Wilson score
intervals, which stay inside [0, 1] and are sensible for 0 or n successes. Anything else
(differences between groups, F1, ROC-AUC, importances and their ranks) gets a percentile
bootstrap over samples with a fixed seed and a stated number of resamples, so that the same
data always gives the same interval.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np

Z95 = 1.959963984540054  # the 97.5th percentile of the standard normal
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
# A bootstrap interval needs most resamples to define the statistic (e.g. both groups present).
MIN_DEFINED_SHARE = 0.5
# Below this many samples a percentile bootstrap claims a certainty it does not have (5 samples
# ranked perfectly give ROC-AUC [1.0, 1.0]): no interval rather than a false one.
MIN_BOOTSTRAP_SAMPLES = 20

Interval = tuple[float, float]


def wilson(successes: int, n: int) -> Interval | None:
    """Wilson score interval of a proportion ``successes / n``; None when n is 0."""
    if n <= 0:
        return None
    p = successes / n
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return (max(0.0, float(centre - half)), min(1.0, float(centre + half)))


def none_observed_upper(n: int) -> float:
    """Exact one-sided 95% upper bound on a proportion of which none of ``n`` was observed:
    1 - 0.05^(1/n) (Clopper-Pearson; about 3/n, the rule of three)."""
    return float(1 - 0.05 ** (1 / n))


def bootstrap(statistic: Callable[[np.ndarray], float | np.ndarray | None], n: int, *,
              resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
              ) -> np.ndarray | None:
    """Percentile bootstrap over ``n`` samples: ``statistic`` gets an index array (a resample
    with replacement) and returns a number or a vector of numbers (NaN or None: undefined on
    that resample). Returns the 2.5th and 97.5th percentiles (shape (2,) or (2, k)); a
    statistic that fewer than half of the resamples define gets NaN bounds (no interval), and
    fewer than :data:`MIN_BOOTSTRAP_SAMPLES` samples give None."""
    if n < MIN_BOOTSTRAP_SAMPLES:
        return None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        value = statistic(rng.integers(0, n, n))
        values.append(np.nan if value is None else value)
    stack = np.asarray(values, dtype=float)
    rare = (~np.isnan(stack)).mean(axis=0) < MIN_DEFINED_SHARE
    with warnings.catch_warnings():  # an all-NaN column is expected and masked below
        warnings.simplefilter("ignore", RuntimeWarning)
        bounds = np.nanpercentile(stack, [2.5, 97.5], axis=0)
    return np.where(rare, np.nan, bounds)


def half_width(values: list[float] | np.ndarray) -> float:
    """95% half-width of the mean of ``values``, by the normal approximation (infinite below two
    values): what sizes a subsample before its bootstrap intervals are computed."""
    if len(values) < 2:
        return math.inf
    return float(Z95 * np.std(values, ddof=1) / math.sqrt(len(values)))


def as_interval(bounds: np.ndarray | tuple[float, float] | None,
                column: int | None = None) -> list[float] | None:
    """A JSON-ready ``[low, high]`` (of one ``column`` of a vector bootstrap), or None."""
    if bounds is None:
        return None
    low, high = (bounds[0], bounds[1]) if column is None else (bounds[0][column],
                                                                bounds[1][column])
    if np.isnan(low) or np.isnan(high):
        return None
    return [float(low), float(high)]


def format_metric(value: float | None, interval: Interval | list[float] | None = None, *,
                  digits: int = 3, reason: str | None = None) -> str:
    """One reading for text: ``0.912 (95% CI 0.870 to 0.941)``, or ``n/a (reason)`` when the
    metric is undefined. Used by the Markdown report, the CLI and the Space."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return f"n/a ({reason})" if reason else "n/a"
    text = f"{value:.{digits}f}"
    if interval is not None:
        low, high = interval
        text += f" (95% CI {low:.{digits}f} to {high:.{digits}f})"
    return text


def clustered_proportion(successes: np.ndarray, sizes: np.ndarray) -> Interval | None:
    """95% interval of a proportion pooled over clusters whose members move together (several
    counterfactual probes of one sample): Korn & Graubard's (1998) Clopper-Pearson interval at
    the effective sample size, the probes divided by the design effect (the cluster-robust
    variance over the binomial one; between 1 and the size-weighted mean cluster size, which it
    is when nothing or everything succeeded) and shrunk by (z / t with clusters - 1 degrees of
    freedom)^2. Treating 4 correlated probes per sample as independent covered 0.70 of the
    time; this covers at least 0.94 in ``tests/test_intervals_clustered.py``."""
    from scipy import stats

    successes, sizes = np.asarray(successes, dtype=float), np.asarray(sizes, dtype=float)
    total, clusters = float(sizes.sum()), len(sizes)
    if total <= 0:
        return None
    p = float(successes.sum()) / total
    most = float((sizes ** 2).sum()) / total
    deff = most
    if 0 < p < 1 and clusters > 1:
        robust = clusters / (clusters - 1) * float(((successes - p * sizes) ** 2).sum()) / total**2
        deff = min(max(robust / (p * (1 - p) / total), 1.0), most)
    n = total / deff
    if clusters > 1:
        n *= (Z95 / float(stats.t.ppf(0.975, clusters - 1))) ** 2
    x = p * n
    low = 0.0 if x <= 0 else float(stats.beta.ppf(0.025, x, n - x + 1))
    high = 1.0 if x >= n else float(stats.beta.ppf(0.975, x + 1, n - x))
    return (low, high)


def clustered_mean(values: np.ndarray, clusters: np.ndarray) -> Interval | None:
    """95% interval of the mean of ``values`` whose members of one cluster move together: the
    cluster-robust standard error with Student's t (clusters - 1 degrees of freedom). None
    below two clusters, or when every value is the same (no spread to measure)."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    keys, index = np.unique(np.asarray(clusters), return_inverse=True)
    if len(keys) < 2 or np.ptp(values) == 0:
        return None
    mean = float(values.mean())
    residuals = np.bincount(index, weights=values - mean)
    se = float(np.sqrt(len(keys) / (len(keys) - 1) * (residuals ** 2).sum())) / len(values)
    half = float(stats.t.ppf(0.975, len(keys) - 1)) * se
    return (mean - half, mean + half)
