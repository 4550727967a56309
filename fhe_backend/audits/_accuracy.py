"""Accuracy: the real samples, scored with scikit-learn's metrics. Measured on every audit, so
its readings are the report's top-level ``metrics`` (see :mod:`fhe_backend.audits.metrics`)."""

from __future__ import annotations

from ._kind import AuditKind

KIND = AuditKind(
    name="accuracy", title="Accuracy",
    description="Accuracy: accuracy, precision, recall, F1 and ROC-AUC on the real samples",
    always=True, behaviour=False)
