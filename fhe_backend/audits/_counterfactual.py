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
    return [f"  counterfactual [{attribute}]: flip rate {c['flip_rate']:.4f} over "
            f"{c['n_probes']} probes" for attribute, c in report["counterfactual"].items()]


def markdown(report: Report) -> list[str]:
    from .uncertainty import format_metric

    lines: list[str] = []
    for attribute, c in report["counterfactual"].items():
        lines += ["", f"## Counterfactual: {attribute}", "",
                  f"- flip rate over {c['n_probes']} probes: "
                  f"{format_metric(c['flip_rate'], c.get('intervals', {}).get('flip_rate'))}"]
    return lines


KIND = AuditKind(
    name="counterfactual", title="Counterfactual flips",
    description="Counterfactual: how often changing a sensitive attribute flips the prediction",
    queries={"counterfactual": "counterfactual probes"}, needs_sensitive=True,
    plan=plan, evaluate=evaluate, summary=summary, markdown=markdown)
