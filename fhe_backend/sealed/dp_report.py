"""A sealed report's intervals when the server added noise to the counts (``run --dp-epsilon``).

The decrypted positives are noisy: a cell may read below 0 or above its total. The point values
are computed from each cell clipped to [0, total] (the clipped cells are listed in the report's
``dp.clipped``), through the same functions as a noise-free report. Every interval is then
widened for the noise: for the statistic it bounds (a metric, a group's rate, a difference or
ratio between groups, a fairness gap), the mechanism's own noise is drawn :data:`DRAWS` times
with a fixed seed and added to the clipped counts, the statistic's value on each draw is kept
within its range, and the spread of those values (their 2.5% and 97.5% quantiles about the point
value) is combined in quadrature with each side of the noise-free interval: for two independent
errors, sampling and noise, whose 95% half-widths are a and b, the sum's is about
sqrt(a^2 + b^2). The result is never narrower than the noise-free interval and stays in the
statistic's range. The quantiles (not the standard deviation) carry the discrete Laplace's
heavier tails. The noisy draws are not clipped to [0, total] themselves: a count clipped to 0
would hide half the noise's spread (measured: 0.92 coverage instead of 0.99 at 30 rows,
accuracy 0.99, epsilon 0.2). ``tests/test_sealed_dp.py`` and ``selfcheck intervals`` measure the
coverage this gives.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ..audits.uncertainty import ALPHA
from . import dp

DRAWS = 4000
SEED = 0
WIDENING = (f"each side of the noise-free 95% interval combined in quadrature with the 2.5% "
            f"and 97.5% quantiles of the same statistic over {DRAWS:,} seeded draws of the "
            "mechanism's noise added to the clipped counts; never narrower than the noise-free "
            "interval, within the statistic's range")
UNIT, SIGNED, POSITIVE = (0.0, 1.0), (-1.0, 1.0), (0.0, np.inf)

# A statistic of the counts: positives (..., groups, 2) and totals (groups, 2) -> (...,).
Statistic = Callable[[np.ndarray, np.ndarray], np.ndarray]


def clip_counts(positives: np.ndarray, totals: np.ndarray, groups: list[str],
                ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Each noisy cell clipped to [0, total], and the cells that were, for the report."""
    positives, totals = np.asarray(positives, dtype=np.int64), np.asarray(totals, dtype=np.int64)
    clipped = np.clip(positives, 0, totals)
    changed = [{"group": groups[g], "true_label": int(label),
                "decrypted": int(positives[g, label]), "used": int(clipped[g, label])}
               for g, label in zip(*np.nonzero(clipped != positives), strict=True)]
    return clipped, changed


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _rates(pos: np.ndarray, tot: np.ndarray) -> dict[str, np.ndarray]:
    """The binary metrics of :data:`~fhe_backend.audits.metrics.RATES`, as scikit-learn defines
    them, of counts summed over the groups (cell [.., 0]: false positives, [.., 1]: true)."""
    fp, tp = pos[..., 0].sum(-1), pos[..., 1].sum(-1)
    negatives, positives = tot[:, 0].sum(), tot[:, 1].sum()
    recall = _ratio(tp, np.asarray(positives))
    specificity = _ratio(negatives - fp, np.asarray(negatives))
    with np.errstate(invalid="ignore"):
        balanced = np.nanmean(np.stack([specificity, recall]), axis=0) if (
            negatives or positives) else np.full(fp.shape, np.nan)
    return {"accuracy": _ratio(negatives - fp + tp, np.asarray(negatives + positives)),
            "balanced_accuracy": balanced, "precision": _ratio(tp, fp + tp),
            "recall": recall, "f1": _ratio(2 * tp, fp + tp + positives)}


def _group_rates(pos: np.ndarray, tot: np.ndarray, g: int) -> dict[str, np.ndarray]:
    p0, p1, t0, t1 = pos[..., g, 0], pos[..., g, 1], tot[g, 0], tot[g, 1]
    return {"selection_rate": _ratio(p0 + p1, np.asarray(t0 + t1)),
            "tpr": _ratio(p1, np.asarray(t1)), "fpr": _ratio(p0, np.asarray(t0)),
            "accuracy": _ratio(t0 - p0 + p1, np.asarray(t0 + t1))}


def _spread(values: np.ndarray) -> np.ndarray:
    """max - min over the groups (last axis) where defined, as fairlearn's gaps."""
    with warnings.catch_warnings():  # a draw where no group defines the rate: NaN, expected
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmax(values, axis=-1) - np.nanmin(values, axis=-1)


