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

from .errors import AuditError


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
    return {
        "positive_label_index": positive,
        "groups": {
            str(group): {
                "n": int(row["n"]),
                "selection_rate": _num(row["selection_rate"]),
                "tpr": _num(row["tpr"]),
                "fpr": _num(row["fpr"]),
                "accuracy": _num(row["accuracy"]),
            }
            for group, row in by_group.iterrows()
        },
        "demographic_parity_difference": _num(
            fm.demographic_parity_difference(t, p, sensitive_features=groups)),
        "demographic_parity_ratio": _num(
            fm.demographic_parity_ratio(t, p, sensitive_features=groups)),
        "equalized_odds_difference": _num(
            fm.equalized_odds_difference(t, p, sensitive_features=groups)),
        "equal_opportunity_difference": _num(
            fm.equal_opportunity_difference(t, p, sensitive_features=groups)),
    }


def _num(value: Any) -> float | None:
    """JSON-safe float: fairlearn gives NaN where a rate is undefined (e.g. no positives)."""
    value = float(value)
    return None if np.isnan(value) else value
