"""Command line: ``python -m fhe_backend COMMAND``. Command names and JSON keys are a contract.

Every command prints human-readable text, or with ``--json`` exactly one JSON object on stdout.
Progress goes to stderr. Errors are one sentence on stderr and exit code 2 (``verify`` exits 1
when the re-execution does not match).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import modes
from .audits import AUDITS, audits_help
from .errors import AuditError

if TYPE_CHECKING:  # the commands import what they use, so that --help stays instant
    from .auditor.benchmarks import PlainBenchmark, TableColumns
    from .formats.artifacts import ModelPackage

# Exit statuses (README "Exit codes"); __main__ makes them hold after Concrete has run.
EXIT_ERROR = 2
EXIT_MISMATCH = 1  # not verified, inconclusive, refused or incomplete
EXIT_INTERRUPTED = 130
# Default sample counts of bench: per-sample latency, and throughput of whole Dask runs.
LATENCY_SAMPLES = 5
SCALING_SAMPLES = 16
# Synthetic test sets per setting of selfcheck intervals: about 20 s on one core.
SELFCHECK_REPLICATES = 200


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
    """Keep the command's result; :func:`main` prints it once Concrete's chatter is done.
    The JSON never holds NaN (not JSON): an undefined number is null, its reason beside it."""
    from .report import dumps

    args.output = dumps(data) if args.json else text


# -- commands --------------------------------------------------------------------------------


def _hub_note(note: str | None) -> None:
    """Listings still work without the Hub; say so once instead of failing."""
    if note:
        print(note, file=sys.stderr)


def cmd_models(args: argparse.Namespace) -> int:
    from .hub.remote import discover_models
    from .hub.zoo import benchmarks_for, list_models

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
            "source": "zoo",
        })
    lines = [f"{i['id']:<24} {i['description']}  (benchmarks: {', '.join(i['benchmarks'])})"
             for i in items]
    remote = discover_models()
    _hub_note(remote.note)
    items += remote.items
    lines += [f"{i['id']:<24} {i['description']}  ({i['source']})" for i in remote.items]
    _emit(args, {"models": items}, "\n".join(lines) or "No models.")
    return 0


def cmd_benchmarks(args: argparse.Namespace) -> int:
    from .hub.references import resolve_model
    from .hub.remote import discover_benchmarks
    from .hub.zoo import list_benchmarks

    package = resolve_model(args.model) if args.model else None
    items = [{"id": b.benchmark_id, "version": b.version, "description": b.description,
              "n_samples": b.n_samples, "sensitive_columns": b.sensitive_columns,
              "fits_models": b.fits_models, "license": b.license, "path": str(b.path),
              "source": "zoo"}
             for b in list_benchmarks() if package is None or package.model_id in b.fits_models]
    lines = [f"{i['id']:<22} {i['n_samples']:>6} samples  fits: {', '.join(i['fits_models'])}"
             for i in items]
    mine = _registered(package)
    items += mine
    lines += [f"{i['id']:<22} {i['n_samples']:>6} samples  registered: {i['path']}" for i in mine]
    # Encrypted benchmarks on the Hub only fit the exact model (fingerprint) they were made for.
    remote = discover_benchmarks(package.fingerprint if package else None)
    _hub_note(remote.note)
    items += remote.items
    lines += [f"{i['id']:<22} {i.get('n_samples') or '?':>6} samples  encrypted for: "
              f"{i.get('model_id') or str(i.get('model_fingerprint'))[:12]}  ({i['source']})"
              for i in remote.items]
    _emit(args, {"benchmarks": items}, "\n".join(lines) or "No benchmarks.")
    return 0


def _registered(package: ModelPackage | None) -> list[dict[str, Any]]:
    """The auditor's registered tables; for a model, those that have all its input columns."""
    from .auditor.benchmarks import TABLE_VERSION
    from .hub.registry import entries

    needed = set(package.manifest.input_schema.column_names) if package else set()
    return [{"id": name, "version": TABLE_VERSION, "description": e.get("description", ""),
             "n_samples": e.get("n_samples"), "sensitive_columns": e.get("sensitive_columns"),
             "fits_models": [], "license": "", "path": e.get("path"), "source": "registered"}
            for name, e in sorted(entries().items()) if needed <= set(e.get("columns") or [])]


def cmd_register_benchmark(args: argparse.Namespace) -> int:
    from .auditor.benchmarks import TableColumns
    from .hub.registry import register

    entry = register(Path(args.file), args.id, _columns(args) or TableColumns(),
                     description=args.description)
    ids = f"ids from {entry['id_column']!r}" if entry["id_column"] else "generated ids (row-N)"
    _emit(args, entry, f"Registered {entry['id']}: {entry['n_samples']} samples of "
                       f"{entry['path']}, labels in {entry['label_column']!r}, {ids}.")
    return 0


def cmd_import_model(args: argparse.Namespace) -> int:
    from .hub.references import resolve_benchmark
    from .owner.importer import import_model

    validation = resolve_benchmark(args.validation, _columns(args)) if args.validation else None
    package = import_model(Path(args.deployment), Path(args.schema), Path(args.out),
                           validation=validation)
    m = package.manifest
    accuracy = m.metrics.get("accuracy_quantized_clear")
    scored = f", accuracy {accuracy:.4f} on {m.metrics['n_validation']} rows" if (
        accuracy is not None) else ""
    _emit(args, {**m.to_dict(), "path": str(package.path)},
          f"Packaged {m.model_id} ({m.fingerprint[:12]}…, {m.input_schema.n_features} features, "
          f"{len(m.class_names)} classes, {m.circuit['pbs_count']} PBS per sample{scored}) "
          f"into {package.path}.")
    return 0


