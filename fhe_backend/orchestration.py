"""Orchestration of one audit: every role in turn, for the `audit` command, API and Space.

In real use the model owner, the auditor and the server are different parties on different
machines; here one process plays all three, so it necessarily holds the secret key. The roles
still only talk through the public artifacts (model package, encrypted benchmark, run folder),
exactly as they would across machines.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import modes
from .auditor.benchmarks import PlainBenchmark
from .auditor.client import Auditor, Decrypted, DemoKeys
from .auditor.probes import QueryPlan, real_plan
from .auditor.subsample import DEFAULT_METHOD, draw, strata_for
from .audits import (
    AUDITS,
    DEFAULT_SEED,
    AuditOptions,
    build_plan,
    clear_reference,
    evaluate,
    plan_summary,
    simulate,
    simulate_layer,
)
from .errors import AuditError, MismatchError, SchemaError
from .formats.artifacts import ModelPackage, RunResult, installed_versions
from .hub.references import resolve_benchmark, resolve_model
from .server.run import FHEServer

if TYPE_CHECKING:
    from .server.privacy import PrivateCounts

# stage, done, total: stages are keygen, encrypt, run, decrypt, reference
StageProgress = Callable[[str, int, int], None]


@dataclass
class AuditOutcome:
    """The CLI's JSON object plus the artifacts' locations and a ciphertext preview."""

    report: dict[str, Any]
    encrypted_dir: Path | None
    run_dir: Path | None
    first_ciphertext_hex: str = ""
    decrypted: Decrypted | None = None  # every output, decrypted; None for a sealed audit


def check_fit(package: ModelPackage, benchmark: PlainBenchmark) -> None:
    """A benchmark declares which models it fits; the input schema must also match."""
    if benchmark.fits_models and package.model_id not in benchmark.fits_models:
        raise MismatchError(
            f"Benchmark {benchmark.benchmark_id!r} is not meant for model {package.model_id!r} "
            f"(it fits {', '.join(benchmark.fits_models)})."
        )
    package.manifest.input_schema.validate_frame(benchmark.frame)
    benchmark.labels(package.manifest.class_names)


def _resolve(model: str | ModelPackage, benchmark: str | PlainBenchmark,
             ) -> tuple[ModelPackage, PlainBenchmark]:
    package = resolve_model(model) if isinstance(model, str) else model
    bench = resolve_benchmark(benchmark) if isinstance(benchmark, str) else benchmark
    check_fit(package, bench)
    return package, bench


def _prepare(
    model: str | ModelPackage, benchmark: str | PlainBenchmark, limit: int | None,
    audits: str | list[str] | AuditOptions, budget: int | None, seed: int = DEFAULT_SEED,
    pilot: bool = True, sample: str = DEFAULT_METHOD,
) -> tuple[ModelPackage, PlainBenchmark, AuditOptions, QueryPlan]:
    package, bench = _resolve(model, benchmark)
    options = (audits if isinstance(audits, AuditOptions)
               else AuditOptions.parse(audits, budget, seed))
    bench = draw(bench, limit, method=sample, seed=options.seed,
                 by=strata_for(bench, options.audits))
    return package, bench, options, build_plan(bench, package, options, pilot=pilot)


def plan_audit(
    model: str | ModelPackage,
    benchmark: str | PlainBenchmark,
    *,
    fhe_mode: str = "execute",
    limit: int | None = None,
    audits: str | list[str] | AuditOptions = "accuracy",
    budget: int | None = None,
    sample: str = DEFAULT_METHOD,
) -> dict[str, Any]:
    """What an audit would cost (FHE queries per audit, estimated seconds), without running.

    Quick: the importance pilot is not run, so its queries are an upper bound (every sample)."""
    package, _, options, plan = _prepare(model, benchmark, limit, audits, budget, pilot=False,
                                         sample=sample)
    return plan_summary(plan, package, fhe_mode, options.audits)


def run_audit(
    model: str | ModelPackage,
    benchmark: str | PlainBenchmark,
    *,
    fhe_mode: str = "execute",
    limit: int | None = None,
    audits: str | list[str] | AuditOptions = "accuracy",
    budget: int | None = None,
    out_dir: Path | None = None,
    progress: StageProgress | None = None,
    on_plan: Callable[[dict[str, Any]], None] | None = None,
    seed: int = DEFAULT_SEED,
    sample: str = DEFAULT_METHOD,
) -> AuditOutcome:
    """Keygen, encrypt, run, decrypt and audit; ``simulate`` skips the cryptography;
    ``sealed`` runs the model's sealed circuit and decrypts only counts
    (:func:`run_sealed_audit`; the outcome then has no ciphertext preview of outputs).

    ``limit`` samples are drawn by ``sample`` (see :mod:`fhe_backend.auditor.subsample`).
    ``on_plan`` receives the number of FHE queries and the estimated time before anything runs.
    """
    if modes.get(fhe_mode).name == modes.SEALED:
        return _sealed_outcome(model, benchmark, limit=limit, audits=audits, out_dir=out_dir,
                               progress=progress, on_plan=on_plan, sample=sample, seed=seed)
    package, bench, options, plan = _prepare(model, benchmark, limit, audits, budget, seed,
                                             sample=sample)
    summary = plan_summary(plan, package, fhe_mode, options.audits)
    if on_plan:
        on_plan(summary)
    report_progress = progress or (lambda stage, done, total: None)

    timing: dict[str, float | None] = dict.fromkeys(
        ("keygen_s", "encrypt_s", "run_s", "decrypt_s", "fhe_s_per_sample"))
    sizes: dict[str, int | None] = dict.fromkeys(
        ("evaluation_keys_bytes", "input_bytes_per_sample", "output_bytes_per_sample"))
    transcript: dict[str, Any] = {"model_fingerprint": package.fingerprint,
                                  "inputs_sha256": None, "evaluation_keys_sha256": None,
                                  "outputs_sha256": None, "versions": installed_versions()}
    encrypted_dir = run_dir = None
    preview = ""
    work = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="fhe-audit-"))

    with DemoKeys() as keys_dir:
        auditor = Auditor(package, keys_dir)
        if fhe_mode == "execute":
            encrypted_dir, run_dir = work / "encrypted", work / "run"
            report_progress("keygen", 0, 1)
            start = time.perf_counter()
            evaluation_keys = auditor.keygen()
            timing["keygen_s"] = time.perf_counter() - start
            report_progress("keygen", 1, 1)

            start = time.perf_counter()
            encrypted = auditor.encrypt(
                bench, encrypted_dir, plan=plan,
                progress=lambda d, t, _id: report_progress("encrypt", d, t))
            timing["encrypt_s"] = time.perf_counter() - start
            rows = encrypted.ciphertexts()
            preview = rows[0][1][:64].hex() if rows else ""

            start = time.perf_counter()
            run: RunResult = FHEServer(package).run(
                encrypted, run_dir, progress=lambda d, t, _r: report_progress("run", d, t))
            timing["run_s"] = time.perf_counter() - start
            timing["fhe_s_per_sample"] = run.transcript.fhe_s_per_sample

            report_progress("decrypt", 0, 1)
            start = time.perf_counter()
            audited = auditor.decrypt(run, bench)
            timing["decrypt_s"] = time.perf_counter() - start
            report_progress("decrypt", 1, 1)

            outputs = run.outputs()
            sizes.update(
                evaluation_keys_bytes=len(evaluation_keys),
                input_bytes_per_sample=_mean_len(rows),
                output_bytes_per_sample=_mean_len(outputs),
            )
            t = run.transcript
            transcript.update(inputs_sha256=t.inputs_sha256,
                              evaluation_keys_sha256=t.evaluation_keys_sha256,
                              outputs_sha256=t.outputs_sha256, versions=t.versions)
            n_failed = t.n_failed
        else:
            auditor.check_range(bench.frame)  # as encryption would: refuse, never clip
            report_progress("run", 0, len(plan))
            start = time.perf_counter()
            audited = simulate(package, plan)
            timing["run_s"] = time.perf_counter() - start
            timing["fhe_s_per_sample"] = None  # no FHE happened
            report_progress("run", len(plan), len(plan))
            n_failed = 0

        activations, layer_costs = {}, {}
        if any(AUDITS[name].layers for name in options.audits):
            activations, layer_costs = layer_activations(package, bench, fhe_mode, keys_dir,
                                                         work, report_progress)

        report_progress("reference", 0, 1)
        reference = simulate(package, real_plan(bench))
        report_progress("reference", 1, 1)

    if out_dir is None:
        shutil.rmtree(work, ignore_errors=True)
        encrypted_dir = run_dir = None
    report = {
        "model": package.model_id,
        "benchmark": bench.benchmark_id,
        "fhe_mode": fhe_mode,
        "n_samples": bench.n_samples,
        "sample": bench.sample,
        "n_failed": n_failed,
        "audits": list(options.audits),
        "plan": summary,
        **evaluate(audited, bench, package, options, activations),
        "clear_reference": clear_reference(reference, audited, bench, package, fhe_mode),
        "reproducibility": reproducibility(package, fhe_mode, options.seed),
        "timing": timing,
        "sizes": sizes,
        "transcript": transcript,
    }
    if layer_costs:
        report["representation"]["measured"] = layer_costs
    return AuditOutcome(report, encrypted_dir, run_dir, preview, audited)


def layer_activations(package: ModelPackage, bench: PlainBenchmark, fhe_mode: str,
                      keys_dir: Path, work: Path, progress: StageProgress,
                      ) -> tuple[dict[str, Decrypted], dict[str, Any]]:
    """The real samples' activations of every published layer: encrypted for that layer's
    circuit with its own keys, run by the server, decrypted (``execute``); or Concrete's
    simulator of the layer's circuit (``simulate``). Also what each layer's pass cost."""
    from .auditor.layers import LayerAuditor
    from .formats.layers import layers

    activations: dict[str, Decrypted] = {}
    measured: dict[str, Any] = {}
    for layer in layers(package):
        stage = f"layer {layer}"
        progress(stage, 0, bench.n_samples)
        start = time.perf_counter()
        if fhe_mode != "execute":
            activations[layer] = simulate_layer(package, layer, bench)
            measured[layer] = {"simulate_s": time.perf_counter() - start}
            progress(stage, bench.n_samples, bench.n_samples)
            continue
        auditor = LayerAuditor(package, keys_dir, layer)
        evaluation_keys = auditor.keygen()
        keygen_s = time.perf_counter() - start
        encrypted = auditor.encrypt(bench, work / f"encrypted-{layer}")
        run = FHEServer(package).run(encrypted, work / f"run-{layer}",
                                     progress=lambda d, t, _r, s=stage: progress(s, d, t))
        activations[layer] = auditor.decrypt(run, bench)
        measured[layer] = {"keygen_s": keygen_s, "run_s": run.transcript.total_s,
                           "fhe_s_per_sample": run.transcript.fhe_s_per_sample,
                           "evaluation_keys_bytes": len(evaluation_keys),
                           "input_bytes_per_sample": _mean_len(encrypted.ciphertexts()),
                           "n_failed": run.transcript.n_failed}
    return activations, measured


def _mean_len(rows: list[tuple[str, bytes]]) -> int | None:
    return int(sum(len(b) for _, b in rows) / len(rows)) if rows else None


def reproducibility(package: ModelPackage, fhe_mode: str, seed: int) -> dict[str, Any]:
    """What a rerun of the same call reproduces (measured; README "Reproducibility")."""
    linear = not package.manifest.circuit.get("pbs_count")
    if fhe_mode == "simulate":
        outputs = ("Concrete's simulator draws its noise from the operating system (concrete-"
                   "python 2.10 takes no seed): "
                   + ("labels and scores repeat (a circuit without bootstrapping)" if linear else
                      "scores, and sometimes labels, of a bootstrapped circuit can differ "
                      "between runs"))
    else:
        outputs = ("fresh keys give other ciphertexts; decrypted "
                   + ("labels and scores repeat, and a rerun on the same ciphertexts gives the "
                      "same bytes (no bootstrapping)" if linear else
                      "labels repeat, scores can differ slightly, and output bytes differ "
                      "between processes (bootstrapping)"))
    return {"seed": seed, "seeded": "the sample draw, probe permutations, synthetic probes, "
                                    "surrogate fits and bootstrap intervals", "outputs": outputs}


def check_sealed_audits(audits: str | list[str] | AuditOptions) -> AuditOptions:
    """The audits a sealed run can answer (accuracy, fairness); one sentence for the others."""
    from .sealed.circuit import SEALED_AUDITS

    options = audits if isinstance(audits, AuditOptions) else AuditOptions.parse(audits)
    others = [a for a in options.audits if a not in SEALED_AUDITS]
    if others:
        raise AuditError(f"A sealed audit computes accuracy and fairness only; "
                         f"{', '.join(others)} need per-sample outputs.")
    return options


def sealed_plan(package: ModelPackage, n_samples: int) -> dict[str, Any]:
    """What a sealed audit of ``n_samples`` costs: batches, PBS per batch (count + one add), and
    seconds when the package lets us say (``estimate_basis`` says from what). Refuses, with the
    manifest's reason, a package without a sealed circuit."""
    import math

    from .sealed.circuit import sealed_view

    entry = sealed_view(package).manifest.sealed
    batch_size = int(entry["batch_size"])
    n_batches = max(1, math.ceil(n_samples / batch_size))
    per_batch, basis = _sealed_s_per_batch(package)
    key_bytes = [entry.get(k) for k in ("size_of_bootstrap_keys", "size_of_keyswitch_keys")]
    return {"n_queries": n_batches, "queries": {"samples": n_samples},
            "fhe_s_per_query": per_batch,
            "estimated_fhe_s": per_batch * n_batches if per_batch else None,
            "fhe_mode": "execute", "sealed": True, "batch_size": batch_size,
            "n_batches": n_batches, "pbs_per_batch": sealed_pbs_per_batch(entry),
            "estimate_basis": basis,
            "key_bytes_in_memory": sum(key_bytes) if all(key_bytes) else None}


