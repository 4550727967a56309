"""Group fairness from decrypted predictions, with fairlearn's metric definitions, and
intervals that can say "no gap".

Each group's selection rate, TPR and FPR is compared with a reference group's (the largest,
named in the JSON) by a Newcombe hybrid-score interval of the signed difference (the selection
rate also by a log-adjusted interval of the ratio). fairlearn's max - min (and min / max)
summaries get a simultaneous interval from every pair of groups at a Bonferroni-adjusted level,
so its lower end is 0 (its ratio's upper end 1) when every pair is compatible with no gap.
A group, or a rate's denominator, under :data:`MIN_CONCLUSIVE` rows makes the attribute
inconclusive, with the reason beside it.

The sensitive attributes are the auditor's plaintext: they are joined to the decrypted
predictions on the auditor's machine and never encrypted or sent anywhere (unless the model
itself takes them as an input, in which case they are inside the ciphertexts like any feature).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from fairlearn import metrics as fm
from sklearn.metrics import accuracy_score

from ..errors import AuditError
from .uncertainty import (
    ALPHA,
    Interval,
    as_interval,
    difference_interval,
    ratio_interval,
    wilson,
)

GAPS = ("demographic_parity_difference", "demographic_parity_ratio",
        "equalized_odds_difference", "equal_opportunity_difference")
# Fewer rows than this in a group, or under a rate's denominator (a group's positives for its
# TPR, negatives for its FPR), and a reading about that group is inconclusive.
MIN_CONCLUSIVE = 30
# Each compared rate: its numerator and denominator among a group's counts (see group_counts).
COMPARED = {"selection_rate": ("selected", "n"), "tpr": ("tp", "positives"),
            "fpr": ("fp", "negatives")}
DENOMINATORS = {"positives": "positive-class samples (TPR)",
                "negatives": "samples outside the positive class (FPR)"}
INTERVAL_METHODS = {
    "groups": "Wilson score interval per group and rate",
    "pairwise": "Newcombe hybrid score interval of each group's rate minus the reference "
                "group's; log-adjusted interval of the selection-rate ratio (statsmodels)",
    "summaries": "simultaneous: Newcombe intervals of every pair of groups at a "
                 "Bonferroni-adjusted level (0.05 over the number of pairs); the max - min "
                 "gap lies between the largest distance from 0 and the largest absolute bound "
                 "of those intervals (0 when every pair holds 0), the min / max ratio likewise "
                 "(1 when every pair holds 1)",
}


def _binary(y_true: np.ndarray, y_pred: np.ndarray, positive: int) -> tuple[np.ndarray, ...]:
    return (y_true == positive).astype(int), (y_pred == positive).astype(int)


def group_fairness(
    y_true: np.ndarray, y_pred: np.ndarray, groups: pd.Series, positive: int
) -> dict[str, Any]:
    """Per-group count, selection rate, TPR, FPR, accuracy, and the four gap measures.

    "Selection" means predicting ``positive`` (e.g. income >50K, credit "good"); for a
    multi-class model it is one class against the rest.
    """
    if len(y_true) != len(groups):
        raise AuditError("Sensitive attribute and predictions differ in length.")
    t, p = _binary(np.asarray(y_true), np.asarray(y_pred), positive)
    groups = groups.astype(str).reset_index(drop=True)
    frame = fm.MetricFrame(
        metrics={
            "n": fm.count,
            "selection_rate": fm.selection_rate,
            "tpr": fm.true_positive_rate,
            "fpr": fm.false_positive_rate,
            "accuracy": accuracy_score,
        },
        y_true=t, y_pred=p, sensitive_features=groups,
    )
    by_group = frame.by_group
    names = groups.to_numpy()
    codes = np.unique(names, return_inverse=True)[1]
    # fairlearn reads a TPR of 0 for a group without positives (and an FPR of 0 for one
    # without negatives), which would invent a gap: those rates are undefined (None) here,
    # and the equalized odds and equal opportunity gaps leave them out.
    undefined: dict[str, str] = {}
    out_groups: dict[str, dict[str, Any]] = {}
    for group, row in by_group.iterrows():
        m = names == group
        has_pos, has_neg = bool(t[m].any()), bool((1 - t[m]).any())
        if not has_pos:
            undefined[f"{group}.tpr"] = "the group has no sample of the positive class"
        if not has_neg:
            undefined[f"{group}.fpr"] = "the group has no sample outside the positive class"
        out_groups[str(group)] = {
            "n": int(row["n"]),
            "selection_rate": _num(row["selection_rate"]),
            "tpr": _num(row["tpr"]) if has_pos else None,
            "fpr": _num(row["fpr"]) if has_neg else None,
            "accuracy": _num(row["accuracy"]),
        }
    point = gaps(t, p, codes)
    counts = group_counts(t, p, names)
    comparison = compare_groups(counts)
    flags = conclusiveness(counts)
    for group, entry in out_groups.items():
        entry.update(flags["groups"][group])
    return {
        "positive_label_index": positive,
        "groups": out_groups,
        "demographic_parity_difference": _num(
            fm.demographic_parity_difference(t, p, sensitive_features=groups)),
        "demographic_parity_ratio": _num(
            fm.demographic_parity_ratio(t, p, sensitive_features=groups)),
        "equalized_odds_difference": _num(point[2]),
        "equal_opportunity_difference": _num(point[3]),
        "intervals": {**comparison["intervals"], "groups": _group_intervals(t, p, names)},
        "reference_group": comparison["reference_group"],
        "pairwise": comparison["pairwise"],
        "conclusive": flags["conclusive"],
        "reason": flags["reason"],
        "undefined": {**undefined, **comparison["undefined"]},
        "interval_methods": INTERVAL_METHODS,
    }


def _group_intervals(t: np.ndarray, p: np.ndarray, groups: np.ndarray) -> dict[str, Any]:
    """95% Wilson intervals per group and rate."""
    per_group: dict[str, dict[str, list[float] | None]] = {}
    for group in sorted(set(groups)):
        m = groups == group
        tg, pg = t[m], p[m]
        per_group[str(group)] = {
            "selection_rate": as_interval(wilson(int(pg.sum()), len(pg))),
            "tpr": as_interval(wilson(int((pg & tg).sum()), int(tg.sum()))),
            "fpr": as_interval(wilson(int((pg & (1 - tg)).sum()), int((1 - tg).sum()))),
            "accuracy": as_interval(wilson(int((pg == tg).sum()), len(pg))),
        }
    return per_group


def group_counts(t: np.ndarray, p: np.ndarray, groups: np.ndarray) -> dict[str, dict[str, int]]:
    """Per group (sorted by name): rows, selected, positives, negatives, true and false
    positives: everything the intervals below are functions of."""
    out = {}
    for group in sorted(set(groups)):
        m = groups == group
        tg, pg = t[m], p[m]
        out[str(group)] = {"n": int(m.sum()), "selected": int(pg.sum()),
                           "positives": int(tg.sum()), "negatives": int((1 - tg).sum()),
                           "tp": int((pg & tg).sum()), "fp": int((pg & (1 - tg)).sum())}
    return out


def compare_groups(counts: dict[str, dict[str, int]], reference: str | None = None,
                   alpha: float = ALPHA) -> dict[str, Any]:
    """The reference group (the largest unless given; ties by name), every other group's signed
    difference (and selection-rate ratio) against it with its interval (``pairwise[rate]
    [group]``), and the simultaneous
    intervals of the four summaries (keyed as :data:`GAPS`). The same function builds the
    published intervals and the ``selfcheck`` coverage."""
    if reference is None:
        reference = min(counts, key=lambda g: (-counts[g]["n"], g))
    ref = counts[reference]
    pairwise: dict[str, dict[str, dict[str, Any]]] = {}
    undefined: dict[str, str] = {}
    for rate, (num, den) in COMPARED.items():
        entries = {}
        for group, c in counts.items():
            if group == reference:
                continue
            entry: dict[str, Any] = {"group": group, "reference": reference, "n": c[den],
                                     "n_reference": ref[den], "difference": None,
                                     "interval": None}
            if c[den] and ref[den]:
                entry["difference"] = c[num] / c[den] - ref[num] / ref[den]
                entry["interval"] = as_interval(difference_interval(c[num], c[den], ref[num],
                                                                    ref[den], alpha))
            else:
                entry["reason"] = (f"{group if not c[den] else reference} has no "
                                   f"{DENOMINATORS.get(den, 'row')}")
            if rate == "selection_rate":  # undefined when the reference selects nobody
                defined = bool(c[den] and ref[num])
                entry["ratio"] = (c[num] / c[den]) / (ref[num] / ref[den]) if defined else None
                entry["ratio_interval"] = as_interval(ratio_interval(
                    c[num], c[den], ref[num], ref[den], alpha)) if defined else None
            entries[group] = entry
        pairwise[rate] = entries
    rate_pairs = {rate: _pairs(counts, num, den) for rate, (num, den) in COMPARED.items()}
    intervals: dict[str, list[float] | None] = {
        "demographic_parity_difference": _spread_interval(rate_pairs["selection_rate"], alpha),
        "demographic_parity_ratio": _ratio_summary(rate_pairs["selection_rate"], alpha),
        "equal_opportunity_difference": _spread_interval(rate_pairs["tpr"], alpha),
        "equalized_odds_difference": _spread_interval(rate_pairs["tpr"] + rate_pairs["fpr"],
                                                      alpha),
    }
    for gap, missing in (("equal_opportunity_difference", "positive-class samples"),
                         ("equalized_odds_difference", "positive-class samples or others")):
        if intervals[gap] is None:
            undefined[f"intervals.{gap}"] = f"fewer than two groups have {missing}"
    return {"reference_group": reference, "pairwise": pairwise, "intervals": intervals,
            "undefined": undefined}


Pair = tuple[int, int, int, int]  # count and denominator of one group, then of the other


def _pairs(counts: dict[str, dict[str, int]], num: str, den: str) -> list[Pair]:
    """Every unordered pair of groups where the rate is defined in both."""
    defined = [(c[num], c[den]) for c in counts.values() if c[den] > 0]
    return [(*a, *b) for i, a in enumerate(defined) for b in defined[i + 1:]]


def _spread_interval(pairs: list[Pair], alpha: float) -> list[float] | None:
    """Simultaneous interval of the largest absolute pairwise difference (max - min): each
    pair's Newcombe interval at level ``1 - alpha / len(pairs)``; if all hold, the largest
    difference is at least every interval's distance from 0 and at most its largest |bound|."""
    if not pairs:
        return None
    bounds = [difference_interval(*pair, alpha / len(pairs)) for pair in pairs]
    lows = [max(0.0, lo, -hi) for lo, hi in bounds]  # type: ignore[misc]
    highs = [max(abs(lo), abs(hi)) for lo, hi in bounds]  # type: ignore[misc]
    return [max(lows), max(highs)]


