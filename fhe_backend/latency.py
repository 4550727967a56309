"""Benchmarks of the server role, on ciphertexts encrypted for the occasion.

Latency: our server path against a plain Concrete ML loop. Both paths evaluate the same input
ciphertexts with the same deserialized evaluation keys; the order alternates every sample so
that neither benefits from a warmer cache or a quieter CPU.

Scaling: throughput of whole runs on Dask, 1 worker against several, and several OpenMP threads
in one worker against as many single-threaded workers.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .auditor.benchmarks import PlainBenchmark
from .auditor.client import Auditor
from .errors import AuditError, NotFoundError
from .formats.artifacts import ModelPackage, RunResult, machine_info
from .hub.references import resolve_benchmark
from .hub.zoo import benchmarks_for
from .server.run import Executor, FHEServer


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
        keys = ours.load_keys(raw_keys)  # vets the circuit (allow-list, sandboxed compile) first
        # The reference loads server.zip as stock Concrete ML does (jsonpickle, in-process
        # compile): only after the same bytes passed the checks above.
        raw = FHEModelServer(str(package.path))
        # Warm both paths up, untimed: the first evaluation with a key set prepares the keys
        # (shared by both paths), which would otherwise be charged to whichever runs first.
        ours.circuit.run(ciphertexts[0], keys)
        raw.run(ciphertexts[0], keys)
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
        scores = np.concatenate([auditor.decrypt_output(o) for o in outputs])
    predictions = np.argmax(scores, axis=1)
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


def bench_scaling(package: ModelPackage, benchmark: PlainBenchmark, limit: int, *,
                  scheduler: str | None = None, workers: int = 2) -> dict[str, Any]:
    """Samples per second of full runs on Dask, one task thread per worker.

    With ``scheduler``: 1 worker of that cluster, then all of them. Otherwise on local worker
    processes: 1 worker, ``workers`` workers, and 1 worker with ``workers`` OpenMP threads (what
    Concrete's own parallelism gives with the same cores). Each run is timed end to end, from
    sending the model and keys to the last committed output. The runs' outputs are compared as
    bytes and decrypted.
    """
    from .server.distributed import DaskExecutor, connect, local_cluster

    if not scheduler and workers < 2:
        raise AuditError("Measuring scaling needs at least 2 workers.")
    # Other work on the machine skews throughput: the load before we start goes with the figures.
    load = os.getloadavg()[0]
    bench = benchmark.head(limit)
    with tempfile.TemporaryDirectory() as tmp:
        auditor = Auditor(package, Path(tmp) / "keys")
        encrypted = auditor.encrypt(bench, Path(tmp) / "encrypted")
        runs: list[tuple[dict[str, Any], RunResult]] = []

        def measure(executor: Executor, n_workers: int, omp_threads: list[str]) -> None:
            start = time.perf_counter()
            run = FHEServer(package).run(encrypted, Path(tmp) / f"run{len(runs)}",
                                         executor=executor)
            wall = time.perf_counter() - start
            runs.append(({"workers": n_workers, "omp_threads": ",".join(omp_threads),
                          "wall_s": wall, "samples_per_s": bench.n_samples / wall}, run))

        if scheduler:
            with connect(scheduler) as client:
                omp = client.run(_prepare_worker)
            addresses = sorted(omp)
            if len(addresses) < 2:
                raise AuditError(f"The Dask cluster at {scheduler} has {len(addresses)} worker(s); "
                                 "measuring scaling needs at least 2.")
            for chosen in ([addresses[0]], addresses):
                measure(DaskExecutor(scheduler, only=tuple(chosen)), len(chosen),
                        sorted({omp[a] for a in chosen}))
        else:
            for n_workers, omp_threads in ((1, 1), (workers, 1), (1, workers)):
                with local_cluster(n_workers, omp_threads) as address:
                    with connect(address) as client:
                        client.run(_prepare_worker)
                    measure(DaskExecutor(address), n_workers, [str(omp_threads)])
        scores = [auditor.decrypt(run).scores for _, run in runs]
    rows = [row for row, _ in runs]
    return {
        "model": package.model_id,
        "benchmark": bench.benchmark_id,
        "n_samples": bench.n_samples,
        "scheduler": scheduler,
        "runs": rows,
        "scaling_ratio": rows[1]["samples_per_s"] / rows[0]["samples_per_s"],
        # Bytes can differ between processes for circuits with PBS (see the README), the
        # decrypted values must not.
        "outputs_identical": len({run.transcript.outputs_sha256 for _, run in runs}) == 1,
        "decrypted_identical": all(np.array_equal(scores[0], other) for other in scores[1:]),
        "machine": machine_info(),
        "load_average_1m": load,
    }


def _prepare_worker() -> str:
    """On each worker before timing: pay Concrete's import (seconds) and report the OpenMP
    threads its environment gives Concrete (unset: OpenMP uses every core)."""
    import concrete.fhe  # noqa: F401

    return os.environ.get("OMP_NUM_THREADS", "unset")


def scaling_table(result: dict[str, Any]) -> str:
    lines = ["| workers | OpenMP threads per worker | samples/s | wall s |", "|---|---|---|---|"]
    lines += [f"| {r['workers']} | {r['omp_threads']} | {r['samples_per_s']:.3f} | "
              f"{r['wall_s']:.1f} |" for r in result["runs"]]
    lines.append(f"\nscaling ratio ({result['runs'][1]['workers']} workers / 1): "
                 f"{result['scaling_ratio']:.2f}; outputs identical: "
                 f"{result['outputs_identical']}, decrypted identical: "
                 f"{result['decrypted_identical']}; load average before: "
                 f"{result['load_average_1m']:.2f}")
    return "\n".join(lines)


def bench_sealed(package: ModelPackage, limit: int | None = None, record: bool = False,
                 ) -> dict[str, Any]:
    """The sealed module in real FHE on ``limit`` batches (at least 2, default 2) of the
    model's zoo benchmark, after one untimed warm-up batch: keygen, ``count`` per batch, each
    ``add`` of the chain, against the plain circuit's figures. ``record`` writes the per-batch
    time into the manifest's ``sealed.measured`` (not covered by the fingerprint), which the
    Space's and the CLI's estimates read."""
    from .auditor.sealed import SealedAuditor
    from .formats.bundle import pack_values
    from .sealed.circuit import ADD, COUNT, has_sealed, sealed_view
    from .untrusted.circuit import FHECircuit, load_evaluation_keys

    entry = package.manifest.sealed
    row: dict[str, Any] = {"model": package.model_id,
                           "plain_pbs_per_sample": package.manifest.circuit.get("pbs_count")}
    if not has_sealed(package):
        row["refused"] = entry.get("refused") or "no sealed circuit was built"
        return row
    bench = default_benchmark(package)
    plain = bench_model(package, bench, limit=3)
    n_batches = max(2, limit or 2)
    server_zip = sealed_view(package).server_zip
    with tempfile.TemporaryDirectory() as tmp:
        auditor = SealedAuditor(package, Path(tmp) / "keys")
        start = time.perf_counter()
        raw_keys = auditor.keygen()
        keys = load_evaluation_keys(raw_keys, server_zip)
        keygen_s = time.perf_counter() - start
        B = auditor.layout.batch_size
        sample = bench.head(min(bench.n_samples, B * (n_batches + 1)))
        rows = auditor.encrypt(sample, Path(tmp) / "enc").ciphertexts()
        circuit = FHECircuit(server_zip)
        circuit.run(rows[0][1], keys, function=COUNT)  # warm-up
        counts, adds, outputs = [], [], []
        for _, blob in rows[1:n_batches + 1]:
            start = time.perf_counter()
            outputs.append(circuit.run(blob, keys, function=COUNT))
            counts.append(time.perf_counter() - start)
        total = outputs[0]
        for output in outputs[1:]:
            start = time.perf_counter()
            total = circuit.run(pack_values([total, output]), keys, function=ADD)
            adds.append(time.perf_counter() - start)
    count_s, add_s = float(np.mean(counts)), float(np.mean(adds)) if adds else 0.0
    row.update({
        "sealed_pbs": entry.get("pbs"),
        "sealed_pbs_per_sample": entry.get("pbs_per_sample"),
        "batch_size": B, "n_batches_timed": len(counts),
        "count_s_per_batch": count_s, "add_s": add_s, "fhe_s_per_batch": count_s + add_s,
        "sealed_s_per_sample": (count_s + add_s) / B,
        "plain_s_per_sample": plain["ours_s_per_sample"],
        "sealed_keygen_s": keygen_s, "plain_keygen_s": plain["keygen_s"],
        "sealed_evaluation_keys_bytes": len(raw_keys),
        "plain_evaluation_keys_bytes": plain["evaluation_keys_bytes"],
        "machine": plain["machine"],
    })
    if record:
        from .formats.artifacts import MANIFEST, now_iso, write_json

        entry["measured"] = {k: row[k] for k in (
            "fhe_s_per_batch", "count_s_per_batch", "add_s", "n_batches_timed", "sealed_keygen_s",
            "sealed_evaluation_keys_bytes", "machine")} | {"measured_at": now_iso()}
        write_json(package.path / MANIFEST, package.manifest.to_dict())
    return row


def sealed_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | PBS/sample plain | PBS/sample sealed (count + add) | s/sample plain | "
             "s/batch sealed (count + add) | keygen s plain / sealed | sealed keys |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "refused" in r:
            lines.append(f"| {r['model']} | {r['plain_pbs_per_sample']} | no sealed circuit: "
                         f"{r['refused']} | | | | |")
            continue
        lines.append(f"| {r['model']} | {r['plain_pbs_per_sample']} | "
                     f"{r['sealed_pbs_per_sample']:g} | {r['plain_s_per_sample']:.3f} | "
                     f"{r['count_s_per_batch']:.2f} + {r['add_s']:.2f} | "
                     f"{r['plain_keygen_s']:.1f} / {r['sealed_keygen_s']:.1f} | "
                     f"{r['sealed_evaluation_keys_bytes'] / 1e6:.0f} MB |")
    machine = next((r["machine"] for r in rows if "machine" in r), None)
    return "\n".join(lines) + (f"\n\nmachine: {machine}" if machine else "")


def bench_sealed_leak(package: ModelPackage, benchmark: PlainBenchmark,
                      limit: int | None = None) -> dict[str, Any]:
    """The threat table's figures for one benchmark: the model's predictions (Concrete's
    simulator of its per-sample circuit, no encryption) go through the sealed circuit's layout
    (the package's, else the zoo's default), grouped by the benchmark's first sensitive column
    when the circuit has room for its groups. See :mod:`fhe_backend.sealed.leak`."""
    from .auditor.sealed import default_group_column, group_codes
    from .audits._pipeline import simulate_predictions
    from .errors import SchemaError
    from .sealed.circuit import DEFAULT_BATCH_SIZE, DEFAULT_GROUPS, SealedLayout, has_sealed
    from .sealed.leak import leak_report

    if len(package.manifest.class_names) != 2:
        raise AuditError(f"Sealed audits count binary decisions; {package.model_id!r} has "
                         f"{len(package.manifest.class_names)} classes, so it has no sealed leak "
                         "to emulate.")
    layout = (SealedLayout.from_dict(package.manifest.sealed) if has_sealed(package)
              else SealedLayout.make(DEFAULT_BATCH_SIZE, DEFAULT_GROUPS, [], {}))
    benchmark = benchmark.head(limit)
    decrypted = simulate_predictions(package, benchmark)
    labels = benchmark.labels(package.manifest.class_names)
    column = default_group_column(benchmark)
    try:
        groups, names = group_codes(benchmark, column, layout.n_groups)
    except SchemaError:  # more groups than counters: the auditor would encrypt one group
        (groups, names), column = group_codes(benchmark, None, layout.n_groups), None
    report = leak_report(layout, np.asarray(decrypted.predictions), labels, groups)
    return {"model": package.model_id, "benchmark": benchmark.benchmark_id,
            "group_column": column, "groups": names,
            "predictions": "Concrete's simulator of the per-sample circuit", **report}
