"""Audit computations on the auditor's side, from decrypted outputs and the kept labels.

Accuracy-type metrics today; fairness, counterfactual probes and importance fit here later,
since they also only need decrypted predictions joined with the auditor's plaintext.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .artifacts import ModelPackage
from .auditor import Auditor, Decrypted
from .benchmarks import PlainBenchmark
from .circuit import SimulatedCircuit
from .errors import SchemaError
from .metrics import classification_metrics
from .probes import QueryPlan, real_plan


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


def simulate(auditor: Auditor, plan: QueryPlan) -> Decrypted:
    """Concrete's simulator of the same circuit on the same (quantized) inputs, in clear."""
    X = auditor.package.manifest.input_schema.transform(plan.frame)
    circuit = SimulatedCircuit(auditor.package.server_zip)
    q = auditor.quantize(X)
    outputs = np.concatenate([circuit.run(q[i : i + 1]) for i in range(len(q))])
    return Decrypted(list(plan.queries), auditor.dequantize(outputs))


def simulate_predictions(auditor: Auditor, benchmark: PlainBenchmark) -> Decrypted:
    return simulate(auditor, real_plan(benchmark))


def clear_reference(
    reference: Decrypted, audited: Decrypted, benchmark: PlainBenchmark, package: ModelPackage
) -> dict[str, Any]:
    """Accuracy of the circuit in clear and its label agreement with the audited predictions."""
    reference, audited = reference.select(None), audited.select(None)
    y_true = labels_for(benchmark, package, reference.sources)
    by_id = dict(zip(reference.sources, reference.predictions, strict=True))
    paired = [(by_id[s], p) for s, p in zip(audited.sources, audited.predictions, strict=True)
              if s in by_id]
    agreement = float(np.mean([a == b for a, b in paired])) if paired else None
    return {
        "method": "concrete-simulation of the same circuit",
        "accuracy": float(np.mean(reference.predictions == y_true)) if len(y_true) else None,
        "agreement": agreement,
    }