def _checked(args: argparse.Namespace) -> tuple[ModelPackage, PlainBenchmark]:
    """The model and the plaintext benchmark, refused with one sentence (naming column and
    rows) before any key, ciphertext or folder exists if the data does not fit the model."""
    from .hub.references import resolve_benchmark, resolve_model
    from .orchestration import check_fit

    package = resolve_model(args.model)
    bench = resolve_benchmark(args.benchmark, _columns(args))
    if bench.fits_models:  # a zoo benchmark names the models it is for: say that first
        check_fit(package, bench)
    bench.check_inputs(package.manifest.input_schema, package.manifest.class_names)
    return package, bench


def cmd_keygen(args: argparse.Namespace) -> int:
    from .auditor.client import Auditor
    from .formats.hashing import sha256_bytes
    from .hub.references import resolve_model

    package = resolve_model(args.model)
    auditor = Auditor(package, Path(args.keys))
    keys = auditor.keygen()
    data = {"model": package.model_id, "keys": str(auditor.dir),
            "key_fingerprint": sha256_bytes(keys), "evaluation_keys_bytes": len(keys)}
    _emit(args, data, f"Keys for {package.model_id} in {auditor.dir} "
                      f"(evaluation keys {len(keys)} bytes). Keep this folder secret.")
    return 0


def cmd_encrypt(args: argparse.Namespace) -> int:
    from .auditor.client import Auditor
    from .auditor.sealed import default_group_column
    from .auditor.subsample import draw, strata_for
    from .audits import AUDITS, AuditOptions, build_plan, plan_summary

    package, bench = _checked(args)
    options = AuditOptions.parse(args.audits, args.budget, args.seed)
    group = (args.group_column or default_group_column(bench)) if args.sealed else None
    bench = draw(bench, args.limit, method=args.sample, seed=args.seed,
                 by=strata_for(bench, options.audits, group))
    if args.sealed:
        return _encrypt_sealed(args, package, bench)
    layered = [name for name in options.audits if AUDITS[name].layers]
    if layered:  # refused before any key exists, not at decrypt time
        raise AuditError(f"The {', '.join(layered)} audit runs the model's published layers, "
                         "which only the audit command encrypts so far; run it with audit.")
    plan = build_plan(bench, package, options)
    _announce(plan_summary(plan, package, "execute"))
    encrypted = Auditor(package, Path(args.keys)).encrypt(
        bench, Path(args.out), plan=plan, progress=_progress("encrypt"))
    m = encrypted.manifest
    _emit(args, m.to_dict(), f"Encrypted {m.n_samples} samples of {m.benchmark_id} for "
                             f"{m.model_id} into {encrypted.path} (no secret key inside).")
    return 0


def _encrypt_sealed(args: argparse.Namespace, package: ModelPackage,
                    bench: PlainBenchmark) -> int:
    from .auditor.sealed import SealedAuditor, default_group_column

    encrypted = SealedAuditor(package, Path(args.keys)).encrypt(
        bench, Path(args.out), group_column=args.group_column or default_group_column(bench),
        progress=_progress("encrypt batches"))
    m = encrypted.manifest
    _emit(args, m.to_dict(), f"Encrypted {bench.n_samples} samples of {m.benchmark_id} in "
                             f"{m.n_samples} batches of {m.batch_size} for the sealed circuit of "
                             f"{m.model_id} into {encrypted.path} (no secret key inside).")
    return 0


def _decrypt_sealed(args: argparse.Namespace, run: Any, package: ModelPackage,
                    bench: PlainBenchmark) -> int:
    from .auditor.sealed import SealedAuditor
    from .sealed.report import sealed_fields

    counts = SealedAuditor(package, Path(args.keys)).decrypt(run)
    t = run.transcript
    data = {"model": package.model_id, "benchmark": bench.benchmark_id, "fhe_mode": t.mode,
            "n_samples": int(counts.totals.sum()), "sample": counts.sample or None,
            "n_failed": t.n_failed,
            "audits": ["accuracy"] + (["fairness"] if counts.group_column else []),
            **sealed_fields(counts, package),
            "transcript": _transcript_summary(t)}
    _emit(args, data, _metrics_text(data))
    return 0


def _transcript_summary(t: Any) -> dict[str, Any]:
    """The hashes a decrypted result is bound to, as ``decrypt --json`` reports them."""
    return {"model_fingerprint": t.model_fingerprint, "inputs_sha256": t.inputs_sha256,
            "evaluation_keys_sha256": t.evaluation_keys_sha256,
            "outputs_sha256": t.outputs_sha256, "versions": t.versions}


def cmd_run(args: argparse.Namespace) -> int:
    from .hub.references import resolve_encrypted, resolve_model
    from .hub.remote import transcript_sources
    from .server.distributed import executor_for  # imports Dask only when a cluster is asked for
    from .server.run import FHEServer

    package = resolve_model(args.model)
    encrypted = resolve_encrypted(args.encrypted)
    sources = transcript_sources(args.model, package, args.encrypted, encrypted)
    run = FHEServer(package).run(encrypted, Path(args.out), progress=_progress("FHE run"),
                                 sources=sources,
                                 executor=executor_for(args.scheduler, args.workers),
                                 dp=_private_counts(args))
    t = run.transcript
    text = (f"Ran {t.n_samples} {'batches' if t.total else 'samples'} in FHE "
            f"({t.fhe_s_per_sample:.3f} s each, {t.n_failed} failed)")
    if t.total:
        dp = t.total.get("dp")
        text += ", added up under FHE into one total" + (
            f" with {dp['mechanism']} noise (epsilon {dp['epsilon']})" if dp else "")
    _emit(args, t.to_dict(), f"{text}; outputs hash {t.outputs_sha256}.")
    return 0


