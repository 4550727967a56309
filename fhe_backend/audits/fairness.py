"""Group fairness from decrypted predictions, with fairlearn's metric definitions.

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
from .uncertainty import as_interval, bootstrap, wilson

GAPS = ("demographic_parity_difference", "demographic_parity_ratio",
        "equalized_odds_difference", "equal_opportunity_difference")


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
    return {
        "positive_label_index": positive,
        "groups": out_groups,
        "demographic_parity_difference": _num(
            fm.demographic_parity_difference(t, p, sensitive_features=groups)),
        "demographic_parity_ratio": _num(
            fm.demographic_parity_ratio(t, p, sensitive_features=groups)),
        "equalized_odds_difference": _num(point[2]),
        "equal_opportunity_difference": _num(point[3]),
        "intervals": _intervals(t, p, names),
        "undefined": undefined,
    }


def _intervals(t: np.ndarray, p: np.ndarray, groups: np.ndarray) -> dict[str, Any]:
    """95% intervals: Wilson per group and rate, bootstrap over samples for the four gaps."""
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
    codes = np.unique(groups, return_inverse=True)[1]
    bounds = bootstrap(lambda i: gaps(t[i], p[i], codes[i]), len(t))
    out: dict[str, Any] = {name: as_interval(bounds, j) for j, name in enumerate(GAPS)}
    out["groups"] = per_group
    return out


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