def sealed_pbs_per_batch(entry: dict[str, Any]) -> int | None:
    """PBS a batch costs: its ``count`` and one ``add`` of the chain (from the manifest)."""
    pbs = entry.get("pbs")
    return int(pbs["count"]) + int(pbs["add"]) if isinstance(pbs, dict) else None


def _sealed_s_per_batch(package: ModelPackage) -> tuple[float | None, str]:
    """Seconds per batch when the package measured its sealed circuit. Nothing is scaled from
    the plain circuit: the sealed lookups are wider, and a PBS costs more with its bit width
    (breast-cancer-xgb: 12 s per batch scaled from the plain circuit's PBS, 115 s measured)."""
    measured = (package.manifest.sealed.get("measured") or {}).get("fhe_s_per_batch")
    if measured:
        return float(measured), "measured on the sealed circuit"
    return None, ("the package has no measured time for its sealed circuit; `python -m "
                  "fhe_backend bench --sealed` measures it")


def _sealed_outcome(model: str | ModelPackage, benchmark: str | PlainBenchmark, *,
                    limit: int | None, audits: str | list[str] | AuditOptions,
                    out_dir: Path | None, progress: StageProgress | None,
                    on_plan: Callable[[dict[str, Any]], None] | None, sample: str,
                    seed: int) -> AuditOutcome:
    """:func:`run_sealed_audit` as an :class:`AuditOutcome` (artifacts kept in ``out_dir``)."""
    from .formats.artifacts import EncryptedBenchmark

    package, bench = _resolve(model, benchmark)
    options = check_sealed_audits(audits)
    if on_plan:
        on_plan(sealed_plan(package, min(limit or bench.n_samples, bench.n_samples)))
    report = run_sealed_audit(package, bench, limit=limit, audits=list(options.audits),
                              out_dir=out_dir, progress=progress, sample=sample, seed=seed)
    if out_dir is None:
        return AuditOutcome(report, None, None)
    encrypted_dir, run_dir = Path(out_dir) / "encrypted", Path(out_dir) / "run"
    rows = EncryptedBenchmark.load(encrypted_dir).ciphertexts()
    return AuditOutcome(report, encrypted_dir, run_dir, rows[0][1][:64].hex() if rows else "")