def _private_counts(args: argparse.Namespace) -> Any:
    """``--dp-epsilon`` / ``--dp-budget`` as the server's noise request (None without)."""
    if args.dp_epsilon is None:
        if args.dp_budget is not None:
            raise AuditError("--dp-budget limits the noise of --dp-epsilon; give both.")
        return None
    from .sealed.budget import parse_budget
    from .server.privacy import PrivateCounts

    return PrivateCounts(args.dp_epsilon, parse_budget(args.dp_budget)
                         if args.dp_budget is not None else None)


def _dp_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dp-epsilon", type=float, metavar="EPS",
                   help="sealed runs only: add discrete Laplace noise (scale 1/EPS) to each "
                        "count cell of the total before it leaves this server (for a model "
                        "served privately; see the README's threat table)")
    p.add_argument("--dp-budget", metavar="EPS/day",
                   help="with --dp-epsilon: refuse a run once the auditor's key has spent "
                        "this much epsilon today on this server (e.g. 3/day)")


def cmd_decrypt(args: argparse.Namespace) -> int:
    from .auditor.client import Auditor
    from .auditor.predictions import check_predictions
    from .audits import AuditOptions, evaluate
    from .formats.artifacts import RunResult
    from .hub.references import model_by_fingerprint, resolve_benchmark, resolve_model

    check_predictions(args.predictions, args.sealed)
    run = RunResult.load(Path(args.run))
    package = (resolve_model(args.model) if args.model
               else model_by_fingerprint(run.transcript.model_fingerprint))
    bench = resolve_benchmark(args.benchmark, _columns(args))
    if args.sealed:
        return _decrypt_sealed(args, run, package, bench)
    decrypted = Auditor(package, Path(args.keys)).decrypt(run, bench)
    options = AuditOptions.parse(args.audits, seed=args.seed)
    t = run.transcript
    data = {"model": package.model_id, "benchmark": bench.benchmark_id, "fhe_mode": t.mode,
            "n_samples": len(decrypted.select(None).queries),
            # the encrypting side's draw, from the ledger: these are the rows it encrypted
            "sample": decrypted.notes.get("sample"), "n_failed": t.n_failed,
            "audits": list(options.audits), **evaluate(decrypted, bench, package, options),
            "transcript": _transcript_summary(t)}
    _emit(args, data, _metrics_text(data) + _export_predictions(args, decrypted, package))
    return 0


def _export_predictions(args: argparse.Namespace, decrypted: Any, package: ModelPackage,
                        ) -> str:
    """Write ``--predictions`` (if asked) and say so in the text output."""
    if not args.predictions or decrypted is None:
        return ""
    from .auditor.predictions import write_predictions

    rows = write_predictions(Path(args.predictions), decrypted, package.manifest.class_names)
    return f"\n  predictions: {args.predictions} ({rows} samples)"


def cmd_verify(args: argparse.Namespace) -> int:
    from .auditor.client import Auditor
    from .formats.artifacts import RunResult
    from .hub.references import resolve_encrypted, resolve_model
    from .verifier.verify import verify_run

    package = resolve_model(args.model)
    encrypted = resolve_encrypted(args.encrypted)
    # Only the auditor has keys; with them, bootstrapped outputs are compared by decryption.
    auditor: Any = Auditor(package, Path(args.keys)) if args.keys else None
    if args.keys and encrypted.manifest.circuit == "sealed":  # compare decrypted counts
        from .auditor.sealed import SealedAuditor

        auditor = SealedAuditor(package, Path(args.keys))
    result = verify_run(package, encrypted,
                        RunResult.load(Path(args.run)), limit=args.limit,
                        progress=_progress("re-execute"), auditor=auditor)
    _emit(args, {"ok": result.ok, "n_checked": result.n_checked, "n_samples": result.n_samples,
                 "n_identical": result.n_identical, "n_equivalent": result.n_equivalent,
                 "n_inconclusive": result.n_inconclusive, "problems": result.problems},
          result.summary())
    return 0 if result.ok else EXIT_MISMATCH


