"""95% intervals for every reading, and one way to print a reading with its interval.

A metric measured on a handful of samples is a guess; the interval says how much of one.
Proportions (accuracy, precision, recall, per-group rates, flip rates) get Wilson score
intervals, which stay inside [0, 1] and are sensible for 0 or n successes. Functions of
proportions get score intervals built from those of their parts (below: balanced accuracy, F1,
ROC-AUC, differences and ratios between groups), which never collapse to a point. What is not a
function of proportions (importances and their ranks) gets a percentile bootstrap over samples
with a fixed seed and a stated number of resamples, so that the same data always gives the same
interval. ``fhe-audit selfcheck intervals`` measures the coverage of each kind (selfcheck.py).
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


# -- score intervals of functions of proportions (no bootstrap: none collapses to a point) ----
# A percentile bootstrap of a perfect score reads [1.0, 1.0] (every resample is perfect); the
# intervals below are built from score intervals of the proportions a metric is made of, which
# keep a width however extreme the counts.

ALPHA = 0.05


def wilson_at(successes: int, n: int, alpha: float = ALPHA) -> Interval | None:
    """Wilson score interval at level ``1 - alpha`` (statsmodels); None when n is 0."""
    from statsmodels.stats.proportion import proportion_confint

    if n <= 0:
        return None
    low, high = proportion_confint(successes, n, alpha=alpha, method="wilson")
    return (max(0.0, float(low)), min(1.0, float(high)))


def mover_mean(estimates: list[float], intervals: list[Interval]) -> Interval:
    """Interval of the unweighted mean of independent estimates from their own intervals (MOVER,
    Zou & Donner 2008; with Wilson parts it is Newcombe's hybrid score method): e.g. balanced
    accuracy, the mean of the per-class recalls, which rest on disjoint rows."""
    k = len(estimates)
    mean = sum(estimates) / k
    below = math.sqrt(sum((e - lo) ** 2 for e, (lo, _) in zip(estimates, intervals, strict=True)))
    above = math.sqrt(sum((hi - e) ** 2 for e, (_, hi) in zip(estimates, intervals, strict=True)))
    return (max(0.0, mean - below / k), min(1.0, mean + above / k))


def bonferroni_mean(intervals: list[Interval]) -> Interval:
    """Mean of the bounds of ``k`` intervals each built at level ``1 - alpha / k``: holds the
    mean of dependent quantities (macro F1, one-vs-rest ROC-AUC) with 95% confidence at least."""
    k = len(intervals)
    return (sum(lo for lo, _ in intervals) / k, sum(hi for _, hi in intervals) / k)


def f1_interval(tp: int, fp: int, fn: int, alpha: float = ALPHA) -> Interval | None:
    """F1 = 2J / (1 + J), J = tp / (tp + fp + fn) the share of true positives among the rows that
    are, or are predicted as, positive: a binomial proportion of those rows, so a Wilson
    interval of J mapped through this increasing function is an interval of F1."""
    j = wilson_at(tp, tp + fp + fn, alpha)
    if j is None:
        return None
    return (2 * j[0] / (1 + j[0]), 2 * j[1] / (1 + j[1]))


def _hanley_mcneil(theta: float, n_pos: int, n_neg: int) -> float:
    """Variance of a Mann-Whitney ROC-AUC estimate at true AUC ``theta`` (Hanley & McNeil 1982)."""
    q1, q2 = theta / (2 - theta), 2 * theta * theta / (1 + theta)
    return (theta * (1 - theta) + (n_pos - 1) * (q1 - theta * theta)
            + (n_neg - 1) * (q2 - theta * theta)) / (n_pos * n_neg)


def auc_interval(auc: float, n_pos: int, n_neg: int, alpha: float = ALPHA) -> Interval | None:
    """Score-type interval of ROC-AUC (Newcombe 2006, Stat. Med. 25:543-557, method 5): the
    AUCs ``theta`` with ``(auc - theta)^2 <= z^2 V(theta)``, V the Hanley-McNeil variance at
    ``theta`` itself, so that a perfect ranking still gets a lower bound below 1."""
    from scipy.optimize import brentq
    from scipy.stats import norm

    if n_pos <= 0 or n_neg <= 0 or math.isnan(auc):
        return None
    z2 = float(norm.ppf(1 - alpha / 2)) ** 2

    def excess(theta: float) -> float:
        return (auc - theta) ** 2 - z2 * _hanley_mcneil(theta, n_pos, n_neg)

    edge = 1e-12  # V vanishes at 0 and 1: step inside, where excess is negative
    low = 0.0 if auc <= edge else brentq(excess, 0.0, min(auc, 1 - edge))
    high = 1.0 if auc >= 1 - edge else brentq(excess, max(auc, edge), 1.0)
    return (float(low), float(high))


def difference_interval(count: int, n: int, count_ref: int, n_ref: int,
                        alpha: float = ALPHA) -> Interval | None:
    """Newcombe's hybrid score interval (1998, method 10) of ``count/n - count_ref/n_ref``
    (statsmodels); None when a group has no row to take the rate over."""
    from statsmodels.stats.proportion import confint_proportions_2indep

    if n <= 0 or n_ref <= 0:
        return None
    low, high = confint_proportions_2indep(count, n, count_ref, n_ref, method="newcomb",
                                           alpha=alpha)
    return (max(-1.0, float(low)), min(1.0, float(high)))


def ratio_interval(count: int, n: int, count_ref: int, n_ref: int,
                   alpha: float = ALPHA) -> Interval | None:
    """Log-adjusted interval (statsmodels; 0.5 added to empty counts) of the ratio of two rates
    ``(count/n) / (count_ref/n_ref)``; None when a group has no row. An empty ``count`` puts
    the lower end at 0, where the ratio's point is (the 0.5 would lift it above)."""
    from statsmodels.stats.proportion import confint_proportions_2indep

    if n <= 0 or n_ref <= 0:
        return None
    low, high = confint_proportions_2indep(count, n, count_ref, n_ref, compare="ratio",
                                           method="log-adjusted", alpha=alpha)
    return (0.0 if count == 0 else float(low), float(high))


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
