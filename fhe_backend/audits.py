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
    y_true = labels_for(benchmark, package, decrypted.sample_ids)
    return classification_metrics(
        y_true, decrypted.predictions, decrypted.scores, len(package.manifest.class_names)
    )


def simulate_predictions(auditor: Auditor, benchmark: PlainBenchmark) -> Decrypted:
    """Concrete's simulator of the same circuit on the same (quantized) inputs, in clear."""
    package = auditor.package
    X = package.manifest.input_schema.transform(benchmark.frame)
    circuit = SimulatedCircuit(package.server_zip)
    q = auditor.quantize(X)
    outputs = np.concatenate([circuit.run(q[i : i + 1]) for i in range(len(q))])
    scores = auditor.dequantize(outputs)
    return Decrypted(benchmark.sample_ids(), scores, np.argmax(scores, axis=1), [])


def clear_reference(
    reference: Decrypted, audited: Decrypted, benchmark: PlainBenchmark, package: ModelPackage
) -> dict[str, Any]:
    """Accuracy of the circuit in clear and its label agreement with the audited predictions."""
    y_true = labels_for(benchmark, package, reference.sample_ids)
    by_id = dict(zip(reference.sample_ids, reference.predictions, strict=True))
    paired = [(by_id[s], p) for s, p in zip(audited.sample_ids, audited.predictions, strict=True)
              if s in by_id]
    agreement = float(np.mean([a == b for a, b in paired])) if paired else None
    return {
        "method": "concrete-simulation of the same circuit",
        "accuracy": float(np.mean(reference.predictions == y_true)) if len(y_true) else None,
        "agreement": agreement,
    }