def cmd_audit(args: argparse.Namespace) -> int:
    from .auditor.predictions import check_predictions
    from .orchestration import run_audit

    bars: dict[str, Callable[..., None]] = {}

    def progress(stage: str, done: int, total: int) -> None:
        bars.setdefault(stage, _progress(stage))(done, total)

    package, bench = _checked(args)
    if args.fhe == modes.SEALED:
        args.sealed = True
    check_predictions(args.predictions, args.sealed)
    if args.sealed:
        from .orchestration import run_sealed_audit

        if not modes.MODES[args.fhe].real_fhe:
            raise AuditError(f"A sealed audit runs in FHE only; drop --fhe {args.fhe}.")
        if args.bundle:  # would be silently ignored: the user asked for a record
            raise AuditError("A sealed audit writes no bundle; keep its encrypted batches and "
                             "run with --out instead of --bundle.")

        report = run_sealed_audit(package, bench, limit=args.limit, audits=args.audits,
                                  group_column=args.group_column,
                                  out_dir=Path(args.out) if args.out else None, progress=progress,
                                  sample=args.sample, seed=args.seed, dp=_private_counts(args))
        _emit(args, report, _metrics_text(report))
        return 0
    if args.group_column:
        raise AuditError("--group-column chooses the group a sealed audit counts by; add "
                         "--fhe sealed, or drop it.")
    if args.dp_epsilon is not None or args.dp_budget is not None:
        raise AuditError("Noise (--dp-epsilon) is added to a sealed audit's total only; add "
                         "--sealed, or drop it.")
    bundle = Path(args.bundle) if args.bundle else None
    if bundle is not None and bundle.exists() and any(bundle.iterdir()):
        raise AuditError(f"{bundle} is not empty; choose a new folder for the bundle.")
    out = Path(args.out) if args.out else bundle  # a bundle keeps the run in place
    outcome = run_audit(package, bench, fhe_mode=args.fhe, limit=args.limit,
                        audits=args.audits, budget=args.budget, out_dir=out,
                        progress=progress, on_plan=_announce, seed=args.seed,
                        sample=args.sample)
    text = _metrics_text(outcome.report) + _export_predictions(args, outcome.decrypted, package)
    if bundle is not None:
        from .report import bundle_outcome

        bundle_outcome(outcome, package, bundle)
        text += f"\n  bundle: {bundle} (check it: see {bundle / 'VERIFY.txt'})"
    _emit(args, outcome.report, text)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .hub.references import resolve_benchmark, resolve_model
    from .hub.zoo import model_ids
    from .latency import (
        bench_model,
        bench_scaling,
        default_benchmark,
        markdown_table,
        scaling_table,
    )

    scaling = bool(args.scheduler or args.workers)
    limit = args.limit or (SCALING_SAMPLES if scaling else LATENCY_SAMPLES)
    refs = model_ids() if args.model == "all" else [args.model]
    if args.sealed_leak:
        from .latency import bench_sealed_leak
        from .sealed.leak import leak_table

        rows = []
        for ref in refs:
            package = resolve_model(ref)
            if args.model == "all" and len(package.manifest.class_names) != 2:
                continue  # multi-class models have no sealed circuit to emulate
            bench = (resolve_benchmark(args.benchmark) if args.benchmark
                     else default_benchmark(package))
            rows.append(bench_sealed_leak(package, bench, args.limit))
        text = "\n\n".join(f"{r['model']} on {r['benchmark']}: {leak_table(r)}" for r in rows)
        _emit(args, {"results": rows} if args.model == "all" else rows[0], text)
        return 0
    if args.sealed:
        from .latency import bench_sealed, sealed_table

        rows = [bench_sealed(resolve_model(ref), limit=args.limit, record=args.record)
                for ref in refs]
        _emit(args, {"results": rows}, sealed_table(rows))
        return 0
    rows = []
    for ref in refs:
        package = resolve_model(ref)
        bench = resolve_benchmark(args.benchmark) if args.benchmark else default_benchmark(package)
        print(f"bench {package.model_id} on {limit} samples…", file=sys.stderr)
        rows.append(bench_scaling(package, bench, limit, scheduler=args.scheduler,
                                  workers=args.workers or 2) if scaling
                    else bench_model(package, bench, limit))
    data = rows[0] if len(rows) == 1 else {"results": rows}
    text = ("\n\n".join(f"{r['model']}:\n{scaling_table(r)}" for r in rows) if scaling
            else markdown_table(rows))
    _emit(args, data, text + f"\n\nmachine: {rows[0]['machine']}" if rows else "")
    return 0


def _announce(summary: dict[str, Any]) -> None:
    """State the cost before running: queries per audit and the estimated FHE time."""
    queries = ", ".join(f"{n} {kind}" for kind, n in summary["queries"].items())
    estimate = summary["estimated_fhe_s"]
    when = f"about {estimate:.0f} s of FHE" if estimate is not None else (
        "no FHE (simulation)" if summary["fhe_mode"] == "simulate" else "time unknown")
    print(f"plan: {summary['n_queries']} queries ({queries}); {when}", file=sys.stderr)
    for layer, cost in summary.get("representation", {}).get("layers", {}).items():
        keys = cost["key_bytes_in_memory"]
        print(f"  layer {layer} ({cost['module']}, {cost['width']} units): {cost['queries']} "
              f"queries, {cost['pbs_per_sample']} PBS per sample, its own keys"
              + (f" ({keys / 1e6:.0f} MB in memory)" if keys else ""), file=sys.stderr)


def _published(args: argparse.Namespace, result: Any) -> int:
    where = (f"Wrote the folder for {result.ref} to {result.folder} (dry run, nothing uploaded)"
             if result.dry_run else f"Published {result.ref}: {result.url}")
    _emit(args, result.to_dict(), f"{where}; files: {', '.join(result.files)}.")
    return 0


def _publish_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"private": args.private, "dry_run": args.dry_run,
            "out": Path(args.out) if args.out else None}


def cmd_publish_model(args: argparse.Namespace) -> int:
    from .hub.publish import publish_model

    return _published(args, publish_model(args.model, args.repo, **_publish_options(args)))


def cmd_publish_benchmark(args: argparse.Namespace) -> int:
    from .hub.publish import publish_benchmark

    return _published(args, publish_benchmark(args.encrypted, args.repo,
                                              **_publish_options(args)))


def cmd_publish_run(args: argparse.Namespace) -> int:
    from .hub.publish import publish_run

    metrics = Path(args.metrics) if args.metrics else None
    return _published(args, publish_run(Path(args.run), args.repo, metrics=metrics,
                                        **_publish_options(args)))


def cmd_challenge_init(args: argparse.Namespace) -> int:
    from .challenge.identity import Identity
    from .challenge.store import check_settings, init_challenge

    check_settings(args.metric, args.policy, args.quota, args.budget)  # before an identity
    identity = Identity.open(Path(args.identity))
    challenge = init_challenge(args.benchmark, args.metric, args.policy, args.quota, identity,
                               Path(args.out), args.id, budget=args.budget)
    d = challenge.data
    _emit(args, {**d, "path": str(challenge.path), "fingerprint": challenge.fingerprint},
          f"Challenge {d['id']} in {challenge.path}: {d['metric']} on {d['benchmark']['id']} "
          f"({d['benchmark']['n_samples']} hidden samples), policy {d['policy']}, quota "
          f"{d['quota']}, budget {d['budget'] or 'unlimited'}; auditor key "
          f"{d['identity']['public_key'][:16]}… (private half stays in {identity.path}).")
    return 0


def cmd_challenge_publish(args: argparse.Namespace) -> int:
    from .challenge.publish import publish_challenge

    return _published(args, publish_challenge(args.challenge, args.repo,
                                              **_publish_options(args)))


