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

    def gap(f: dict[str, Any], name: str) -> str:
        return format_metric(f[name], f.get("intervals", {}).get(name), digits=4)

    lines = []
    for attribute, f in report["fairness"].items():
        reference = f.get("reference_group")
        lines.append(f"  fairness [{attribute}]: demographic parity difference "
                     f"{gap(f, 'demographic_parity_difference')}, equalized odds difference "
                     f"{gap(f, 'equalized_odds_difference')}"
                     + (f"; reference group {reference!r}" if reference else ""))
        lines += [f"    {line}" for line in _inconclusive(f)]
    return lines


def _inconclusive(f: dict[str, Any]) -> list[str]:
    """The attribute's reason to be inconclusive (naming each small group's), if it is."""
    return [] if f.get("conclusive", True) else [f"inconclusive: {f['reason']}"]


def markdown(report: Report) -> list[str]:
    from .fairness import GAPS
    from .uncertainty import format_metric

    lines: list[str] = []
    for attribute, f in report["fairness"].items():
        gaps = f.get("intervals", {})
        lines += ["", f"## Fairness by {attribute} (selection = predicting "
                      f"{f.get('positive_class', f['positive_label_index'])!r})", "",
                  "| group | n | selection rate | TPR | FPR | accuracy | conclusive |",
                  "|---|---|---|---|---|---|---|"]
        for group, g in f["groups"].items():
            gi = gaps.get("groups", {}).get(group, {})
            cells = [format_metric(g[k], gi.get(k)) for k in ("selection_rate", "tpr", "fpr",
                                                              "accuracy")]
            verdict = "yes" if g.get("conclusive", True) else f"no: {g['reason']}"
            lines.append(f"| {group} | {g['n']} | " + " | ".join(cells) + f" | {verdict} |")
        lines.append("")
        lines += [f"**{line[0].upper()}{line[1:]}**" for line in _inconclusive(f)]
        for gap in GAPS:
            lines.append(f"- {gap.replace('_', ' ')}: {format_metric(f.get(gap), gaps.get(gap))}")
        lines += _pairwise(f)
    return lines


def _pairwise(f: dict[str, Any]) -> list[str]:
    """Each group against the reference group: signed differences and the selection ratio."""
    from .uncertainty import format_metric

    pairwise = f.get("pairwise")
    if not pairwise or not pairwise.get("selection_rate"):
        return []
    lines = ["", f"Against the reference group {f['reference_group']!r} (the largest; "
                 "difference = group - reference):", "",
             "| group | selection rate difference | selection rate ratio | TPR difference | "
             "FPR difference |", "|---|---|---|---|---|"]
    for group, sel in pairwise["selection_rate"].items():
        tpr, fpr = pairwise["tpr"][group], pairwise["fpr"][group]
        cells = [format_metric(e["difference"], e["interval"], reason=e.get("reason"))
                 for e in (sel, tpr, fpr)]
        ratio = format_metric(sel.get("ratio"), sel.get("ratio_interval"),
                              reason="the reference group has no selection")
        lines.append(f"| {group} | {cells[0]} | {ratio} | {cells[1]} | {cells[2]} |")
    return lines


KIND = AuditKind(
    name="fairness", title="Fairness per group",
    description="Fairness: selection rate, TPR and FPR per group of each sensitive attribute",
    needs_sensitive=True, evaluate=evaluate, summary=summary, markdown=markdown)
