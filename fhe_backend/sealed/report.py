"""The report fields of a sealed audit, from its decrypted counts: the keys ``audit --json``
has (metrics with 95% intervals, undefined metrics with their reasons, positive class,
readings, fairness) plus what was decrypted. Used by ``audit --sealed``, ``decrypt --sealed``
and the Space, so the three agree.

Every metric of a binary classifier's confusion matrix is a function of its counts, and so is
every interval the per-sample path publishes for them (score intervals: Wilson, MOVER, Newcombe;
no bootstrap): the counts give the same point values and the same intervals, from the same
functions (:func:`~fhe_backend.audits.metrics.rate_intervals`,
:func:`~fhe_backend.audits.fairness.compare_groups`), as a per-sample audit of those samples.
When the server added noise to the counts (``run --dp-epsilon``), :mod:`.dp_report` clips them
for the point values and widens every interval for the noise.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..audits import AuditOptions, readings
from ..audits.metrics import classification_readings, rows_from_confusion
from .dp_report import WIDENING, NoiseWidener, clip_counts, dp_entry

if TYPE_CHECKING:
    from ..auditor.sealed import SealedCounts
    from ..formats.artifacts import ModelPackage

ROC_AUC_REASON = "a sealed audit decrypts counts only; ROC-AUC needs per-sample scores"


def sealed_readings(counts: SealedCounts, class_names: list[str]) -> dict[str, Any]:
    """``metrics``, ``intervals``, ``undefined_metrics``, ``positive_class``, ``averaging`` and
    ``interval_methods`` of the per-sample report, from the counts."""
    y_true, y_pred = rows_from_confusion(counts.confusion())
    out = classification_readings(y_true, y_pred, np.zeros((len(y_true), 2)), class_names)
    # Zero scores stand in for the scores a sealed run never has: no ROC-AUC from them.
    out["metrics"]["roc_auc"] = None
    out["metrics"]["roc_auc_reason"] = ROC_AUC_REASON
    out["intervals"]["roc_auc"] = None
    out["undefined_metrics"]["roc_auc"] = ROC_AUC_REASON
    return out


def sealed_fields(counts: SealedCounts, package: ModelPackage) -> dict[str, Any]:
    """Everything a sealed report derives from its counts (see the module docstring). When
    ``counts.dp`` names the server's noise (the run transcript's ``dp`` entry), the point values
    come from the counts clipped to [0, total], every interval is widened for the noise
    (:mod:`.dp_report`), and the report gains a ``dp`` entry."""
    from ..auditor.sealed import decrypted_summary, sealed_fairness

    dp = counts.dp
    noisy = counts
    if dp is not None:
        clipped, clipped_cells = clip_counts(counts.positives, counts.totals, counts.groups)
        counts = replace(counts, positives=clipped)
    class_names = package.manifest.class_names
    n_samples = int(counts.totals.sum())
    audits = ["accuracy"] + (["fairness"] if counts.group_column else [])
    fields: dict[str, Any] = {
        **sealed_readings(counts, class_names),
        "readings": readings(n_samples, AuditOptions.parse(audits)),
    }
    if counts.group_column:
        fields["fairness"] = {attribute: {**f, "positive_class": class_names[1]}
                              for attribute, f in sealed_fairness(counts).items()}
    fields.update(sealed=True, batch_size=counts.batch_size, n_batches=counts.n_batches,
                  decrypted=decrypted_summary(noisy))
    if dp is not None:
        entry = dp_entry(dp, clipped_cells)
        widener = NoiseWidener(counts.positives, counts.totals, entry["epsilon"],
                               entry["mechanism"])
        fields["intervals"] = widener.rates(fields["intervals"])
        fields["interval_methods"] = {**fields["interval_methods"], "noise": WIDENING}
        for attribute, result in fields.get("fairness", {}).items():
            fields["fairness"][attribute] = widener.fairness(result, counts.groups)
        fields["dp"] = entry
    return fields