def cmd_challenge_sign_run(args: argparse.Namespace) -> int:
    from .challenge.identity import Identity
    from .challenge.runs import sign_run
    from .challenge.store import Challenge

    challenge = Challenge.open(args.challenge)
    identity = Identity.open(Path(args.identity), create=False)
    document = sign_run(challenge, args.submission, identity,
                        Path(args.run) if args.run else None)
    _emit(args, document, f"Signed the run of {args.submission} as runner key "
                          f"{identity.public_key[:16]}…; the desk uses it only if the signed "
                          "submission names this key.")
    return 0


def cmd_challenge_attack_sim(args: argparse.Namespace) -> int:
    from .challenge.attack import outcome_text, parse_policies, simulate

    outcomes = simulate(args.n, args.submissions, parse_policies(args.policy), args.trials,
                        args.seed)
    _emit(args, {"n": args.n, "submissions": args.submissions, "trials": args.trials,
                 "outcomes": [o.to_dict() for o in outcomes]},
          outcome_text(args.n, args.submissions, args.trials, outcomes))
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from .challenge.store import Challenge

    challenge = Challenge.open(args.challenge)
    identity = None
    if args.identity:
        from .challenge.identity import Identity

        identity = Identity.open(Path(args.identity), name=args.submitter)
    sub = challenge.submit(args.submitter, args.model, identity=identity,
                           runner_key=args.runner_key)
    signed = (f", signed by key {identity.public_key[:16]}…" if identity else ", unsigned")
    _emit(args, sub, f"Submitted {sub['model_id']} ({sub['model_fingerprint'][:12]}…) for "
                     f"{sub['submitter']} as {sub['id']}{signed}; the auditor's desk will "
                     "score it.")
    return 0


def cmd_desk(args: argparse.Namespace) -> int:
    from .challenge.desk import Desk
    from .challenge.identity import Identity
    from .challenge.store import Challenge
    from .server.distributed import executor_for

    challenge = Challenge.open(args.challenge)
    local = challenge
    if challenge.on_hub:  # work in a local mirror, then add the results to the repo
        from .challenge.mirror import pull

        local = pull(challenge)
    desk = Desk(local, Path(args.keys), Identity.open(Path(args.identity), create=False),
                executor=executor_for(args.scheduler), spot_size=args.spot_check,
                wait_for_runs=args.wait_for_runs, local_models=not challenge.on_hub,
                mode=args.mode, say=lambda text: print(text, file=sys.stderr))
    report = desk.run(once=args.once)
    if challenge.on_hub:
        from .challenge.mirror import push

        push(local, challenge)
    done = ", ".join(f"{r['submitter']}: {r['decision']}"
                     + (f" {r['score']}" if r.get("score") is not None else "")
                     for r in report.processed)
    _emit(args, report.to_dict(), f"Processed {len(report.processed)} submission(s)"
                                  f"{': ' + done if done else ''}; "
                                  f"{len(report.waiting)} waiting for another server's run"
                                  + (f", {len(report.deferred)} deferred: today's budget of "
                                     f"{local.budget} evaluations is spent" if report.deferred
                                     else "") + ".")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from .challenge.leaderboard import leaderboard, leaderboard_text
    from .challenge.store import Challenge

    challenge = Challenge.open(args.challenge)
    board = leaderboard(challenge)
    _emit(args, board, leaderboard_text(board, challenge.is_demo))
    return 0


def cmd_verify_result(args: argparse.Namespace) -> int:
    from .challenge.leaderboard import load_result, verify_result
    from .challenge.store import Challenge

    challenge = Challenge.open(args.challenge)
    check = verify_result(challenge, load_result(challenge, args.file))
    demo = " (demo identity: the signature proves nothing about who ran it)" if (
        challenge.is_demo and check.verified) else ""
    _emit(args, check.to_dict(),
          f"{'Verified' if check.verified else 'NOT verified'}: {check.reason}{demo}.")
    return 0 if check.verified else EXIT_MISMATCH


def cmd_selfcheck(args: argparse.Namespace) -> int:
    from .audits.selfcheck import coverage, table

    result = coverage(args.replicates, args.seed)
    _emit(args, result, table(result))
    return 0


def _metrics_text(report: dict[str, Any]) -> str:
    from .audits.uncertainty import format_metric

    m, intervals = report["metrics"], report.get("intervals", {})
    reasons = report.get("undefined_metrics", {})
    sealed = (f", sealed: counts of {report['n_batches']} batches of {report['batch_size']}"
              if report.get("sealed") else "")
    sample = report.get("sample") or {}
    drawn = (f" of {sample['of']} ({sample['method']}"
             + (f", seed {sample['seed']})" if sample.get("seed") is not None else ")")
             if sample.get("method") not in (None, "all") else "")
    lines = [f"{report['model']} on {report['benchmark']} ({report['n_samples']} samples"
             f"{drawn}, mode: {report['fhe_mode']}{sealed})"]
    lines += ["  " + name + " " + format_metric(m[name], intervals.get(name), digits=4,
                                                reason=reasons.get(name))
              for name in ("accuracy", "balanced_accuracy", "precision", "recall", "f1",
                           "roc_auc")]
    if report.get("positive_class"):
        lines.append(f"  positive class {report['positive_class']!r}; 95% intervals")
    note = report.get("readings", {}).get("note")
    if note:
        lines.append(f"  {note}")
    for kind in AUDITS.values():  # each audit's reading, in the registry's order
        if kind.summary is not None and kind.name in report:
            lines += kind.summary(report)
    ref = report.get("clear_reference")
    if ref:
        bounds = ref.get("intervals", {})
        agreement = format_metric(ref["agreement"], bounds.get("agreement"), digits=4,
                                  reason=ref.get("compared"))
        lines.append(f"  clear reference ({ref['method']}): accuracy "
                     f"{format_metric(ref['accuracy'], bounds.get('accuracy'), digits=4)}, "
                     f"agreement {agreement}")
    t = report.get("transcript", {})
    if t.get("outputs_sha256"):
        lines.append(f"  outputs sha256 {t['outputs_sha256']}")
    return "\n".join(lines)


