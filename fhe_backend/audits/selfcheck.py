"""``selfcheck intervals``: the empirical coverage of the tool's own 95% intervals.

Synthetic test sets with known truth (several sizes, base rates, group shares, zero and
non-zero gaps, perfect and near-perfect scores) go through the very functions that build the
published intervals (:func:`~.metrics.rate_intervals`, :func:`~.metrics.roc_auc_interval`,
:func:`~.fairness.compare_groups`, and for a sealed run's noisy counts
:class:`~fhe_backend.sealed.dp_report.NoiseWidener`); each interval kind reports how often it
held the truth.
A kind well below 0.95 would publish intervals that claim more than they know; one above 0.99
is conservative (wider than it needs to be), which the table says.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .fairness import COMPARED, compare_groups
from .metrics import RATES, rate_intervals, roc_auc_interval
from .uncertainty import wilson

NOMINAL = 0.95
CONSERVATIVE = 0.99
# A kind is flagged LOW when its coverage's 95% Wilson interval lies below this.
LOW = 0.93
SIZES = (30, 171, 1000)
# The verdict when the coverage's 95% interval is wider than the band from LOW to CONSERVATIVE:
# too few replicates to say ok, conservative or low.
TOO_FEW = "too few sets"
TOLERANCE = 1e-9  # a bound computed as 0.9999999999999999 still holds a truth of 1


@dataclass
class Tally:
    """Held / defined / drawn counts of one interval kind, and its worst setting."""
    held: int = 0
    defined: int = 0
    drawn: int = 0
    settings: dict[str, list[int]] = field(default_factory=dict)

    def add(self, setting: str, interval: list[float] | tuple[float, float] | None,
            truth: float) -> None:
        self.drawn += 1
        cell = self.settings.setdefault(setting, [0, 0])
        if interval is None:
            return
        held = interval[0] - TOLERANCE <= truth <= interval[1] + TOLERANCE
        self.defined += 1
        self.held += held
        cell[0] += held
        cell[1] += 1

    def row(self, kind: str) -> dict[str, Any]:
        coverage = self.held / self.defined if self.defined else math.nan
        se = math.sqrt(coverage * (1 - coverage) / self.defined) if self.defined else math.nan
        worst = min(((held / n, name) for name, (held, n) in self.settings.items() if n),
                    default=(math.nan, ""))
        low, high = wilson(self.held, self.defined) or (math.nan, math.nan)
        # From the Wilson interval of the coverage, not from the point: 18 of 18 intervals
        # holding (1.000, s.e. 0.000) read "conservative" though 95% coverage gives that 40%
        # of the time.
        verdict = ("conservative" if low > CONSERVATIVE else "LOW" if high < LOW
                   else "ok" if high - low <= CONSERVATIVE - LOW else TOO_FEW)
        return {"kind": kind, "coverage": coverage, "standard_error": se,
                "coverage_interval": [low, high],
                "intervals": self.defined, "undefined": self.drawn - self.defined,
                "worst_setting": worst[1], "worst_coverage": worst[0], "verdict": verdict}


def _confusions() -> Iterator[tuple[str, np.ndarray]]:
    """Cell probabilities (rows: true class) of the metric settings: binary with base rates
    0.5, 0.3 and 0.1 from perfect to weak, and one three-class model."""
    for base, tnr, tpr in ((0.5, 1.0, 1.0), (0.5, 0.99, 0.99), (0.3, 0.9, 0.8),
                           (0.1, 0.95, 0.7), (0.5, 0.6, 0.5)):
        yield (f"base {base}, TNR {tnr}, TPR {tpr}",
               np.array([[(1 - base) * tnr, (1 - base) * (1 - tnr)],
                         [base * (1 - tpr), base * tpr]]))
    recall = np.array([0.8, 0.9, 0.97])
    off = (1 - recall) / 2
    yield ("3 classes, recalls 0.8/0.9/0.97",
           (np.diag(recall) + (1 - np.eye(3)) * off[:, None]) / 3)


def _truths(p: np.ndarray) -> dict[str, float]:
    """The population values of :data:`~.metrics.RATES` under cell probabilities ``p``."""
    k = len(p)
    tp, predicted, actual = np.diag(p), p.sum(axis=0), p.sum(axis=1)
    precision, recall, f1 = tp / predicted, tp / actual, 2 * tp / (predicted + actual)
    pick = (lambda x: float(x[1])) if k == 2 else (lambda x: float(x.mean()))
    return {"accuracy": float(tp.sum()), "balanced_accuracy": float(recall.mean()),
            "precision": pick(precision), "recall": pick(recall), "f1": pick(f1)}


def _metrics(rng: np.random.Generator, replicates: int, tallies: dict[str, Tally]) -> None:
    for label, p in _confusions():
        truth = _truths(p)
        for n in SIZES:
            setting = f"n {n}, {label}"
            for _ in range(replicates):
                cells = rng.multinomial(n, p.reshape(-1)).reshape(p.shape)
                intervals = rate_intervals(cells)
                for name in RATES:
                    tallies[name].add(setting, intervals[name], truth[name])


# The sealed audit's noisy counts (``run --dp-epsilon``): the accuracy interval widened for the
# noise, at this epsilon, over the binary metric settings.
DP_EPSILON = 1.0
DP_KIND = f"accuracy, sealed with DP noise (epsilon {DP_EPSILON:g})"


def _dp_accuracy(rng: np.random.Generator, replicates: int, tallies: dict[str, Tally]) -> None:
    """Noisy positives per true label (the mechanism's own noise), clipped, then the same
    functions as a sealed report: Wilson on the clipped counts, widened for the noise."""
    from ..sealed.dp import simulated_noise
    from ..sealed.dp_report import NoiseWidener, clip_counts

    for label, p in _confusions():
        if len(p) != 2:
            continue
        for n in SIZES:
            setting = f"n {n}, {label}"
            noise = simulated_noise(DP_EPSILON, (replicates, 1, 2), int(rng.integers(2**31)))
            for r in range(replicates):
                cells = rng.multinomial(n, p.reshape(-1)).reshape(2, 2)
                totals = cells.sum(axis=1)[None]
                clipped, _ = clip_counts(cells[:, 1][None] + noise[r], totals, ["all"])
                plain = wilson(int(totals[0, 0] - clipped[0, 0] + clipped[0, 1]), n)
                widened = NoiseWidener(clipped, totals, DP_EPSILON).rates({"accuracy": plain})
                tallies[DP_KIND].add(setting, widened["accuracy"], float(np.trace(p)))


def _roc_auc(rng: np.random.Generator, replicates: int, tallies: dict[str, Tally]) -> None:
    """Binormal scores (negatives N(0, 1), positives N(d, 1): AUC = Phi(d / sqrt 2)), and
    perfectly separated ones."""
    from scipy.stats import norm

    for auc in (0.7, 0.9, 0.99, 1.0):
        shift = 10.0 if auc == 1.0 else math.sqrt(2) * float(norm.ppf(auc))
        for base in (0.5, 0.2):
            for n in SIZES:
                setting = f"n {n}, base {base}, AUC {auc}"
                for _ in range(replicates):
                    y = (rng.random(n) < base).astype(np.int64)
                    score = rng.normal(size=n) + shift * y
                    if auc == 1.0:
                        score = np.where(y == 1, 1 + rng.random(n), rng.random(n))
                    probability = 1 / (1 + np.exp(-score))
                    scores = np.stack([1 - probability, probability], axis=1)
                    tallies["roc_auc"].add(setting, roc_auc_interval(y, scores, 2), auc)


# Group settings: shares of the groups, and per group (TPR, FPR); the base rate is 0.3.
GROUP_BASE = 0.3
GROUP_SETTINGS = {
    "2 groups 50/50, no gap": ((0.5, 0.5), ((0.7, 0.1), (0.7, 0.1))),
    "2 groups 80/20, no gap": ((0.8, 0.2), ((0.7, 0.1), (0.7, 0.1))),
    "3 groups 60/30/10, no gap": ((0.6, 0.3, 0.1), ((0.7, 0.1),) * 3),
    "2 groups 50/50, gap": ((0.5, 0.5), ((0.8, 0.15), (0.6, 0.05))),
    "2 groups 80/20, gap": ((0.8, 0.2), ((0.8, 0.15), (0.6, 0.05))),
    "3 groups 60/30/10, gap": ((0.6, 0.3, 0.1), ((0.8, 0.15), (0.7, 0.1), (0.5, 0.05))),
}
GROUP_SIZES = (100, 300, 1000)
FAIRNESS_KINDS = ("group difference", "group ratio", "demographic_parity_difference",
                  "demographic_parity_ratio", "equal_opportunity_difference",
                  "equalized_odds_difference")


def _fairness(rng: np.random.Generator, replicates: int, tallies: dict[str, Tally]) -> None:
    for label, (shares, rates) in GROUP_SETTINGS.items():
        tpr, fpr = np.array(rates).T
        true = {"tpr": tpr, "fpr": fpr,
                "selection_rate": GROUP_BASE * tpr + (1 - GROUP_BASE) * fpr}
        for n in GROUP_SIZES:
            setting = f"n {n}, {label}"
            for _ in range(replicates):
                sizes = rng.multinomial(n, shares)
                positives = rng.binomial(sizes, GROUP_BASE)
                tp = rng.binomial(positives, tpr)
                fp = rng.binomial(sizes - positives, fpr)
                names = [f"g{i}" for i in range(len(shares))]
                counts = {name: {"n": int(sizes[i]), "selected": int(tp[i] + fp[i]),
                                 "positives": int(positives[i]),
                                 "negatives": int(sizes[i] - positives[i]),
                                 "tp": int(tp[i]), "fp": int(fp[i])}
                          for i, name in enumerate(names) if sizes[i]}
                if len(counts) < 2:
                    continue
                _tally_groups(compare_groups(counts), true, names, setting, tallies)


def _tally_groups(result: dict[str, Any], true: dict[str, np.ndarray], names: list[str],
                  setting: str, tallies: dict[str, Tally]) -> None:
    index = {name: i for i, name in enumerate(names)}
    ref = index[result["reference_group"]]
    for rate in COMPARED:
        for entry in result["pairwise"][rate].values():
            g = index[entry["group"]]
            tallies["group difference"].add(setting, entry["interval"],
                                            float(true[rate][g] - true[rate][ref]))
            if rate == "selection_rate":
                tallies["group ratio"].add(setting, entry["ratio_interval"],
                                           float(true[rate][g] / true[rate][ref]))
    present = [index[name] for name in names if name in _present(result)]
    sel, tpr, fpr = (true[r][present] for r in ("selection_rate", "tpr", "fpr"))
    truths = {"demographic_parity_difference": sel.max() - sel.min(),
              "demographic_parity_ratio": sel.min() / sel.max(),
              "equal_opportunity_difference": tpr.max() - tpr.min(),
              "equalized_odds_difference": max(tpr.max() - tpr.min(), fpr.max() - fpr.min())}
    for gap, truth in truths.items():
        tallies[gap].add(setting, result["intervals"][gap], float(truth))


def _present(result: dict[str, Any]) -> set[str]:
    return {result["reference_group"], *result["pairwise"]["selection_rate"]}


def coverage(replicates: int, seed: int = 0) -> dict[str, Any]:
    """Every interval kind's coverage over ``replicates`` synthetic sets per setting, and the
    time the fairness and metric intervals take at 1,000 rows."""
    rng = np.random.default_rng(seed)
    tallies = {kind: Tally() for kind in (*RATES, "roc_auc", *FAIRNESS_KINDS, DP_KIND)}
    started = time.perf_counter()
    _metrics(rng, replicates, tallies)
    _roc_auc(rng, replicates, tallies)
    _fairness(rng, replicates, tallies)
    _dp_accuracy(rng, replicates, tallies)
    return {"nominal": NOMINAL, "replicates": replicates, "seed": seed,
            "kinds": [tally.row(kind) for kind, tally in tallies.items()],
            "seconds": time.perf_counter() - started, "cost": cost(seed)}


def cost(seed: int = 0, rows: int = 1000) -> dict[str, Any]:
    """Milliseconds the published intervals add to an audit of ``rows`` rows: a fairness
    attribute with three groups (pairwise and summary intervals), and the accuracy metrics."""
    from .fairness import group_counts

    rng = np.random.default_rng(seed)
    t = rng.integers(0, 2, rows)
    p = np.where(rng.random(rows) < 0.8, t, 1 - t)
    groups = rng.choice(np.array(["a", "b", "c"]), rows, p=[0.6, 0.3, 0.1])
    scores = np.stack([1 - p * 0.8, 0.2 + p * 0.8], axis=1)
    started = time.perf_counter()
    compare_groups(group_counts(t, p, groups))
    fairness_ms = 1000 * (time.perf_counter() - started)
    started = time.perf_counter()
    rate_intervals(np.bincount(t * 2 + p, minlength=4).reshape(2, 2))
    roc_auc_interval(t, scores, 2)
    metrics_ms = 1000 * (time.perf_counter() - started)
    return {"rows": rows, "fairness_ms": fairness_ms, "metrics_ms": metrics_ms}


def table(result: dict[str, Any]) -> str:
    """The coverage table for people."""
    lines = [f"Coverage of the published 95% intervals: {result['replicates']} synthetic test "
             f"sets per setting, seed {result['seed']}",
             "",
             "| interval kind | coverage | ± s.e. | intervals | undefined | worst setting | "
             "verdict |",
             "|---|---|---|---|---|---|---|"]
    for row in result["kinds"]:
        lines.append(f"| {row['kind']} | {row['coverage']:.3f} | {row['standard_error']:.3f} | "
                     f"{row['intervals']} | {row['undefined']} | {row['worst_coverage']:.3f} "
                     f"({row['worst_setting']}) | {row['verdict']} |")
    c = result["cost"]
    lines += ["", f"cost at {c['rows']:,} rows: fairness intervals of one attribute with 3 "
                  f"groups {c['fairness_ms']:.1f} ms, metric intervals {c['metrics_ms']:.1f} ms;"
                  f" this check {result['seconds']:.1f} s"]
    return "\n".join(lines)
