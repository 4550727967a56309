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
    s = report["surrogate"]
    linear = s.get("linear", {})
    return [f"  surrogate tree fidelity {_fidelity(s, 4)}, sparse linear fidelity "
            f"{_fidelity(linear, 4)}"]


def _fidelity(surrogate: dict[str, Any], digits: int = 3) -> str:
    from .uncertainty import format_metric

    return format_metric(surrogate.get("fidelity"),
                         surrogate.get("intervals", {}).get("fidelity"), digits=digits,
                         reason=surrogate.get("note"))


def markdown(report: Report) -> list[str]:
    s = report["surrogate"]
    lines = ["", "## Surrogates", "",
             f"- decision tree fidelity: {_fidelity(s)}",
             f"- sparse linear fidelity: {_fidelity(s.get('linear', {}))}"]
    if s.get("n_held_out"):
        lines.append(f"- fidelity is agreement with the model on {s['n_held_out']} held-out "
                     "probes; 95% Wilson intervals")
    return lines


KIND = AuditKind(
    name="surrogate", title="Surrogate model",
    description="Surrogate: a depth-3 tree and a sparse linear model fitted to the model's "
                "answers",
    queries={"synthetic": "surrogate: synthetic probes"},
    plan=plan, evaluate=evaluate, summary=summary, markdown=markdown)
