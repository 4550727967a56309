"""Surrogate: synthetic probes; a shallow tree and a sparse linear model fitted to the model's
answers on them (see :func:`fhe_backend.audits.explain.surrogates`)."""

from __future__ import annotations

from typing import Any

from ._kind import AuditKind, Outputs, Planning, Report, Rows


def plan(p: Planning) -> list[Rows]:
    from ..auditor.probes import synthetic_rows

    n = p.synthetic_per_sample * p.benchmark.n_samples
    return [synthetic_rows(p.benchmark, p.package.manifest.input_schema, n, p.seed)]


def evaluate(out: Outputs) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    from .explain import surrogates

    manifest = out.package.manifest
    synthetic = out.decrypted.select("synthetic")
    inputs = manifest.input_schema.column_names
    probe_frame = pd.concat([pd.DataFrame([q.probe["row"] for q in synthetic.queries]),
                             out.rows.loc[out.real.sources, inputs]], ignore_index=True)
    labels = np.concatenate([synthetic.predictions, out.real.predictions])
    return surrogates(probe_frame, labels, manifest.input_schema, manifest.class_names,
                      seed=out.seed)


def summary(report: Report) -> list[str]:
    from .uncertainty import format_metric

    s = report["surrogate"]
    tree, linear = s.get("fidelity"), s.get("linear", {}).get("fidelity")
    return [f"  surrogate tree fidelity {format_metric(tree, digits=4)}, sparse linear "
            f"fidelity {format_metric(linear, digits=4)}"]


def markdown(report: Report) -> list[str]:
    from .uncertainty import format_metric

    s = report["surrogate"]
    return ["", "## Surrogates", "",
            f"- decision tree fidelity: {format_metric(s.get('fidelity'))}",
            f"- sparse linear fidelity: {format_metric(s.get('linear', {}).get('fidelity'))}"]


KIND = AuditKind(
    name="surrogate", title="Surrogate model",
    description="Surrogate: a depth-3 tree and a sparse linear model fitted to the model's "
                "answers",
    queries={"synthetic": "surrogate: synthetic probes"},
    plan=plan, evaluate=evaluate, summary=summary, markdown=markdown)
