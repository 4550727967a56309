"""Counterfactual: one probe per sample and other value of each sensitive attribute (e.g. sex
swapped); how often that flips the prediction (see
:func:`fhe_backend.audits.explain.counterfactual`)."""

from __future__ import annotations

from typing import Any

from ._kind import AuditKind, Outputs, Planning, Report, Rows, sensitive_attributes


def plan(p: Planning) -> list[Rows]:
    from ..auditor.probes import counterfactual_rows

    schema = p.package.manifest.input_schema
    return [counterfactual_rows(p.benchmark, schema, attribute)
            for attribute in sensitive_attributes(p.benchmark)]


def evaluate(out: Outputs) -> dict[str, Any]:
    from .explain import counterfactual

    return counterfactual(out.real, out.decrypted.select("counterfactual"))


def summary(report: Report) -> list[str]:
    from .uncertainty import format_metric

    return [f"  counterfactual [{attribute}]: flip rate "
            f"{format_metric(c['flip_rate'], c.get('intervals', {}).get('flip_rate'), digits=4)}"
            f" over {c['n_probes']} probes" for attribute, c in report["counterfactual"].items()]


def markdown(report: Report) -> list[str]:
    from .uncertainty import format_metric

    lines: list[str] = []
    for attribute, c in report["counterfactual"].items():
        intervals, reasons = c.get("intervals", {}), c.get("no_interval", {})
        samples = f" of {c['n_samples']} samples" if c.get("n_samples") else ""
        lines += ["", f"## Counterfactual: {attribute}", "",
                  f"- flip rate over {c['n_probes']} probes{samples}: "
                  f"{format_metric(c['flip_rate'], intervals.get('flip_rate'))}"]
        for key, label in (("mean_score_change", "mean score change"),
                           ("mean_abs_score_change", "mean absolute score change")):
            if key in c:
                reason = f" (no interval: {reasons[key]})" if key in reasons else ""
                lines.append(f"- {label}: {format_metric(c[key], intervals.get(key), digits=4)}"
                             + reason)
        if c.get("interval_methods"):
            lines.append("- intervals: probes clustered by sample (" + "; ".join(
                f"{k}: {v}" for k, v in c["interval_methods"].items()) + ")")
    return lines


KIND = AuditKind(
    name="counterfactual", title="Counterfactual flips",
    description="Counterfactual: how often changing a sensitive attribute flips the prediction",
    queries={"counterfactual": "counterfactual probes"}, needs_sensitive=True,
    plan=plan, evaluate=evaluate, summary=summary, markdown=markdown)