# -- parser ----------------------------------------------------------------------------------


def _at_least_two(text: str) -> int:
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError("must be at least 2")
    return value


def _seed(text: str) -> int:
    # numpy's generators take only non-negative seeds (a negative one was a traceback).
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be a non-negative integer")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


BENCHMARK_HELP = ("a zoo id, a registered id, a benchmark folder, or a CSV, Parquet or saved "
                  "datasets table (columns are matched by name)")


def _table_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--label-column", help="for a table file: the label column (default: label)")
    p.add_argument("--id-column",
                   help="for a table file: the sample id column (default: ids row-0, row-1, …)")
    p.add_argument("--sensitive-columns",
                   help="for a table file: comma-separated sensitive attributes (fairness)")


def _columns(args: argparse.Namespace) -> TableColumns | None:
    """TableColumns when any column option was given, else None (a ref's own columns)."""
    from .auditor.benchmarks import TableColumns

    given = (args.label_column, args.id_column, args.sensitive_columns)
    return TableColumns.parse(*given) if any(v is not None for v in given) else None


def _audit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--audits", default="accuracy", help=audits_help())
    p.add_argument("--budget", type=_positive, help="refuse plans needing more FHE queries")
    p.add_argument("--seed", type=_seed, default=0,
                   help="seed of the sample draw, probe permutations, synthetic probes and "
                        "surrogate fits (default 0; recorded in the report)")


def _sample_options(p: argparse.ArgumentParser) -> None:
    from .auditor.subsample import DEFAULT_METHOD, METHODS

    p.add_argument("--limit", type=_positive,
                   help="audit N samples of the benchmark, drawn by --sample")
    p.add_argument("--sample", choices=tuple(METHODS), default=DEFAULT_METHOD,
                   help="; ".join(f"{name}: {text}" for name, text in METHODS.items())
                   + f" (default {DEFAULT_METHOD}, seeded by --seed; recorded in the report)")


def _predictions_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--predictions", metavar="FILE",
                   help="also write each real sample's decrypted prediction to this CSV "
                        "(sample_id, predicted, score_<class>); per-sample audits only")


def _sealed_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sealed", action="store_true",
                   help="sealed audit: batches for the model's sealed circuit, only aggregate "
                        "counts are ever decrypted (accuracy and fairness)")
    p.add_argument("--group-column",
                   help="with --sealed: the sensitive column encrypted as the group index "
                        "(default: the benchmark's first sensitive column)")


