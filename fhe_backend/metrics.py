"""Classification metrics from decrypted predictions (scikit-learn's definitions)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, scores: np.ndarray, n_classes: int
) -> dict[str, Any]:
    """Accuracy, balanced accuracy, precision/recall/F1 (binary, or macro for multi-class),
    the confusion matrix and ROC-AUC (one-vs-rest for multi-class; None when undefined)."""
    labels = list(range(n_classes))
    binary = n_classes == 2
    average = "binary" if binary else "macro"
    kwargs: dict[str, Any] = {"average": average, "zero_division": 0}
    if not binary:
        kwargs["labels"] = labels
    result: dict[str, Any] = {
        "accuracy": float(metrics.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(metrics.balanced_accuracy_score(y_true, y_pred))
        if len(y_true) else 0.0,
        "precision": float(metrics.precision_score(y_true, y_pred, **kwargs)),
        "recall": float(metrics.recall_score(y_true, y_pred, **kwargs)),
        "f1": float(metrics.f1_score(y_true, y_pred, **kwargs)),
        "confusion_matrix": metrics.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "roc_auc": None,
    }
    present = np.unique(y_true)
    try:
        if binary and len(present) == 2:
            result["roc_auc"] = float(metrics.roc_auc_score(y_true, scores[:, 1]))
        elif not binary and len(present) == n_classes:
            result["roc_auc"] = float(
                metrics.roc_auc_score(y_true, scores, multi_class="ovr", labels=labels)
            )
    except ValueError:
        result["roc_auc"] = None  # e.g. scores that do not sum to one after quantization
    return result
