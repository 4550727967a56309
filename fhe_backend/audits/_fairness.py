"""Fairness: the real samples joined with the auditor's sensitive attributes; fairlearn's
metrics per group (see :mod:`fhe_backend.audits.fairness`). No probe: no extra FHE query."""

from __future__ import annotations

from typing import Any

from ._kind import AuditKind, Outputs, Report, sensitive_attributes


def evaluate(out: Outputs) -> dict[str, Any]:
    import numpy as np

    from .fairness import group_fairness

    class_names = out.package.manifest.class_names
    positive = 1 if len(class_names) == 2 else int(np.bincount(out.y_true).argmax())
    return {
        attribute: {**group_fairness(out.y_true, out.real.predictions,
                                     out.rows.loc[out.real.sources, attribute], positive),
                    "positive_class": class_names[positive]}
        for attribute in sensitive_attributes(out.benchmark)
    }


def summary(report: Report) -> list[str]:
    from .uncertainty import format_metric

    return [f"  fairness [{attribute}]: demographic parity difference "
            f"{format_metric(f['demographic_parity_difference'], digits=4)}, equalized odds "
            f"difference {format_metric(f['equalized_odds_difference'], digits=4)}"
            for attribute, f in report["fairness"].items()]


def markdown(report: Report) -> list[str]:
    from .uncertainty import format_metric

    lines: list[str] = []
    for attribute, f in report["fairness"].items():
        gaps = f.get("intervals", {})
        lines += ["", f"## Fairness by {attribute} (selection = predicting "
                      f"{f.get('positive_class', f['positive_label_index'])!r})", "",
                  "| group | n | selection rate | TPR | FPR | accuracy |",
                  "|---|---|---|---|---|---|"]
        for group, g in f["groups"].items():
            gi = gaps.get("groups", {}).get(group, {})
            cells = [format_metric(g[k], gi.get(k)) for k in ("selection_rate", "tpr", "fpr",
                                                              "accuracy")]
            lines.append(f"| {group} | {g['n']} | " + " | ".join(cells) + " |")
        lines.append("")
        for gap in ("demographic_parity_difference", "demographic_parity_ratio",
                    "equalized_odds_difference", "equal_opportunity_difference"):
            lines.append(f"- {gap.replace('_', ' ')}: {format_metric(f.get(gap), gaps.get(gap))}")
    return lines


KIND = AuditKind(
    name="fairness", title="Fairness per group",
    description="Fairness: selection rate, TPR and FPR per group of each sensitive attribute",
    needs_sensitive=True, evaluate=evaluate, summary=summary, markdown=markdown)
