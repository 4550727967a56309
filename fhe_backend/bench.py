"""Latency benchmark: our server path against a plain Concrete ML loop on the same ciphertexts.

Both paths evaluate the same input ciphertexts with the same deserialized evaluation keys; the
order alternates every sample so that neither benefits from a warmer cache or a quieter CPU.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .artifacts import ModelPackage, machine_info
from .auditor import Auditor, to_probabilities
from .benchmarks import PlainBenchmark
from .errors import NotFoundError
from .server import FHEServer
from .zoo import benchmarks_for, resolve_benchmark


def default_benchmark(package: ModelPackage) -> PlainBenchmark:
    fitting = benchmarks_for(package.model_id)
    if not fitting:
        raise NotFoundError(f"No zoo benchmark fits model {package.model_id!r}; pass --benchmark.")
    return resolve_benchmark(fitting[0])


def bench_model(package: ModelPackage, benchmark: PlainBenchmark, limit: int = 5) -> dict[str, Any]:
    from concrete.ml.deployment import FHEModelServer

    bench = benchmark.head(limit)
    X = package.manifest.input_schema.transform(bench.frame)
    y = bench.labels(package.manifest.class_names)
    with tempfile.TemporaryDirectory() as tmp:
        auditor = Auditor(package, Path(tmp) / "keys")
        start = time.perf_counter()
        raw_keys = auditor.keygen()
        keygen_s = time.perf_counter() - start
        ciphertexts = [auditor.encrypt_array(X[i : i + 1]) for i in range(len(X))]

        ours = FHEServer(package)
        keys = ours.load_keys(raw_keys)
        ours.circuit  # noqa: B018 - compile before timing, as a long-running server would
        raw = FHEModelServer(str(package.path))
        ours_s, raw_s, outputs = [], [], []
        for i, ciphertext in enumerate(ciphertexts):
            order = ("ours", "raw") if i % 2 == 0 else ("raw", "ours")
            for which in order:
                start = time.perf_counter()
                if which == "ours":
                    outputs.append(ours.circuit.run(ciphertext, keys))
                    ours_s.append(time.perf_counter() - start)
                else:
                    raw.run(ciphertext, keys)
                    raw_s.append(time.perf_counter() - start)
        decrypted = np.concatenate(
            [auditor.client.deserialize_decrypt_dequantize(o) for o in outputs])
    predictions = np.argmax(to_probabilities(decrypted, package.manifest.output_kind), axis=1)
    ours_mean, raw_mean = float(np.mean(ours_s)), float(np.mean(raw_s))
    return {
        "model": package.model_id,
        "benchmark": bench.benchmark_id,
        "fhe_mode": "execute",
        "n_samples": len(ciphertexts),
        "ours_s_per_sample": ours_mean,
        "raw_s_per_sample": raw_mean,
        "ratio": ours_mean / raw_mean if raw_mean else None,
        "keygen_s": keygen_s,
        "evaluation_keys_bytes": len(raw_keys),
        "input_bytes_per_sample": int(np.mean([len(c) for c in ciphertexts])),
        "pbs_count": package.manifest.circuit.get("pbs_count"),
        "accuracy_float": package.manifest.metrics.get("accuracy_float"),
        "accuracy_fhe": float(np.mean(predictions == y)),
        "machine": machine_info(),
    }


TABLE_COLUMNS = (
    ("model", "model", "{}"),
    ("float acc.", "accuracy_float", "{:.3f}"),
    ("FHE acc. (n)", None, None),
    ("s/sample", "ours_s_per_sample", "{:.3f}"),
    ("plain CML s/sample", "raw_s_per_sample", "{:.3f}"),
    ("eval. keys MB", "evaluation_keys_bytes", None),
    ("input B/sample", "input_bytes_per_sample", "{}"),
    ("PBS", "pbs_count", "{}"),
)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The README's figures table, exactly as measured."""
    lines = ["| " + " | ".join(c[0] for c in TABLE_COLUMNS) + " |",
             "|" + "---|" * len(TABLE_COLUMNS)]
    for row in rows:
        cells = []
        for _, key, fmt in TABLE_COLUMNS:
            if key is None:
                cells.append(f"{row['accuracy_fhe']:.3f} ({row['n_samples']})")
            elif key == "evaluation_keys_bytes":
                cells.append(f"{row[key] / 1e6:.2f}")
            else:
                value = row.get(key)
                cells.append("n/a" if value is None else fmt.format(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