def _cluster_options(p: argparse.ArgumentParser, scheduler_help: str, workers_help: str) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDR", help=scheduler_help)
    where.add_argument("--workers", metavar="K", type=_positive, help=workers_help)


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

    add("models", cmd_models, "List the zoo's models and known Hub model packages.")
    p = add("benchmarks", cmd_benchmarks,
            "List the zoo's plaintext benchmarks, the auditor's registered ones and known Hub "
            "encrypted benchmarks.")
    p.add_argument("--model", help="only benchmarks for this model (zoo id, folder or hf://)")
    p = add("keygen", cmd_keygen, "Auditor: generate keys for a model into a key directory.")
    p.add_argument("--model", required=True)
    p.add_argument("--keys", required=True)
    p = add("encrypt", cmd_encrypt, "Auditor: encrypt a benchmark for a model.")
    p.add_argument("--model", required=True)
    p.add_argument("--benchmark", required=True, help=BENCHMARK_HELP)
    p.add_argument("--keys", required=True)
    p.add_argument("--out", required=True)
    _sample_options(p)
    _sealed_options(p)
    _table_options(p)
    _audit_options(p)
    p = add("run", cmd_run, "Server: run the model's circuit on an encrypted benchmark.")
    p.add_argument("--model", required=True)
    p.add_argument("--encrypted", required=True)
    p.add_argument("--out", required=True)
    _cluster_options(p, "run on the Dask scheduler at ADDR (tcp://HOST:PORT)",
                     "run on K local worker processes (Dask), one thread each")
    _dp_options(p)
    p = add("decrypt", cmd_decrypt, "Auditor: decrypt a run and compute metrics.")
    p.add_argument("--run", required=True)
    p.add_argument("--keys", required=True)
    p.add_argument("--benchmark", required=True, help=BENCHMARK_HELP)
    p.add_argument("--model", help="model package (default: the zoo model the run names)")
    p.add_argument("--audits", default="accuracy", help=audits_help())
    p.add_argument("--sealed", action="store_true",
                   help="the run is a sealed audit: decrypt only its counts, summed")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the surrogate fits (default 0)")
    _predictions_option(p)
    _table_options(p)
    p = add("verify", cmd_verify, "Anyone: re-execute a run and check its hashes.")
    p.add_argument("--model", required=True)
    p.add_argument("--encrypted", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--limit", type=_positive, help="re-execute only the first N samples")
    p.add_argument("--keys", help="auditor only: settle bootstrapped circuits by decryption")
    p = add("audit", cmd_audit, "Demo: every role in one process.")
    p.add_argument("--model", required=True)
    p.add_argument("--benchmark", required=True, help=BENCHMARK_HELP)
    p.add_argument("--fhe", choices=tuple(modes.MODES), default=modes.EXECUTE,
                   help="; ".join(f"{m.name}: {m.description}" for m in modes.MODES.values())
                   + " (--fhe sealed is --sealed)")
    _sample_options(p)
    p.add_argument("--out", help="keep the encrypted benchmark and run in this folder")
    _sealed_options(p)
    _dp_options(p)
    p.add_argument("--bundle", metavar="DIR",
                   help="write a self-contained audit record here: dated report (JSON and "
                        "Markdown), transcript, encrypted benchmark, run and the verify command "
                        "(never the keys)")
    _predictions_option(p)
    _table_options(p)
    _audit_options(p)
    p = add("register-benchmark", cmd_register_benchmark,
            "Auditor: register a CSV, Parquet or saved datasets table under an id (kept in "
            "$FHE_AUDIT_HOME, default ~/.fhe-audit).")
    p.add_argument("file", help="the table: a .csv or .parquet file, or a save_to_disk folder")
    p.add_argument("--id", required=True, help="the id to pass as --benchmark from now on")
    p.add_argument("--description", default="")
    _table_options(p)
    p = add("import-model", cmd_import_model,
            "Model owner: make a model package from a Concrete ML deployment (FHEModelDev).")
    p.add_argument("--deployment", required=True, help="the folder with client.zip, server.zip")
    p.add_argument("--schema", required=True, help="JSON: class_names, columns, preprocessing "
                   "(see fhe_backend/owner/importer.py)")
    p.add_argument("--out", required=True, help="the new model package folder")
    p.add_argument("--validation", help="optional labelled table (or benchmark) to measure the "
                                        "circuit's accuracy on, in Concrete's simulator")
    _table_options(p)
    p = add("bench", cmd_bench, "Measure per-sample FHE latency (ours vs plain Concrete ML), "
                                "or with --scheduler/--workers the throughput of Dask workers.")
    p.add_argument("--model", required=True, help="a model, or 'all' for the whole zoo")
    p.add_argument("--benchmark")
    p.add_argument("--limit", type=_positive,
                   help=f"samples (default {LATENCY_SAMPLES}; {SCALING_SAMPLES} with Dask)")
    p.add_argument("--sealed", action="store_true",
                   help="the sealed audit module in real FHE (count per batch, add per step of "
                        "the chain) vs the plain circuit; --limit K batches (default 2)")
    p.add_argument("--record", action="store_true",
                   help="with --sealed: write the measured seconds per batch into the package's "
                        "manifest (sealed.measured), for the cost estimates")
    p.add_argument("--sealed-leak", action="store_true",
                   help="no FHE: the share of predictions a sealed audit's decrypted counts "
                        "reveal to an honest-but-curious and to a malicious auditor")
    _cluster_options(p, "samples/s of 1 worker of the cluster at ADDR, then of all of them",
                     "samples/s of 1 and K local workers, and of 1 worker with K threads")

    def add_publish(name: str, func: Callable[[argparse.Namespace], int], help_: str,
                    source: str) -> argparse.ArgumentParser:
        p = add(name, func, help_)
        p.add_argument(source, required=True)
        p.add_argument("--repo", required=True, help="OWNER/NAME on the Hub (token: HF_TOKEN)")
        p.add_argument("--private", action="store_true", help="create the repo as private")
        p.add_argument("--dry-run", action="store_true", help="only write the folder to --out")
        p.add_argument("--out", help="keep the exact folder that is (or would be) uploaded here")
        return p

    add_publish("publish-model", cmd_publish_model,
                "Model owner: publish a model package to a Hub model repo.", "--model")
    add_publish("publish-benchmark", cmd_publish_benchmark,
                "Auditor: publish an encrypted benchmark to a Hub dataset repo.", "--encrypted")
    p = add_publish("publish-run", cmd_publish_run,
                    "Server: publish a run (encrypted outputs + transcript) to a Hub dataset repo.",
                    "--run")
    p.add_argument("--metrics", help="auditor: also publish these decrypted metrics "
                                     "(the output of decrypt --json)")
    _challenge_commands(sub, add)
    _selfcheck_commands(sub)
    return parser


def _selfcheck_commands(sub: Any) -> None:
    """``selfcheck intervals``: the coverage of the tool's 95% intervals (audits/selfcheck.py)."""
    selfcheck = sub.add_parser("selfcheck", help="Anyone: check the tool's own statistics.",
                               description="Anyone: check the tool's own statistics.")
    actions = selfcheck.add_subparsers(dest="action", required=True)
    p = actions.add_parser(
        "intervals", help="the empirical coverage of every kind of published 95% interval on "
                          "synthetic test sets with known truth, and the time they cost")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--replicates", type=_positive, default=SELFCHECK_REPLICATES,
                   metavar="R",
                   help=f"synthetic test sets per setting (default {SELFCHECK_REPLICATES})")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the synthetic sets (default 0)")
    p.set_defaults(func=cmd_selfcheck)


