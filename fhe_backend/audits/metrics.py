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
    ALPHA,
    Interval,
    as_interval,
    auc_interval,
    bonferroni_mean,
    f1_interval,
    mover_mean,
    wilson,
)

RATES = ("accuracy", "balanced_accuracy", "precision", "recall", "f1")
METHODS = {
    "level": 0.95,
    "proportions": "Wilson score interval (accuracy; binary precision and recall; "
                   "per-group rates; flip rates)",
    "others": "score intervals of the proportions a metric is made of, never a bootstrap that "
              "a perfect score collapses to a point: balanced accuracy and macro precision or "
              "recall by MOVER over the per-class Wilson intervals; F1 by a Wilson interval "
              "of tp / (tp + fp + fn); ROC-AUC by Newcombe's score method (Hanley-McNeil "
              "variance); a macro F1 or multi-class ROC-AUC as the mean of per-class "
              "Bonferroni intervals",
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


def _auc_of(positive: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney AUC of one class against the rest; NaN unless both occur."""
    from scipy.stats import rankdata

    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return float(np.nan)
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


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
        rates = rate_intervals(_confusion(y_true, y_pred, k))
        intervals.update({name: as_interval(rates[name]) if values[name] is not None else None
                          for name in RATES})
        if values["roc_auc"] is not None:
            intervals["roc_auc"] = as_interval(roc_auc_interval(y_true, scores, k))
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


def rate_intervals(confusion: np.ndarray) -> dict[str, Interval | None]:
    """95% intervals of accuracy, balanced accuracy, precision, recall and F1 (binary: of
    class 1; else macro) from a confusion matrix (rows: true label); None where undefined.
    The same function builds the published intervals and the ``selfcheck`` coverage."""
    cm = np.asarray(confusion, dtype=np.int64)
    k = len(cm)
    tp, predicted, actual = np.diag(cm), cm.sum(axis=0), cm.sum(axis=1)
    n = int(cm.sum())

    def recall(c: int) -> Interval | None:
        return wilson(int(tp[c]), int(actual[c]))

    def precision(c: int) -> Interval | None:
        return wilson(int(tp[c]), int(predicted[c]))

    def macro(part: Any, defined: np.ndarray) -> Interval | None:
        classes = [c for c in range(k) if defined[c] > 0]
        if not classes:
            return None
        return mover_mean([tp[c] / defined[c] for c in classes], [part(c) for c in classes])

    recall_macro = macro(recall, actual)
    out: dict[str, Interval | None] = {"accuracy": wilson(int(tp.sum()), n),
                                       "balanced_accuracy": recall_macro}
    fn, fp = actual - tp, predicted - tp
    if k == 2:
        out.update(precision=precision(1), recall=recall(1),
                   f1=f1_interval(int(tp[1]), int(fp[1]), int(fn[1])))
        return out
    f1_classes = [c for c in range(k) if tp[c] + fp[c] + fn[c] > 0]
    f1_parts = [part for c in f1_classes if (part := f1_interval(
        int(tp[c]), int(fp[c]), int(fn[c]), ALPHA / len(f1_classes))) is not None]
    out.update(precision=macro(precision, predicted), recall=recall_macro,
               f1=bonferroni_mean(f1_parts) if f1_parts else None)
    return out


def roc_auc_interval(y_true: np.ndarray, scores: np.ndarray, k: int) -> Interval | None:
    """95% interval of ROC-AUC (one-vs-rest macro for multi-class: the mean of per-class
    Bonferroni intervals, the per-class AUCs sharing their rows); None unless every class
    occurs."""
    classes = [1] if k == 2 else list(range(k))
    parts = []
    for c in classes:
        n_pos = int((y_true == c).sum())
        part = auc_interval(_auc_of(y_true == c, scores[:, c]), n_pos, len(y_true) - n_pos,
                            ALPHA / len(classes))
        if part is None:
            return None
        parts.append(part)
    return bonferroni_mean(parts)


def _undefined(values: dict[str, Any], y_true: np.ndarray, y_pred: np.ndarray,
               class_names: list[str]) -> dict[str, str]:
    """Why each undefined metric is undefined, in words."""
    if not len(y_true):
        return {name: "no sample was decrypted" for name in (*RATES, "roc_auc")}
    positive = class_names[1] if len(class_names) == 2 else "any class"
    reasons = {
        "precision": f"no sample was predicted as {positive!r}",
        "recall": f"the audited samples hold no sample of {positive!r}",
        "f1": f"no sample is, or is predicted as, {positive!r}",
        "balanced_accuracy": "no class is present",
    }
    out = {name: reason for name, reason in reasons.items() if values.get(name) is None}
    if values.get("roc_auc") is None:
        missing = [class_names[c] for c in range(len(class_names)) if not (y_true == c).any()]
        # "the audited samples": a --limit draw may miss a class the benchmark has
        out["roc_auc"] = (f"the audited samples hold no sample of "
                          f"{', '.join(map(repr, missing[:3]))}"
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
