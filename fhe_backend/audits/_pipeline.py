"""One audit, whatever its kinds: the query plan (the real samples plus every probe the chosen
kinds draw), its cost, and the results computed from the decrypted outputs joined with the
plaintext the auditor kept (labels, sensitive attributes)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..auditor.benchmarks import PlainBenchmark
from ..auditor.client import Decrypted
from ..auditor.probes import QueryPlan, check_budget, real_plan
from ..errors import AuditError, NotFoundError
from ..formats.artifacts import ModelPackage
from ..formats.layers import layers, representation_view
from ..untrusted.circuit import SimulatedCircuit
from ..untrusted.processing import processing_of
from ._kind import Outputs, Planning, labels_for, sensitive_attributes
from ._registry import AUDITS, AuditOptions
from ._representation import costs
from .explain import MIN_SAMPLES
from .metrics import classification_metrics, classification_readings
from .sampling import Simulator


def build_plan(benchmark: PlainBenchmark, package: ModelPackage, options: AuditOptions,
               simulator: Simulator | None = None, *, pilot: bool = True) -> QueryPlan:
    """Real samples plus every probe the chosen audits need; refuses plans over budget.

    Importance probes a subsample whose size a pilot on ``simulator`` (default: Concrete's
    simulator of the package's circuit) chooses; see :mod:`fhe_backend.audits.sampling`. Without the
    pilot (``pilot=False``, a quick cost estimate) every sample is probed: an upper bound."""
    if any(AUDITS[name].needs_sensitive for name in options.audits):
        sensitive_attributes(benchmark)  # refused before any query runs, not after the run
    layer_queries = 0
    if any(AUDITS[name].layers for name in options.audits):
        if not layers(package):
            raise NotFoundError(f"Model {package.model_id!r} publishes no hidden layer, which "
                                "the representation audit probes; its owner packages one with "
                                "package_model(..., representations=[...]).")
        layer_queries = benchmark.n_samples * len(layers(package))
    plan = real_plan(benchmark)
    if benchmark.sample:  # kept in the ledger: the decrypting side reports the same draw
        plan.notes["sample"] = benchmark.sample
    planning = Planning(benchmark, package, options.seed, options.permutation_repeats,
                        options.synthetic_per_sample,
                        (simulator or _simulator(package)) if pilot else None, plan.notes)
    for kind in AUDITS.values():
        if kind.name in options.audits and kind.plan is not None:
            for rows in kind.plan(planning):
                plan.extend(*rows)
    check_budget(len(plan) + layer_queries, options.budget)
    return plan


def plan_summary(plan: QueryPlan, package: ModelPackage, fhe_mode: str,
                 audits: tuple[str, ...] = ()) -> dict[str, Any]:
    """Queries per audit and the estimated FHE time, stated before anything runs; with a kind
    of ``audits`` that reads the published layers, their queries, PBS and keys too."""
    by_kind = {"samples": plan.count(None)}
    for kind in (q for audit in AUDITS.values() for q in audit.queries):
        if plan.count(kind):
            by_kind[kind] = plan.count(kind)
    per_query = package.manifest.measured.get("fhe_s_per_sample")
    estimate = per_query * len(plan) if per_query and fhe_mode == "execute" else None
    summary = {"n_queries": len(plan), "queries": by_kind, "fhe_s_per_query": per_query,
               "estimated_fhe_s": estimate, "fhe_mode": fhe_mode}
    if any(AUDITS[name].layers for name in audits if name in AUDITS):
        layer_costs = costs(package, plan.count(None))
        by_kind["representation"] = layer_costs["queries"]
        summary["n_queries"] += layer_costs["queries"]
        summary["representation"] = layer_costs
        if estimate is not None:
            summary["estimated_fhe_s"] = (None if layer_costs["estimated_fhe_s"] is None else
                                          estimate + layer_costs["estimated_fhe_s"])
    return summary


def evaluate(decrypted: Decrypted, benchmark: PlainBenchmark, package: ModelPackage,
             options: AuditOptions, activations: dict[str, Decrypted] | None = None,
             ) -> dict[str, Any]:
    """Every chosen audit's result, keyed as in the CLI's JSON; ``activations`` are the
    published layers' decrypted activations, for the kinds that read them."""
    chosen = [kind for kind in AUDITS.values() if kind.name in options.audits]
    for kind in chosen:
        if kind.queries and not any(decrypted.select(k).queries for k in kind.queries):
            raise AuditError(f"The run holds no probes for the {kind.name} audit; encrypt the "
                             f"benchmark with that audit chosen.")
        if kind.layers and not activations:
            raise AuditError(f"The {kind.name} audit reads the activations of the model's "
                             "published layers, which only the audit command encrypts, runs "
                             "and decrypts so far.")
    real = decrypted.select(None)
    y_true = labels_for(benchmark, package, real.sources)
    out: dict[str, Any] = classification_readings(y_true, real.predictions, real.scores,
                                                  package.manifest.class_names)
    out["readings"] = readings(len(real.queries), options)
    rows = benchmark.frame.set_index(benchmark.id_column, drop=False)
    rows.index = rows.index.astype(str)
    outputs = Outputs(decrypted, real, y_true, rows, benchmark, package, options.seed,
                      activations or {})
    for kind in chosen:
        if kind.evaluate is not None:
            out[kind.name] = kind.evaluate(outputs)
    return out


def readings(n_samples: int, options: AuditOptions) -> dict[str, Any]:
    """Whether the behaviour audits can say anything: below :data:`MIN_SAMPLES` real samples
    they are inconclusive (a zero effect on a few samples clears nothing and nobody)."""
    chosen = [a for a in options.audits if a in AUDITS and AUDITS[a].behaviour]
    conclusive = not chosen or n_samples >= MIN_SAMPLES
    note = ("" if conclusive else
            f"Inconclusive: {n_samples} samples is below the minimum of {MIN_SAMPLES} for the "
            f"{', '.join(chosen)} audit(s); their readings describe these samples only.")
    return {"min_samples": MIN_SAMPLES, "n_samples": n_samples, "conclusive": conclusive,
            "note": note, "seed": options.seed}


def score(decrypted: Decrypted, benchmark: PlainBenchmark, package: ModelPackage) -> dict[str, Any]:
    """Accuracy-type metrics on the real samples (probes are left out)."""
    real = decrypted.select(None)
    y_true = labels_for(benchmark, package, real.sources)
    return classification_metrics(
        y_true, real.predictions, real.scores, len(package.manifest.class_names)
    )


def _simulator(package: ModelPackage) -> Simulator:
    """Concrete's simulator of ``package``'s circuit, for the auditor's own planning."""
    return lambda plan: simulate(package, plan)


def simulate(package: ModelPackage, plan: QueryPlan) -> Decrypted:
    """Concrete's simulator of the same circuit on the same (quantized) inputs, in clear; keyless
    quantization and post-processing, as the auditor's."""
    processing = processing_of(package)
    X = package.manifest.input_schema.transform(plan.frame)
    circuit = SimulatedCircuit(package.server_zip)
    q = processing.quantize(X)
    outputs = np.concatenate([circuit.run(q[i : i + 1]) for i in range(len(q))])
    return Decrypted(list(plan.queries), processing.scores(outputs, package.manifest.output_kind),
                     notes=plan.notes)


def simulate_layer(package: ModelPackage, layer: str, benchmark: PlainBenchmark) -> Decrypted:
    """Concrete's simulator of the circuit of published ``layer`` on the real samples: their
    activations (``scores``), dequantized keylessly as the layer's auditor does."""
    view = representation_view(package, layer)
    processing = processing_of(view)
    plan = real_plan(benchmark)
    q = processing.quantize(package.manifest.input_schema.transform(plan.frame))
    circuit = SimulatedCircuit(view.server_zip)
    outputs = np.concatenate([circuit.run(q[i : i + 1]) for i in range(len(q))])
    values = np.asarray(processing.dequantize(outputs), dtype=np.float64)
    return Decrypted(list(plan.queries), values.reshape(len(values), -1), notes=plan.notes)


def simulate_predictions(package: ModelPackage, benchmark: PlainBenchmark) -> Decrypted:
    return simulate(package, real_plan(benchmark))


def clear_reference(
    reference: Decrypted, audited: Decrypted, benchmark: PlainBenchmark, package: ModelPackage,
    fhe_mode: str = "execute",
) -> dict[str, Any]:
    """Accuracy of the circuit in Concrete's simulator and, for an FHE run, its label agreement
    with the decrypted predictions, each with a Wilson interval. A simulated audit is compared
    with nothing: both sides would be the simulator, so an "agreement" would only measure its
    random noise (``compared`` says so)."""
    from .uncertainty import as_interval, wilson

    reference, audited = reference.select(None), audited.select(None)
    y_true = labels_for(benchmark, package, reference.sources)
    agreement, agreeing, compared = None, 0, "not computed: the audit itself ran in the simulator"
    paired: list[tuple[int, int]] = []
    if fhe_mode == "execute":
        by_id = dict(zip(reference.sources, reference.predictions, strict=True))
        paired = [(by_id[s], p) for s, p in zip(audited.sources, audited.predictions,
                                                strict=True) if s in by_id]
        agreeing = sum(int(a == b) for a, b in paired)
        agreement = agreeing / len(paired) if paired else None
        compared = "labels decrypted from FHE vs labels of the same circuit in the simulator"
    correct = int(np.sum(reference.predictions == y_true))
    return {
        "method": "concrete-simulation of the same circuit",
        "accuracy": correct / len(y_true) if len(y_true) else None,
        "agreement": agreement,
        "intervals": {"accuracy": as_interval(wilson(correct, len(y_true))),
                      "agreement": as_interval(wilson(agreeing, len(paired)))},
        "compared": compared,
    }