def _challenge_commands(sub: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    """The test-set game (fhe_backend.challenge): challenge init/publish/sign-run/attack-sim,
    submit, desk, leaderboard, verify-result."""
    from .challenge.attack import DEFAULT_POLICIES
    from .challenge.policy import DEFAULT_BUDGET

    about = ("Auditor: create or publish a challenge; runner: sign a run; organiser: simulate "
             "the boosting attack under each release policy.")
    challenge = sub.add_parser("challenge", help=about, description=about)
    actions = challenge.add_subparsers(dest="action", required=True)
    p = actions.add_parser("init", help="write a challenge folder on a hidden benchmark")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_challenge_init)
    p.add_argument("--benchmark", required=True, help=BENCHMARK_HELP)
    p.add_argument("--metric", default="accuracy",
                   help="accuracy, balanced_accuracy, f1, precision or recall")
    p.add_argument("--policy", default="ladder:0.01",
                   help="ladder:STEP, ladder:auto (accuracy) or round:DIGITS; one Ladder state "
                        "per challenge (see challenge attack-sim)")
    p.add_argument("--quota", default="3/day",
                   help="accepted submissions per submitter (names case-folded): N/day")
    p.add_argument("--budget", default=DEFAULT_BUDGET,
                   help=f"hidden-set evaluations per UTC day, all submitters together: N/day or "
                        f"none (default {DEFAULT_BUDGET}); the rest waits for the next day")
    p.add_argument("--identity", required=True,
                   help="the auditor's identity folder (Ed25519 key pair, created if absent)")
    p.add_argument("--out", required=True, help="the new challenge folder")
    p.add_argument("--id", help="the challenge's id (default: the folder's name)")
    p = actions.add_parser("publish", help="publish a challenge's public files to a Hub "
                                           "dataset repo (no work folders, no keys)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_challenge_publish)
    p.add_argument("--challenge", required=True)
    p.add_argument("--repo", required=True, help="OWNER/NAME on the Hub (token: HF_TOKEN)")
    p.add_argument("--private", action="store_true", help="create the repo as private")
    p.add_argument("--dry-run", action="store_true", help="only write the folder to --out")
    p.add_argument("--out", help="keep the exact folder that is (or would be) uploaded here")
    p = actions.add_parser("sign-run", help="sign a run made for a submission that names you "
                                            "as its runner (--runner-key)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_challenge_sign_run)
    p.add_argument("--challenge", required=True)
    p.add_argument("--submission", required=True, help="the submission's id")
    p.add_argument("--identity", required=True, help="the runner's identity folder")
    p.add_argument("--run", help="the run folder (default: CHALLENGE/runs/ID)")
    p = actions.add_parser("attack-sim", help="the boosting attack's inflation under each "
                                              "release policy (plaintext simulation)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_challenge_attack_sim)
    p.add_argument("--n", type=_at_least_two, default=171, help="hidden samples (default 171)")
    p.add_argument("--submissions", type=_at_least_two, default=1000,
                   help="evaluations the attacker gets (default 1000)")
    p.add_argument("--policy", default=DEFAULT_POLICIES,
                   help=f"comma-separated: raw or challenge policies (default {DEFAULT_POLICIES})")
    p.add_argument("--trials", type=_positive, default=20, help="attacks averaged (default 20)")
    p.add_argument("--seed", type=_seed, default=0)
    where = "a challenge folder or hf://datasets/OWNER/NAME"
    p = add("submit", cmd_submit, "Model owner: submit a model package to a challenge.")
    p.add_argument("--challenge", required=True, help=where)
    p.add_argument("--model", required=True, help="zoo id, package folder or hf://OWNER/NAME")
    p.add_argument("--submitter", required=True)
    p.add_argument("--identity", metavar="DIR",
                   help="the submitter's identity folder (Ed25519 key pair, created if absent): "
                        "the submission is signed and the name bound to this key")
    p.add_argument("--runner-key", metavar="HEX",
                   help="public key of the server that will run it (needs --identity): only "
                        "a run it signs in CH/runs/ID/ counts, the desk runs it otherwise")
    p = add("desk", cmd_desk, "Auditor: score every pending submission of a challenge in FHE "
                              "and write signed results.")
    p.add_argument("--challenge", required=True,
                   help=where + " (worked on in a local mirror, results uploaded)")
    p.add_argument("--keys", required=True, help="the auditor's key directory")
    p.add_argument("--identity", required=True, help="the identity that created the challenge")
    p.add_argument("--once", action="store_true",
                   help="process what is pending and exit (default: keep polling)")
    p.add_argument("--scheduler", metavar="ADDR", help="run on the Dask scheduler at ADDR")
    p.add_argument("--spot-check", type=_positive, default=None, metavar="K",
                   help="outputs to re-execute of a run made by another server (default: "
                        "enough for a 95%% chance to catch a change of one release step)")
    p.add_argument("--wait-for-runs", action="store_true",
                   help="do not run submissions that name a runner: wait for its signed run "
                        "in CH/runs/ID/")
    p.add_argument("--mode", default="auto",
                   help="auto: sealed where the package has a sealed circuit, per-sample "
                        "otherwise; per-sample: always; sealed: reject packages without one")
    p = add("leaderboard", cmd_leaderboard, "Anyone: the ranked, verified results of a "
                                            "challenge.")
    p.add_argument("--challenge", required=True, help=where)
    p = add("verify-result", cmd_verify_result, "Anyone: check a result's signature and "
                                                "transcript hashes (exit 0 verified, 1 not).")
    p.add_argument("file", help="the result file (or results/ID.json inside the challenge)")
    p.add_argument("--challenge", required=True, help=where)


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


def _check_folders(args: argparse.Namespace) -> None:
    """A folder argument that names an existing file is refused before any work is done."""
    for option in ("out", "keys"):
        value = getattr(args, option, None)
        if value and Path(value).exists() and not Path(value).is_dir():
            raise AuditError(f"--{option} {value} is a file; give a folder (new or existing).")


def _os_error(exc: OSError) -> str:
    """The file system's refusal in one sentence: the path and the reason, never file content."""
    where = f" {exc.filename}" if exc.filename else ""
    return f"Cannot use{where}: {exc.strerror or type(exc).__name__}."


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.output = None
    try:
        with _stdout_to_stderr():
            _check_folders(args)
            code = args.func(args)
    except AuditError as exc:
        # One line, whatever a library put into the message (e.g. a stack dump of Concrete's).
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        print(f"error: {lines[0][:2000]}", file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_ERROR)  # an incomplete run: 1
    except OSError as exc:  # a full disk, a read-only or missing folder, a file for a folder
        print(f"error: {_os_error(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except RecursionError:  # only hostile input nests deep enough to get here
        print("error: An input file is nested too deeply to be read.", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        resumes = ("; the run is interrupted, and a rerun into the same --out folder resumes "
                   "it" if args.command == "run" else "")
        print(f"error: interrupted{resumes}.", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.output is not None:
        print(args.output)
    return code
