"""Audits on the auditor's side: which queries each audit needs, and the results computed from
decrypted outputs joined with the plaintext the auditor kept (labels, sensitive attributes).

    accuracy        the real samples; scikit-learn metrics
    fairness        the real samples + sensitive attributes; fairlearn metrics per group
    counterfactual  one probe per sample and other value of each sensitive attribute
    importance      occlusion (one probe per sample and input column) and permutation
    surrogate       synthetic probes; a shallow tree and a sparse linear model fitted to them
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .artifacts import ModelPackage
from .auditor import Decrypted
from .benchmarks import PlainBenchmark
from .circuit import SimulatedCircuit
from .errors import AuditError, SchemaError
from .explain import MIN_SAMPLES, counterfactual, occlusion, permutation, surrogates
from .fairness import group_fairness
from .metrics import classification_metrics, classification_readings
from .probes import (
    QueryPlan,
    baseline,
    check_budget,
    counterfactual_rows,
    occlusion_rows,
    permutation_rows,
    real_plan,
    synthetic_rows,
)
from .processing import processing_of
from .sampling import Simulator, choose_subsample, per_feature, reached, subset

AUDITS = ("accuracy", "fairness", "counterfactual", "importance", "surrogate")
BEHAVIOUR = ("fairness", "counterfactual", "importance", "surrogate")
DEFAULT_SEED = 0
PROBES = {"counterfactual": ("counterfactual",), "importance": ("occlusion", "permutation"),
          "surrogate": ("synthetic",)}


@dataclass(frozen=True)
class AuditOptions:
    audits: tuple[str, ...] = ("accuracy",)
    budget: int | None = None  # most FHE queries the auditor is willing to pay for
    permutation_repeats: int = 1
    synthetic_per_sample: int = 2  # surrogate probes per real sample
    seed: int = DEFAULT_SEED  # permutations and synthetic probes; recorded in the report

    @classmethod
    def parse(cls, audits: str | list[str] | tuple[str, ...], budget: int | None = None,
              seed: int = DEFAULT_SEED) -> AuditOptions:
        names = [a.strip() for a in (audits.split(",") if isinstance(audits, str) else audits)]
        unknown = [a for a in names if a not in AUDITS]
        if unknown:
            raise AuditError(f"Unknown audit(s) {', '.join(unknown)}; choose from "
                             f"{', '.join(AUDITS)}.")
        return cls(audits=tuple(dict.fromkeys(["accuracy", *filter(None, names)])), budget=budget,
                   seed=seed)


def sensitive_attributes(benchmark: PlainBenchmark) -> list[str]:
    if not benchmark.sensitive_columns:
        raise AuditError(f"Benchmark {benchmark.benchmark_id!r} has no sensitive attributes; "
                         "fairness and counterfactual audits need some.")
    return benchmark.sensitive_columns


def probed_columns(benchmark: PlainBenchmark, package: ModelPackage) -> list[str]:
    """The model's input columns, plus the sensitive attributes it may not take: occluding
    one of those must change nothing, which is itself a finding worth showing."""
    inputs = package.manifest.input_schema.column_names
    return inputs + [c for c in benchmark.sensitive_columns if c not in inputs]


def build_plan(benchmark: PlainBenchmark, package: ModelPackage, options: AuditOptions,
               simulator: Simulator | None = None, *, pilot: bool = True) -> QueryPlan:
    """Real samples plus every probe the chosen audits need; refuses plans over budget.

    Importance probes a subsample whose size a pilot on ``simulator`` (default: Concrete's
    simulator of the package's circuit) chooses; see :mod:`fhe_backend.sampling`. Without the
    pilot (``pilot=False``, a quick cost estimate) every sample is probed: an upper bound."""
    schema = package.manifest.input_schema
    plan = real_plan(benchmark)
    if "counterfactual" in options.audits:
        for attribute in sensitive_attributes(benchmark):
            plan.extend(*counterfactual_rows(benchmark, schema, attribute))
    if "importance" in options.audits:
        columns = probed_columns(benchmark, package)
        ids, record = choose_subsample(
            benchmark, columns, options.permutation_repeats, options.seed,
            lambda ids: labels_for(benchmark, package, ids),
            (simulator or _simulator(package)) if pilot else None)
        probed = subset(benchmark, ids)  # the baseline stays the whole benchmark's
        plan.extend(*occlusion_rows(probed, columns, baseline(benchmark.frame, columns)))
        plan.extend(*permutation_rows(probed, columns, options.permutation_repeats,
                                      options.seed))
        plan.notes["importance_sampling"] = record
    if "surrogate" in options.audits:
        n = options.synthetic_per_sample * benchmark.n_samples
        plan.extend(*synthetic_rows(benchmark, schema, n, options.seed))
    check_budget(len(plan), options.budget)
    return plan


def plan_summary(plan: QueryPlan, package: ModelPackage, fhe_mode: str) -> dict[str, Any]:
    """Queries per audit and the estimated FHE time, stated before anything runs."""
    by_kind = {"samples": plan.count(None)}
    for kind in ("counterfactual", "occlusion", "permutation", "synthetic"):
        if plan.count(kind):
            by_kind[kind] = plan.count(kind)
    per_query = package.manifest.measured.get("fhe_s_per_sample")
    estimate = per_query * len(plan) if per_query and fhe_mode == "execute" else None
    return {"n_queries": len(plan), "queries": by_kind, "fhe_s_per_query": per_query,
            "estimated_fhe_s": estimate, "fhe_mode": fhe_mode}


def evaluate(decrypted: Decrypted, benchmark: PlainBenchmark, package: ModelPackage,
             options: AuditOptions) -> dict[str, Any]:
    """Every chosen audit's result, keyed as in the CLI's JSON."""
    manifest = package.manifest
    for audit, kinds in PROBES.items():
        if audit in options.audits and not any(decrypted.select(k).queries for k in kinds):
            raise AuditError(f"The run holds no probes for the {audit} audit; encrypt the "
                             f"benchmark with that audit chosen.")
    real = decrypted.select(None)
    y_true = labels_for(benchmark, package, real.sources)
    out: dict[str, Any] = classification_readings(y_true, real.predictions, real.scores,
                                                  manifest.class_names)
    out["readings"] = readings(len(real.queries), options)
    rows = benchmark.frame.set_index(benchmark.id_column, drop=False)
    rows.index = rows.index.astype(str)
    if "fairness" in options.audits:
        positive = 1 if len(manifest.class_names) == 2 else int(np.bincount(y_true).argmax())
        out["fairness"] = {
            attribute: {**group_fairness(y_true, real.predictions,
                                         rows.loc[real.sources, attribute], positive),
                        "positive_class": manifest.class_names[positive]}
            for attribute in sensitive_attributes(benchmark)
        }
    if "counterfactual" in options.audits:
        out["counterfactual"] = counterfactual(real, decrypted.select("counterfactual"))
    columns = probed_columns(benchmark, package)
    if "importance" in options.audits:
        out["importance"] = occlusion(real, decrypted.select("occlusion"), columns)
        out["importance"]["permutation"] = permutation(
            real, decrypted.select("permutation"), y_true, columns)
        out["importance"]["sampling"] = {
            **(decrypted.notes.get("importance_sampling") or {}),
            "reached": reached(per_feature(real, decrypted, y_true, columns))}
    if "surrogate" in options.audits:
        synthetic = decrypted.select("synthetic")
        inputs = manifest.input_schema.column_names
        probe_frame = pd.concat([pd.DataFrame([q.probe["row"] for q in synthetic.queries]),
                                 rows.loc[real.sources, inputs]], ignore_index=True)
        labels = np.concatenate([synthetic.predictions, real.predictions])
        out["surrogate"] = surrogates(probe_frame, labels, manifest.input_schema,
                                      manifest.class_names, seed=options.seed)
    return out


def readings(n_samples: int, options: AuditOptions) -> dict[str, Any]:
    """Whether the behaviour audits can say anything: below :data:`MIN_SAMPLES` real samples
    they are inconclusive (a zero effect on a few samples clears nothing and nobody)."""
    chosen = [a for a in options.audits if a in BEHAVIOUR]
    conclusive = not chosen or n_samples >= MIN_SAMPLES
    note = ("" if conclusive else
            f"Inconclusive: {n_samples} samples is below the minimum of {MIN_SAMPLES} for the "
            f"{', '.join(chosen)} audit(s); their readings describe these samples only.")
    return {"min_samples": MIN_SAMPLES, "n_samples": n_samples, "conclusive": conclusive,
            "note": note, "seed": options.seed}


def labels_for(benchmark: PlainBenchmark, package: ModelPackage, ids: list[str]) -> np.ndarray:
    """Class indices of the benchmark's labels, in the order of ``ids``."""
    labels = benchmark.labels(package.manifest.class_names)
    index = {sample_id: i for i, sample_id in enumerate(benchmark.sample_ids())}
    missing = [s for s in ids if s not in index]
    if missing:
        raise SchemaError(
            f"Benchmark {benchmark.benchmark_id!r} has no sample(s) {', '.join(missing[:3])}: "
            "it is not the benchmark this run was encrypted from."
        )
    return labels[[index[s] for s in ids]]


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


def simulate_predictions(package: ModelPackage, benchmark: PlainBenchmark) -> Decrypted:
    return simulate(package, real_plan(benchmark))


def clear_reference(
    reference: Decrypted, audited: Decrypted, benchmark: PlainBenchmark, package: ModelPackage,
    fhe_mode: str = "execute",
) -> dict[str, Any]:
    """Accuracy of the circuit in Concrete's simulator and, for an FHE run, its label agreement
    with the decrypted predictions. A simulated audit is compared with nothing: both sides
    would be the simulator, so an "agreement" would only measure its random noise."""
    reference, audited = reference.select(None), audited.select(None)
    y_true = labels_for(benchmark, package, reference.sources)
    agreement, compared = None, "not computed: the audit itself ran in the simulator"
    if fhe_mode == "execute":
        by_id = dict(zip(reference.sources, reference.predictions, strict=True))
        paired = [(by_id[s], p) for s, p in zip(audited.sources, audited.predictions,
                                                strict=True) if s in by_id]
        agreement = float(np.mean([a == b for a, b in paired])) if paired else None
        compared = "labels decrypted from FHE vs labels of the same circuit in the simulator"
    return {
        "method": "concrete-simulation of the same circuit",
        "accuracy": float(np.mean(reference.predictions == y_true)) if len(y_true) else None,
        "agreement": agreement,
        "compared": compared,
    }
