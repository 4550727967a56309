"""Classification metrics from decrypted predictions (scikit-learn's definitions), each with a
95% interval, and ``None`` plus a reason where a metric is undefined on these samples.

Precision, recall and F1 are those of the positive class (the model's second class) for a
binary model, and macro averages (unweighted, over the classes where they are defined) for a
multi-class one. An undefined metric is never shown as 0: with no predicted positive there is
no precision, with no sample of a class no recall.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics

from .uncertainty import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    MIN_BOOTSTRAP_SAMPLES,
    as_interval,
    bootstrap,
    wilson,
)

RATES = ("accuracy", "balanced_accuracy", "precision", "recall", "f1")
METHODS = {
    "level": 0.95,
    "proportions": "Wilson score interval (accuracy; binary precision and recall; "
                   "per-group rates; flip rates)",
    "others": f"percentile bootstrap over samples, {BOOTSTRAP_RESAMPLES} resamples, "
              f"seed {BOOTSTRAP_SEED}; none below {MIN_BOOTSTRAP_SAMPLES} samples, where it "
              f"would claim a certainty the samples do not give",
}


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def _nanmean(values: np.ndarray) -> float:
    return float(np.nan) if np.isnan(values).all() else float(np.nanmean(values))


def _rates(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> dict[str, float]:
    """Accuracy-type rates (NaN where undefined), as scikit-learn with ``zero_division=nan``."""
    cm = _confusion(y_true, y_pred, k)
    tp, predicted, actual = np.diag(cm), cm.sum(axis=0), cm.sum(axis=1)
    precision, recall = _ratio(tp, predicted), _ratio(tp, actual)
    f1 = _ratio(2 * tp, predicted + actual)
    n = cm.sum()
    out = {"accuracy": float(tp.sum() / n) if n else float(np.nan),
           "balanced_accuracy": _nanmean(recall)}
    if k == 2:
        out.update(precision=float(precision[1]), recall=float(recall[1]), f1=float(f1[1]))
    else:
        out.update(precision=_nanmean(precision), recall=_nanmean(recall), f1=_nanmean(f1))
    return out


def _auc(y_true: np.ndarray, scores: np.ndarray, k: int) -> float:
    """ROC-AUC (one-vs-rest macro for multi-class) by ranks; NaN unless every class occurs."""
    from scipy.stats import rankdata

    classes = [1] if k == 2 else range(k)
    values = []
    for c in classes:
        positive = y_true == c
        n_pos, n_neg = int(positive.sum()), int((~positive).sum())
        if not n_pos or not n_neg:
            return float(np.nan)
        ranks = rankdata(scores[:, c])
        values.append((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    return float(np.mean(values))


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, scores: np.ndarray, n_classes: int
) -> dict[str, Any]:
    """Accuracy, balanced accuracy, precision/recall/F1 (binary, or macro for multi-class),
    the confusion matrix and ROC-AUC (one-vs-rest for multi-class); None when undefined."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    labels = list(range(n_classes))
    result: dict[str, Any] = {name: _num(v) for name, v in
                              _rates(y_true, y_pred, n_classes).items()}
    result["confusion_matrix"] = metrics.confusion_matrix(y_true, y_pred, labels=labels).tolist()
    result["roc_auc"] = None
    present = np.unique(y_true)
    try:
        if n_classes == 2 and len(present) == 2:
            result["roc_auc"] = float(metrics.roc_auc_score(y_true, scores[:, 1]))
        elif n_classes > 2 and len(present) == n_classes:
            result["roc_auc"] = float(
                metrics.roc_auc_score(y_true, scores, multi_class="ovr", labels=labels)
            )
    except ValueError:
        result["roc_auc"] = None  # e.g. scores that do not sum to one after quantization
    return result


def classification_readings(
    y_true: np.ndarray, y_pred: np.ndarray, scores: np.ndarray, class_names: list[str],
) -> dict[str, Any]:
    """The report's accuracy section: ``metrics`` (as :func:`classification_metrics`),
    ``intervals`` (95%, per metric), ``undefined_metrics`` (metric -> reason), the positive
    class and the averaging, and how the intervals were computed."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    k, n = len(class_names), len(y_true)
    values = classification_metrics(y_true, y_pred, scores, k)
    intervals: dict[str, list[float] | None] = dict.fromkeys((*RATES, "roc_auc"))
    if n:
        intervals["accuracy"] = as_interval(wilson(int((y_true == y_pred).sum()), n))
        bounds = bootstrap(lambda i: np.array(list(_rates(y_true[i], y_pred[i], k).values())), n)
        for j, name in enumerate(RATES[1:], start=1):
            if values[name] is not None:
                intervals[name] = as_interval(bounds, j)
        if k == 2:  # a proportion of the predicted (precision) or true (recall) positives
            tp = int(((y_true == 1) & (y_pred == 1)).sum())
            if values["precision"] is not None:
                intervals["precision"] = as_interval(wilson(tp, int((y_pred == 1).sum())))
            if values["recall"] is not None:
                intervals["recall"] = as_interval(wilson(tp, int((y_true == 1).sum())))
        if values["roc_auc"] is not None:
            intervals["roc_auc"] = as_interval(bootstrap(lambda i: _auc(y_true[i], scores[i], k),
                                                         n))
    positive = class_names[1] if k == 2 else None
    return {
        "metrics": values,
        "intervals": intervals,
        "undefined_metrics": _undefined(values, y_true, y_pred, class_names),
        "positive_class": positive,
        "averaging": (f"binary: precision, recall and F1 of the positive class {positive!r}"
                      if k == 2 else
                      "macro: unweighted mean over classes, leaving out a class where the "
                      "metric is undefined (never predicted, or absent from the benchmark)"),
        "interval_methods": METHODS,
    }


def _undefined(values: dict[str, Any], y_true: np.ndarray, y_pred: np.ndarray,
               class_names: list[str]) -> dict[str, str]:
    """Why each undefined metric is undefined, in words."""
    if not len(y_true):
        return {name: "no sample was decrypted" for name in (*RATES, "roc_auc")}
    positive = class_names[1] if len(class_names) == 2 else "any class"
    reasons = {
        "precision": f"no sample was predicted as {positive!r}",
        "recall": f"the benchmark has no sample of {positive!r}",
        "f1": f"no sample is, or is predicted as, {positive!r}",
        "balanced_accuracy": "no class is present",
    }
    out = {name: reason for name, reason in reasons.items() if values.get(name) is None}
    if values.get("roc_auc") is None:
        missing = [class_names[c] for c in range(len(class_names)) if not (y_true == c).any()]
        out["roc_auc"] = (f"the benchmark has no sample of {', '.join(map(repr, missing[:3]))}"
                          if missing else "the decrypted scores are not probabilities")
    return out


def rows_from_confusion(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label and prediction arrays with exactly these confusion counts (rows: true label), for
    metrics known only by their counts (a sealed audit): every metric here is a function of
    the counts, so scikit-learn's definitions apply unchanged."""
    confusion = np.asarray(confusion, dtype=np.int64)
    k = len(confusion)
    cells = np.repeat(np.arange(k * k), confusion.reshape(-1))
    return cells // k, cells % k


def _num(value: float) -> float | None:
    return None if np.isnan(value) else float(value)