def _gaps(pos: np.ndarray, tot: np.ndarray) -> dict[str, np.ndarray]:
    rates = [_group_rates(pos, tot, g) for g in range(len(tot))]
    stack = {r: np.stack([rate[r] for rate in rates], axis=-1) for r in ("selection_rate",
                                                                          "tpr", "fpr")}
    selection = stack["selection_rate"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ratio = _ratio(np.nanmin(selection, axis=-1), np.nanmax(selection, axis=-1))
    tpr_gap, fpr_gap = _spread(stack["tpr"]), _spread(stack["fpr"])
    return {"demographic_parity_difference": _spread(selection),
            "demographic_parity_ratio": ratio,
            "equal_opportunity_difference": tpr_gap,
            "equalized_odds_difference": np.fmax(tpr_gap, fpr_gap)}


class NoiseWidener:
    """The noise's spread of any statistic of the counts, and intervals widened by it."""

    def __init__(self, positives: np.ndarray, totals: np.ndarray, epsilon: float,
                 mechanism: str = dp.DEFAULT, draws: int = DRAWS, seed: int = SEED):
        self.totals = np.asarray(totals, dtype=np.int64)
        self.base = np.asarray(positives, dtype=np.int64)
        noise = dp.simulated_noise(float(epsilon), (draws, *self.base.shape), seed, mechanism)
        self.noisy = self.base + noise

    def widen(self, interval: list[float] | tuple[float, float] | None, statistic: Statistic,
              bounds: tuple[float, float] = UNIT, alpha: float = ALPHA,
              ) -> list[float] | None:
        """``interval`` (95%, or ``1 - alpha``) of ``statistic`` widened for the noise."""
        if interval is None:
            return None
        point = float(statistic(self.base, self.totals))
        values = statistic(self.noisy, self.totals)
        values = np.clip(values[~np.isnan(values)], *bounds)
        if np.isnan(point) or not len(values):
            return [float(interval[0]), float(interval[1])]
        low_q, high_q = np.quantile(values, [alpha / 2, 1 - alpha / 2])
        below, above = max(point - low_q, 0.0), max(high_q - point, 0.0)
        low = point - np.hypot(max(point - interval[0], 0.0), below)
        high = point + np.hypot(max(interval[1] - point, 0.0), above)
        return [float(max(bounds[0], min(low, interval[0]))),
                float(min(bounds[1], max(high, interval[1])))]

    def rates(self, intervals: dict[str, Any]) -> dict[str, Any]:
        """The report's ``intervals`` (accuracy ... F1; ROC-AUC stays None) widened."""
        out = dict(intervals)
        for name in ("accuracy", "balanced_accuracy", "precision", "recall", "f1"):
            if name in out:
                out[name] = self.widen(out[name], lambda p, t, n=name: _rates(p, t)[n])
        return out

    def fairness(self, result: dict[str, Any], groups: list[str]) -> dict[str, Any]:
        """A sealed fairness result (``sealed_fairness``) with every interval widened: per group
        and rate, each pairwise difference and ratio, and the four gaps (at the Bonferroni
        level their simultaneous intervals are built at)."""
        index = {name: g for g, name in enumerate(groups)}
        result = {**result, "intervals": dict(result["intervals"])}
        intervals = result["intervals"]
        intervals["groups"] = {
            name: {rate: self.widen(interval, lambda p, t, g=index[name], r=rate:
                                    _group_rates(p, t, g)[r])
                   for rate, interval in per_rate.items()}
            for name, per_rate in intervals["groups"].items()}
        ref = index[result["reference_group"]]
        pairwise: dict[str, dict[str, Any]] = {}
        for rate, entries in result["pairwise"].items():
            pairwise[rate] = {}
            for name, entry in entries.items():
                g, entry = index[name], dict(entry)

                def difference(p: np.ndarray, t: np.ndarray, g: int = g, r: str = rate,
                               ) -> np.ndarray:
                    return _group_rates(p, t, g)[r] - _group_rates(p, t, ref)[r]

                entry["interval"] = self.widen(entry["interval"], difference, SIGNED)
                if "ratio_interval" in entry:
                    entry["ratio_interval"] = self.widen(
                        entry["ratio_interval"], lambda p, t, g=g: _ratio(
                            _group_rates(p, t, g)["selection_rate"],
                            _group_rates(p, t, ref)["selection_rate"]), POSITIVE)
                pairwise[rate][name] = entry
        result["pairwise"] = pairwise
        pairs = max(len(groups) * (len(groups) - 1) // 2, 1)
        for gap in ("demographic_parity_difference", "demographic_parity_ratio",
                    "equal_opportunity_difference", "equalized_odds_difference"):
            intervals[gap] = self.widen(intervals[gap], lambda p, t, k=gap: _gaps(p, t)[k],
                                        UNIT, ALPHA / pairs)
        return result


def dp_entry(transcript_dp: dict[str, Any], clipped: list[dict[str, Any]]) -> dict[str, Any]:
    """The report's ``dp``: the mechanism the transcript names, its delta and sensitivity as this
    tool computes them (not as the transcript says), how the intervals were widened, and the
    cells clipped."""
    described = dp.describe(transcript_dp.get("epsilon"),
                            str(transcript_dp.get("mechanism", dp.DEFAULT)))
    return {key: described[key] for key in ("epsilon", "mechanism", "delta", "sensitivity",
                                             "neighbouring", "noise_sd")} | {
        "widening": WIDENING, "clipped": clipped,
        "point_values": "from the decrypted noisy counts, each clipped to [0, its total]",
        "chosen_rows": dp.chosen_rows(described["epsilon"], name=described["mechanism"]),
        "trust": "the noise is the server's: these intervals hold if it added the mechanism "
                 "its transcript names, which nothing here can check"}
