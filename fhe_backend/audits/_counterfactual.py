"""Counterfactual: one probe per sample and other value of each sensitive attribute (e.g. sex
swapped); how often that flips the prediction (see
:func:`fhe_backend.audits.explain.counterfactual`)."""

from __future__ import annotations

from typing import Any

from ._kind import AuditKind, Outputs, Planning, Report, Rows, sensitive_attributes

# An attribute the model does not take gets no probe: every probe would be the sample itself,
# and its flip rate of 0 (95% CI 0 to 0.062 on 60 samples) would read as a measurement.
NOT_AN_INPUT = ("the model does not take {attribute} as an input, so changing it changes no "
                "input and there is nothing to measure; a proxy of it among the inputs is not "
                "probed")


def _not_inputs(benchmark: Any, package: Any) -> list[str]:
    inputs = set(package.manifest.input_schema.column_names)
    return [a for a in sensitive_attributes(benchmark) if a not in inputs]


def plan(p: Planning) -> list[Rows]:
    from ..auditor.probes import counterfactual_rows

    schema = p.package.manifest.input_schema
    skipped = _not_inputs(p.benchmark, p.package)
    return [counterfactual_rows(p.benchmark, schema, attribute)
            for attribute in sensitive_attributes(p.benchmark) if attribute not in skipped]


def evaluate(out: Outputs) -> dict[str, Any]:
    from .explain import counterfactual

    result = counterfactual(out.real, out.decrypted.select("counterfactual"))
    for attribute in _not_inputs(out.benchmark, out.package):
        result[attribute] = {
            "n_probes": 0, "n_samples": 0, "flip_rate": None, "mean_score_change": None,
            "mean_abs_score_change": None, "intervals": {}, "not_an_input": True,
            "reason": NOT_AN_INPUT.format(attribute=attribute)}
    return result


def summary(report: Report) -> list[str]:
    from .uncertainty import format_metric

    def rate(c: dict[str, Any]) -> str:
        return format_metric(c["flip_rate"], c.get("intervals", {}).get("flip_rate"), digits=4,
                             reason=c.get("reason"))

    return [f"  counterfactual [{attribute}]: flip rate {rate(c)} over {c['n_probes']} probes"
            for attribute, c in report["counterfactual"].items()]


def markdown(report: Report) -> list[str]:
    from .uncertainty import format_metric

    lines: list[str] = []
    for attribute, c in report["counterfactual"].items():
        intervals, reasons = c.get("intervals", {}), c.get("no_interval", {})
        samples = f" of {c['n_samples']} samples" if c.get("n_samples") else ""
        lines += ["", f"## Counterfactual: {attribute}", "",
                  f"- flip rate over {c['n_probes']} probes{samples}: "
                  + format_metric(c["flip_rate"], intervals.get("flip_rate"),
                                  reason=c.get("reason"))]
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
