"""Command line: ``python -m fhe_backend COMMAND``. Command names and JSON keys are a contract.

Every command prints human-readable text, or with ``--json`` exactly one JSON object on stdout.
Progress goes to stderr. Errors are one sentence on stderr and exit code 2 (``verify`` exits 1
when the re-execution does not match).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import AuditError

EXIT_ERROR = 2
EXIT_MISMATCH = 1


def _progress(label: str) -> Callable[..., None]:
    """A tqdm bar on stderr, created on the first callback."""
    from tqdm import tqdm

    state: dict[str, Any] = {}

    def update(done: int, total: int, *_: Any) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = tqdm(total=total, desc=label, unit="sample", file=sys.stderr,
                                      leave=False)
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    """Keep the command's result; :func:`main` prints it once Concrete's chatter is done."""
    args.output = json.dumps(data, indent=2) if args.json else text


# -- commands --------------------------------------------------------------------------------


def cmd_models(args: argparse.Namespace) -> int:
    from .zoo import benchmarks_for, list_models

    items = []
    for package in list_models():
        m = package.manifest
        items.append({
            "id": m.model_id, "description": m.description, "dataset": m.dataset,
            "classes": m.class_names, "n_features": m.input_schema.n_features,
            "fingerprint": m.fingerprint, "accuracy_float": m.metrics.get("accuracy_float"),
            "accuracy_quantized_clear": m.metrics.get("accuracy_quantized_clear"),
            "pbs_count": m.circuit.get("pbs_count"),
            "fhe_s_per_sample": m.measured.get("fhe_s_per_sample"),
            "benchmarks": benchmarks_for(m.model_id), "path": str(package.path),
        })
    lines = [f"{i['id']:<24} {i['description']}  (benchmarks: {', '.join(i['benchmarks'])})"
             for i in items]
    _emit(args, {"models": items}, "\n".join(lines) or "No models.")
    return 0


def cmd_benchmarks(args: argparse.Namespace) -> int:
    from .zoo import list_benchmarks

    items = [{"id": b.benchmark_id, "version": b.version, "description": b.description,
              "n_samples": b.n_samples, "sensitive_columns": b.sensitive_columns,
              "fits_models": b.fits_models, "license": b.license, "path": str(b.path)}
             for b in list_benchmarks()]
    lines = [f"{i['id']:<22} {i['n_samples']:>6} samples  fits: {', '.join(i['fits_models'])}"
             for i in items]
    _emit(args, {"benchmarks": items}, "\n".join(lines) or "No benchmarks.")
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from .auditor import Auditor
    from .hashing import sha256_bytes
    from .zoo import resolve_model

    package = resolve_model(args.model)
    auditor = Auditor(package, Path(args.keys))
    keys = auditor.keygen()
    data = {"model": package.model_id, "keys": str(auditor.dir),
            "key_fingerprint": sha256_bytes(keys), "evaluation_keys_bytes": len(keys)}
    _emit(args, data, f"Keys for {package.model_id} in {auditor.dir} "
                      f"(evaluation keys {len(keys)} bytes). Keep this folder secret.")
    return 0


def cmd_encrypt(args: argparse.Namespace) -> int:
    from .auditor import Auditor
    from .demo import check_fit
    from .zoo import resolve_benchmark, resolve_model

    package = resolve_model(args.model)
    bench = resolve_benchmark(args.benchmark)
    check_fit(package, bench)
    encrypted = Auditor(package, Path(args.keys)).encrypt(
        bench.head(args.limit), Path(args.out), progress=_progress("encrypt"))
    m = encrypted.manifest
    _emit(args, m.to_dict(), f"Encrypted {m.n_samples} samples of {m.benchmark_id} for "
                             f"{m.model_id} into {encrypted.path} (no secret key inside).")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .artifacts import EncryptedBenchmark
    from .server import FHEServer
    from .zoo import resolve_model

    package = resolve_model(args.model)
    encrypted = EncryptedBenchmark.load(Path(args.encrypted))
    run = FHEServer(package).run(encrypted, Path(args.out), progress=_progress("FHE run"))
    t = run.transcript
    _emit(args, t.to_dict(), f"Ran {t.n_samples} samples in FHE ({t.fhe_s_per_sample:.3f} s/sample,"
                             f" {t.n_failed} failed); outputs hash {t.outputs_sha256}.")
    return 0


def cmd_decrypt(args: argparse.Namespace) -> int:
    from .artifacts import RunResult
    from .auditor import Auditor
    from .audits import score
    from .zoo import model_by_fingerprint, resolve_benchmark, resolve_model

    run = RunResult.load(Path(args.run))
    package = (resolve_model(args.model) if args.model
               else model_by_fingerprint(run.transcript.model_fingerprint))
    bench = resolve_benchmark(args.benchmark)
    decrypted = Auditor(package, Path(args.keys)).decrypt(run)
    metrics = score(decrypted, bench, package)
    t = run.transcript
    data = {"model": package.model_id, "benchmark": bench.benchmark_id, "fhe_mode": t.mode,
            "n_samples": len(decrypted.select(None).queries), "n_failed": t.n_failed,
            "metrics": metrics,
            "transcript": {"model_fingerprint": t.model_fingerprint,
                           "inputs_sha256": t.inputs_sha256,
                           "evaluation_keys_sha256": t.evaluation_keys_sha256,
                           "outputs_sha256": t.outputs_sha256, "versions": t.versions}}
    _emit(args, data, _metrics_text(data))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .artifacts import EncryptedBenchmark, RunResult
    from .verifier import verify_run
    from .zoo import resolve_model

    result = verify_run(resolve_model(args.model), EncryptedBenchmark.load(Path(args.encrypted)),
                        RunResult.load(Path(args.run)), limit=args.limit,
                        progress=_progress("re-execute"))
    _emit(args, {"ok": result.ok, "n_checked": result.n_checked, "n_samples": result.n_samples,
                 "problems": result.problems}, result.summary())
    return 0 if result.ok else EXIT_MISMATCH


def cmd_audit(args: argparse.Namespace) -> int:
    from .demo import run_audit

    bars: dict[str, Callable[..., None]] = {}

    def progress(stage: str, done: int, total: int) -> None:
        bars.setdefault(stage, _progress(stage))(done, total)

    outcome = run_audit(args.model, args.benchmark, fhe_mode=args.fhe, limit=args.limit,
                        out_dir=Path(args.out) if args.out else None, progress=progress)
    _emit(args, outcome.report, _metrics_text(outcome.report))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import bench_model, default_benchmark, markdown_table
    from .zoo import model_ids, resolve_benchmark, resolve_model

    refs = model_ids() if args.model == "all" else [args.model]
    rows = []
    for ref in refs:
        package = resolve_model(ref)
        bench = resolve_benchmark(args.benchmark) if args.benchmark else default_benchmark(package)
        print(f"bench {package.model_id} on {args.limit} samples…", file=sys.stderr)
        rows.append(bench_model(package, bench, args.limit))
    data = rows[0] if len(rows) == 1 else {"results": rows}
    _emit(args, data, markdown_table(rows) + f"\n\nmachine: {rows[0]['machine']}" if rows else "")
    return 0


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _metrics_text(report: dict[str, Any]) -> str:
    m = report["metrics"]
    lines = [f"{report['model']} on {report['benchmark']} ({report['n_samples']} samples, "
             f"mode: {report['fhe_mode']})",
             f"  accuracy {m['accuracy']:.4f}  balanced {m['balanced_accuracy']:.4f}  "
             f"f1 {m['f1']:.4f}  roc_auc {_fmt(m['roc_auc'])}"]
    ref = report.get("clear_reference")
    if ref:
        lines.append(f"  clear reference ({ref['method']}): accuracy {ref['accuracy']:.4f}, "
                     f"agreement {ref['agreement']:.4f}")
    t = report.get("transcript", {})
    if t.get("outputs_sha256"):
        lines.append(f"  outputs sha256 {t['outputs_sha256']}")
    return "\n".join(lines)


# -- parser ----------------------------------------------------------------------------------


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fhe_backend",
        description="Encrypted model audits with Concrete ML: owner, auditor, server, verifier.")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str,
            ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        p.set_defaults(func=func)
        return p

    add("models", cmd_models, "List the models of the zoo.")
    add("benchmarks", cmd_benchmarks, "List the auditor's plaintext benchmarks.")
    p = add("keygen", cmd_keygen, "Auditor: generate keys for a model into a key directory.")
    p.add_argument("--model", required=True)
    p.add_argument("--keys", required=True)
    p = add("encrypt", cmd_encrypt, "Auditor: encrypt a benchmark for a model.")
    p.add_argument("--model", required=True)
    p.add_argument("--benchmark", required=True)
    p.add_argument("--keys", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--limit", type=_positive)
    p = add("run", cmd_run, "Server: run the model's circuit on an encrypted benchmark.")
    p.add_argument("--model", required=True)
    p.add_argument("--encrypted", required=True)
    p.add_argument("--out", required=True)
    p = add("decrypt", cmd_decrypt, "Auditor: decrypt a run and compute metrics.")
    p.add_argument("--run", required=True)
    p.add_argument("--keys", required=True)
    p.add_argument("--benchmark", required=True)
    p.add_argument("--model", help="model package (default: the zoo model the run names)")
    p = add("verify", cmd_verify, "Anyone: re-execute a run and check its hashes.")
    p.add_argument("--model", required=True)
    p.add_argument("--encrypted", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--limit", type=_positive, help="re-execute only the first N samples")
    p = add("audit", cmd_audit, "Demo: every role in one process.")
    p.add_argument("--model", required=True)
    p.add_argument("--benchmark", required=True)
    p.add_argument("--fhe", choices=("execute", "simulate"), default="execute")
    p.add_argument("--limit", type=_positive)
    p.add_argument("--out", help="keep the encrypted benchmark and run in this folder")
    p = add("bench", cmd_bench, "Measure per-sample FHE latency (ours vs plain Concrete ML).")
    p.add_argument("--model", required=True, help="a model, or 'all' for the whole zoo")
    p.add_argument("--benchmark")
    p.add_argument("--limit", type=_positive, default=5)
    return parser


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Concrete's C++ runtime prints to file descriptor 1 (e.g. "KeySetCache: miss"); send it
    to stderr so that stdout carries only the command's result (one JSON object with --json)."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.output = None
    try:
        with _stdout_to_stderr():
            code = args.func(args)
    except AuditError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("error: interrupted; a rerun into the same --out folder resumes.", file=sys.stderr)
        return 130
    if args.output is not None:
        print(args.output)
    return code