def _ratio_summary(pairs: list[Pair], alpha: float) -> list[float] | None:
    """Simultaneous interval of min / max rate: each pair's ratio interval, folded to the
    smaller rate over the larger (``min(r, 1/r)``), at level ``1 - alpha / len(pairs)``."""
    if not pairs:
        return None
    folded: list[Interval] = []
    for a, n_a, b, n_b in pairs:
        if a * n_b > b * n_a:  # the lower observed rate on top: an empty count gives 0
            a, n_a, b, n_b = b, n_b, a, n_a
        lo, hi = ratio_interval(a, n_a, b, n_b, alpha / len(pairs))  # type: ignore[misc]
        if lo <= 1 <= hi:
            folded.append((min(lo, 1 / hi), 1.0))
        elif hi < 1:
            folded.append((lo, hi))
        else:
            folded.append((1 / hi, 1 / lo))
    return [min(lo for lo, _ in folded), min(hi for _, hi in folded)]


def conclusiveness(counts: dict[str, dict[str, int]]) -> dict[str, Any]:
    """``conclusive`` and ``reason`` per group and for the attribute: a group, or the
    denominator of its TPR or FPR, under :data:`MIN_CONCLUSIVE` rows makes it inconclusive."""
    groups: dict[str, dict[str, Any]] = {}
    for group, c in counts.items():
        short = [f"{c['n']} rows"] if c["n"] < MIN_CONCLUSIVE else []
        short += [f"{c[den]} {what}" for den, what in DENOMINATORS.items()
                  if c["n"] >= MIN_CONCLUSIVE and c[den] < MIN_CONCLUSIVE]
        groups[group] = {"conclusive": not short,
                         "reason": (f"only {' and '.join(short)}, fewer than {MIN_CONCLUSIVE}"
                                    if short else None)}
    weak = [g for g, f in groups.items() if not f["conclusive"]]
    reason = None
    if len(counts) < 2:
        reason = "a single group: there is nothing to compare"
    elif weak:
        reason = (f"{len(weak)} of {len(counts)} groups too small to read: "
                  + "; ".join(f"{g} has {groups[g]['reason']}" for g in weak[:5])
                  + ("; …" if len(weak) > 5 else ""))
    return {"groups": groups, "conclusive": reason is None, "reason": reason}