def run_sealed_audit(package: ModelPackage, benchmark: PlainBenchmark, *,
                     limit: int | None = None, audits: str | list[str] = "accuracy",
                     group_column: str | None = None, out_dir: Path | None = None,
                     progress: Any = None, sample: str = DEFAULT_METHOD,
                     seed: int = DEFAULT_SEED, dp: PrivateCounts | None = None,
                     ) -> dict[str, Any]:
    """Keygen, encrypt batches, run the sealed module (counts per batch, added up under FHE,
    with ``dp``'s noise if asked), decrypt the one total: the report keeps the keys of
    ``audit --json``, adds ``sealed``, ``batch_size``, ``n_batches`` and ``decrypted`` and has
    no per-sample field. ``limit`` samples are drawn by ``sample``, stratified by label and
    group."""
    import numpy as np

    from .auditor.sealed import SealedAuditor, default_group_column
    from .audits.uncertainty import as_interval, wilson
    from .sealed.report import sealed_fields

    options = check_sealed_audits(audits)
    group_column = group_column or default_group_column(benchmark)
    if group_column is not None and group_column not in benchmark.frame.columns:
        # checked again when encrypting, but that is after the sealed keygen (minutes)
        raise SchemaError(f"Benchmark {benchmark.benchmark_id!r} has no column "
                          f"{group_column!r}.")
    bench = draw(benchmark, limit, method=sample, seed=seed,
                 by=strata_for(benchmark, options.audits, group_column))
    if "fairness" in options.audits and group_column is None:
        raise AuditError(f"Benchmark {bench.benchmark_id!r} has no sensitive attributes; "
                         "fairness audits need some.")
    audit_names = list(options.audits) + (["fairness"] if group_column and
                                          "fairness" not in options.audits else [])
    report_progress = progress or (lambda stage, done, total: None)
    plan = sealed_plan(package, bench.n_samples)
    timing: dict[str, float | None] = dict.fromkeys(
        ("keygen_s", "encrypt_s", "run_s", "decrypt_s", "fhe_s_per_sample"))
    work = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="fhe-audit-sealed-"))
    try:
        with DemoKeys() as keys_dir:
            auditor = SealedAuditor(package, keys_dir)
            report_progress("keygen", 0, 1)
            start = time.perf_counter()
            evaluation_keys = auditor.keygen()
            timing["keygen_s"] = time.perf_counter() - start
            start = time.perf_counter()
            encrypted = auditor.encrypt(bench, work / "encrypted", group_column=group_column,
                                        progress=lambda d, t: report_progress("encrypt", d, t))
            timing["encrypt_s"] = time.perf_counter() - start
            start = time.perf_counter()
            run = FHEServer(package).run(encrypted, work / "run",
                                         progress=lambda d, t, _r: report_progress("run", d, t),
                                         dp=dp)
            timing["run_s"] = time.perf_counter() - start
            timing["fhe_s_per_sample"] = run.transcript.total_s / max(1, bench.n_samples)
            start = time.perf_counter()
            counts = auditor.decrypt(run)
            timing["decrypt_s"] = time.perf_counter() - start
            # The clear reference: Concrete's simulator of the stock circuit, counted alike.
            reference = simulate(package, real_plan(bench))
        rows, outputs = encrypted.ciphertexts(), run.outputs()
    finally:
        if out_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    y_true = bench.labels(package.manifest.class_names)
    index = {s: i for i, s in enumerate(bench.sample_ids())}
    order = [index[s] for s in reference.sources]
    ref_confusion = np.zeros((2, 2), dtype=np.int64)
    np.add.at(ref_confusion, (y_true[order], reference.predictions), 1)
    t = run.transcript
    report: dict[str, Any] = {
        "model": package.model_id,
        "benchmark": bench.benchmark_id,
        "fhe_mode": "execute",
        "n_samples": bench.n_samples,
        "sample": bench.sample,
        "n_failed": t.n_failed,
        "audits": audit_names,
        "plan": plan,
        **sealed_fields(counts, package),
        "clear_reference": {
            "method": "concrete-simulation of the stock circuit, counted in clear",
            "accuracy": float(np.trace(ref_confusion) / max(1, ref_confusion.sum())),
            "agreement": None,
            "intervals": {"accuracy": as_interval(wilson(int(np.trace(ref_confusion)),
                                                         int(ref_confusion.sum()))),
                          "agreement": None},
            "compared": "not computed: agreement needs per-sample predictions, which a sealed "
                        "run never decrypts",
            "confusion_matrix_equal": bool(np.array_equal(ref_confusion, counts.confusion())),
        },
        "reproducibility": reproducibility(package, "execute", seed),
        "timing": timing,
        "sizes": {"evaluation_keys_bytes": len(evaluation_keys),
                  "input_bytes_per_sample": sum(len(b) for _, b in rows) // bench.n_samples,
                  "output_bytes_total": sum(len(b) for _, b in outputs)},
        "transcript": {"model_fingerprint": t.model_fingerprint,
                       "inputs_sha256": t.inputs_sha256,
                       "evaluation_keys_sha256": t.evaluation_keys_sha256,
                       "outputs_sha256": t.outputs_sha256, "versions": t.versions},
    }
    return report