def gaps(t: np.ndarray, p: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """The four gap measures as fairlearn defines them (NaN where undefined): max minus min
    (or min over max) across the groups present, of selection rate, TPR and FPR."""
    k = int(codes.max()) + 1 if len(codes) else 0
    n = np.bincount(codes, minlength=k)
    selected = np.bincount(codes, weights=p, minlength=k)
    positives = np.bincount(codes, weights=t, minlength=k)
    tp = np.bincount(codes, weights=p * t, minlength=k)
    fp = selected - tp
    negatives = n - positives
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = selected[n > 0] / n[n > 0]
        tpr = np.where(positives > 0, tp / positives, np.nan)[n > 0]
        fpr = np.where(negatives > 0, fp / negatives, np.nan)[n > 0]
    if len(rate) < 2:  # a resample holding one group says nothing about a gap
        return np.full(4, np.nan)
    ratio = float(rate.min() / rate.max()) if rate.max() > 0 else np.nan
    tpr_gap, fpr_gap = _spread(tpr), _spread(fpr)
    return np.array([_spread(rate), ratio, np.fmax(tpr_gap, fpr_gap), tpr_gap])


def _spread(x: np.ndarray) -> float:
    """Largest minus smallest defined value, like pandas' max() - min() (which skip NaN)."""
    return float(np.nanmax(x) - np.nanmin(x)) if not np.isnan(x).all() else float(np.nan)


def _num(value: Any) -> float | None:
    """JSON-safe float: fairlearn gives NaN where a rate is undefined (e.g. no positives)."""
    value = float(value)
    return None if np.isnan(value) else value
