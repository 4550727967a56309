"""Event functions: call the backend, turn its one-sentence errors into ``gr.Error``.

Each function is the whole of one UI action or API endpoint. Backend errors
(:class:`~fhe_backend.errors.AuditError`) reach the user as their sentence; anything else is
logged with its traceback and reaches the user as one sentence too, so the app keeps serving.
"""

from __future__ import annotations

import importlib
import logging
import re
import shlex
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gradio as gr

from .. import distributed
from ..artifacts import EncryptedBenchmark, ModelPackage, RunResult
from ..benchmarks import PlainBenchmark, benchmark_from_upload
from ..demo import FHE_MODES, StageProgress, check_fit, run_audit
from ..errors import AuditError, NotFoundError
from ..hub import is_hub_ref
from ..references import resolve_benchmark, resolve_model
from ..server import FHEServer
from ..verifier import verify_run
from ..zoo import benchmark_ids, benchmarks_for, model_ids
from . import render, sessions, texts
from .settings import max_execute_samples, max_queries

log = logging.getLogger(__name__)
# Gradio recognises a progress parameter by this default and hands each call its own callback.
PROGRESS = gr.Progress()

SAFE_NAME = re.compile(r"[^\w.-]")


@contextmanager
def user_errors(action: str) -> Iterator[None]:
    """AuditError -> its sentence; an unexpected exception -> a sentence, traceback in the log."""
    try:
        yield
    except gr.Error:
        raise
    except AuditError as exc:
        raise gr.Error(str(exc), print_exception=False) from exc
    except Exception as exc:
        log.exception("%s failed", action)
        raise gr.Error(texts.UNEXPECTED.format(action=action, kind=type(exc).__name__),
                       print_exception=False) from exc


# -- choosing inputs -------------------------------------------------------------------------


def _zoo_only(ref: str, ids: list[str], kind: str) -> None:
    # The zoo's resolvers also accept folder paths; a public page must not open arbitrary folders.
    if ref not in ids:
        raise NotFoundError(texts.NOT_IN_ZOO.format(kind=kind, ref=ref,
                                                    known=", ".join(ids) or "none"))


def zoo_model(model_id: str) -> ModelPackage:
    _zoo_only(model_id, model_ids(), "model")
    return resolve_model(model_id)


def audit_model(ref: str) -> ModelPackage:
    """The Audit tab's model: a zoo id or a Hub reference ``hf://OWNER/NAME[@REV]``, never a
    folder path."""
    ref = (ref or "").strip()
    # Hub client failures of every kind become one sentence (gr.Error), as on the Hub tab.
    return _from_hub(resolve_model, ref) if is_hub_ref(ref) else zoo_model(ref)


def fitting_benchmarks(model_ref: str, package: ModelPackage) -> list[str]:
    # A Hub package fits the zoo benchmarks that name its model id.
    return benchmarks_for(package.model_id if is_hub_ref(model_ref) else model_ref)


def zoo_benchmark(benchmark_id: str) -> PlainBenchmark:
    _zoo_only(benchmark_id, benchmark_ids(), "benchmark")
    return resolve_benchmark(benchmark_id)


def _sample_count(package: ModelPackage, n_bench: int, fhe_mode: str) -> tuple[int, int]:
    """(largest allowed, suggested): real FHE is capped and aims at about a minute of run."""
    top = max(1, min(n_bench, max_execute_samples() if fhe_mode == "execute" else n_bench))
    return top, render.suggested_samples(package, top, fhe_mode)


def _slider(top: int, value: int) -> gr.Slider:
    return gr.Slider(minimum=1, maximum=top, value=value, step=1,
                     info=texts.SAMPLES_INFO.format(cap=max_execute_samples()))


def _estimate_and_cli(model_id: str | None, benchmark_id: str | None, fhe_mode: str,
                      n: float | None) -> tuple[str, str]:
    if not model_id or not benchmark_id or not n:
        return "", ""
    try:
        package = audit_model(model_id)
    except (AuditError, gr.Error):
        return "", ""  # the model card already shows why
    count = int(n)
    return (render.estimate(package, count, fhe_mode),
            render.cli_command(model_id, benchmark_id, fhe_mode, count))


def select_model(model_id: str | None, benchmark_id: str | None, fhe_mode: str,
                 ) -> tuple[Any, ...]:
    """Model card and input schema; benchmarks narrowed to those that fit (keeping the current
    one if it does)."""
    if not model_id:
        return (texts.CHOOSE_MODEL, texts.NO_SCHEMA, gr.Dropdown(choices=[], value=None),
                gr.skip(), "", "")
    try:
        package = audit_model(model_id)
    except (AuditError, gr.Error) as exc:
        return (texts.PACKAGE_BROKEN.format(error=getattr(exc, "message", exc)), texts.NO_SCHEMA,
                gr.Dropdown(choices=[], value=None), gr.skip(), "", "")
    fits = fitting_benchmarks(model_id, package)
    chosen = benchmark_id if benchmark_id in fits else (fits[0] if fits else None)
    card, schema = render.model_card(package), render.schema_markdown(package)
    if chosen is None:
        card += "\n\n" + texts.NO_FITTING_BENCHMARK.format(model=model_id)
        return card, schema, gr.Dropdown(choices=[], value=None), gr.skip(), "", ""
    top, n = _sample_count(package, zoo_benchmark(chosen).n_samples, fhe_mode)
    return (card, schema, gr.Dropdown(choices=fits, value=chosen), _slider(top, n),
            *_estimate_and_cli(model_id, chosen, fhe_mode, n))


def select_run_settings(model_id: str | None, benchmark_id: str | None,
                        fhe_mode: str) -> tuple[Any, ...]:
    """Benchmark or mode changed: the sample range and count suggested for them, estimate, CLI.

    The count is reset rather than carried over: the events that a page load triggers would
    otherwise race and carry over a stale count."""
    if not model_id or not benchmark_id:
        return gr.skip(), "", ""
    try:
        package = audit_model(model_id)
        n_bench = zoo_benchmark(benchmark_id).n_samples
    except (AuditError, gr.Error):
        return gr.skip(), "", ""
    top, count = _sample_count(package, n_bench, fhe_mode)
    return (_slider(top, count), *_estimate_and_cli(model_id, benchmark_id, fhe_mode, count))


def describe_run(model_id: str | None, benchmark_id: str | None, fhe_mode: str,
                 n: float | None) -> tuple[str, str]:
    """Sample count changed: estimate and CLI line."""
    return _estimate_and_cli(model_id, benchmark_id, fhe_mode, n)


def load_page(request: gr.Request) -> tuple[Any, ...]:
    """Fresh zoo listing, and ``?model=&benchmark=&fhe=`` preselecting the inputs (shareable)."""
    params = dict(request.query_params) if request is not None else {}
    ids = model_ids()
    model_id = params.get("model")
    if model_id and model_id not in ids:
        gr.Warning(texts.UNKNOWN_QUERY_MODEL.format(model=model_id))
    if model_id not in ids:
        model_id = ids[0] if ids else None
    fhe_mode = params.get("fhe") if params.get("fhe") in FHE_MODES else "execute"
    wanted = params.get("benchmark")
    if wanted and model_id and wanted not in benchmarks_for(model_id):
        gr.Warning(texts.UNFITTING_QUERY_BENCHMARK.format(benchmark=wanted, model=model_id))
    card, schema, benchmarks, slider, estimate, cli = select_model(model_id, wanted, fhe_mode)
    return (gr.Dropdown(choices=ids, value=model_id), fhe_mode,
            card if ids else texts.NO_MODELS, schema, benchmarks, slider, estimate, cli)


# -- running an audit ------------------------------------------------------------------------


def stage_progress(progress: gr.Progress, fhe_mode: str,
                   unit: str = "samples") -> StageProgress:
    """Progress by role; ``unit`` names what the FHE stages count (samples, or queries)."""
    steps = texts.STEPS[fhe_mode]
    order = list(steps)

    def report(stage: str, done: int, total: int) -> None:
        label = f"Step {order.index(stage) + 1}/{len(order)} · {steps[stage]}"
        if total > 1:
            label = texts.SAMPLE_PROGRESS.format(label=label, done=done, total=total, unit=unit)
        progress((done, total), desc=label, unit=unit if total > 1 else "steps")

    return report


def _whole(value: float | None) -> bool:
    return value is None or (value >= 1 and value == int(value))


def prepare(model_id: str | None, benchmark_id: str | None, fhe_mode: str,
            limit: float | None, budget: float | None = None, *, allow_hub: bool = False,
            ) -> tuple[ModelPackage, PlainBenchmark, int | None, int | None]:
    """Refuse a bad request before any key is generated; the limit and budget as integers.
    ``allow_hub``: the model may also be an hf:// reference (the Audit tab)."""
    if not benchmark_id:
        _check_request(model_id, fhe_mode, limit, budget)  # says "choose a model" first
        raise gr.Error(texts.CHOOSE_BENCHMARK, print_exception=False)
    package = prepare_model(model_id, fhe_mode, limit, budget, allow_hub=allow_hub)
    with user_errors("audit"):
        bench = zoo_benchmark(benchmark_id)
        check_fit(package, bench)
    return (package, bench, None if limit is None else int(limit),
            None if budget is None else int(budget))


def prepare_model(model_id: str | None, fhe_mode: str, limit: float | None,
                  budget: float | None = None, *, allow_hub: bool = False) -> ModelPackage:
    _check_request(model_id, fhe_mode, limit, budget)
    with user_errors("audit"):
        return audit_model(model_id or "") if allow_hub else zoo_model(model_id or "")


def _check_request(model_id: str | None, fhe_mode: str, limit: float | None,
                   budget: float | None) -> None:
    if not model_id:
        raise gr.Error(texts.CHOOSE_MODEL, print_exception=False)
    if fhe_mode not in FHE_MODES:
        raise gr.Error(texts.UNKNOWN_MODE.format(mode=fhe_mode), print_exception=False)
    if not _whole(limit):
        raise gr.Error(texts.BAD_LIMIT, print_exception=False)
    if not _whole(budget):
        raise gr.Error(texts.BAD_BUDGET, print_exception=False)


def session_upload(session: sessions.Session, upload: str) -> Path:
    """The uploaded table, moved out of Gradio's shared cache into the session's folder (removed
    with the session); a re-run of the same upload reuses that copy."""
    if session.upload and session.upload[0] == upload and session.upload[1].is_file():
        return session.upload[1]
    source = Path(upload)
    if not source.is_file():
        raise gr.Error(texts.UPLOAD_GONE, print_exception=False)
    target = sessions.fresh_dir(session, "upload") / SAFE_NAME.sub("_", source.name)
    shutil.copyfile(source, target)
    source.unlink(missing_ok=True)
    session.upload = (upload, target)
    return target


def prepare_audit(model_id: str | None, benchmark_id: str | None, fhe_mode: str,
                  limit: float | None, upload: str | None, label_column: str | None,
                  id_column: str | None, sensitive_columns: str | None,
                  session: sessions.Session) -> tuple[ModelPackage, PlainBenchmark, int | None]:
    """The Audit tab's request: a zoo id or Hub model; the uploaded table when there is one,
    checked against the model's input schema, else the zoo benchmark."""
    if not upload:
        package, bench, limit, _ = prepare(model_id, benchmark_id, fhe_mode, limit,
                                           allow_hub=True)
        return package, bench, limit
    package = prepare_model(model_id, fhe_mode, limit, allow_hub=True)
    with user_errors("audit"):
        bench = benchmark_from_upload(session_upload(session, upload), label_column,
                                      id_column, sensitive_columns)
        bench.check_inputs(package.manifest.input_schema, package.manifest.class_names)
    return package, bench, None if limit is None else int(limit)


def limit_problem(n_queries: int, fhe_mode: str) -> str | None:
    """The sentence refusing ``n_queries`` in ``fhe_mode`` on this Space, if over a limit."""
    cap = max_execute_samples()
    if fhe_mode == "execute" and n_queries > cap:
        return texts.EXECUTE_CAP.format(cap=cap, n=n_queries)
    cap = max_queries()
    if n_queries > cap:
        return texts.QUERY_CAP.format(cap=cap, n=n_queries)
    return None


def check_limits(plan: dict[str, Any]) -> None:
    """``run_audit``'s ``on_plan``: refuse a request over the limits before any key exists."""
    problem = limit_problem(plan["n_queries"], plan["fhe_mode"])
    if problem:
        raise gr.Error(problem, print_exception=False)


def run_audit_api(model: str, benchmark: str, fhe_mode: str = "execute",
                  limit: int | None = None, audits: str = "accuracy",
                  budget: int | None = None) -> dict[str, Any]:
    """Audit MODEL on BENCHMARK in FHE_MODE ("execute" or "simulate") on the first LIMIT
    samples (None = all). AUDITS is a comma-separated list of accuracy, fairness,
    counterfactual, importance, surrogate; BUDGET the most FHE queries (samples + probes) to
    run (None = no budget). Returns exactly the JSON object of ``python -m fhe_backend audit
    --model MODEL --benchmark BENCHMARK --fhe FHE_MODE --audits AUDITS --json``."""
    package, bench, limit, budget = prepare(model, benchmark, fhe_mode, limit, budget)
    with user_errors("audit"):
        return run_audit(package, bench, fhe_mode=fhe_mode, limit=limit,
                         audits=audits or "accuracy", budget=budget,
                         on_plan=check_limits).report


def audit(model_id: str | None, benchmark_id: str | None, fhe_mode: str, n: float | None,
          upload: str | None = None, label_column: str | None = "label",
          id_column: str | None = None, sensitive_columns: str | None = None,
          request: gr.Request | None = None, progress: gr.Progress = PROGRESS,
          ) -> tuple[Any, ...]:
    """The Run button: every role in turn, results labelled with the mode that made them. An
    uploaded CSV or Parquet file, when given, replaces the zoo benchmark."""
    session = sessions.session_for(request)
    package, bench, limit = prepare_audit(model_id, benchmark_id, fhe_mode, n, upload,
                                          label_column, id_column, sensitive_columns, session)
    session.last_audit = None  # a failed run must not leave the previous one verifiable
    work = sessions.fresh_dir(session, "audit")
    with user_errors("audit"):
        outcome = run_audit(package, bench, fhe_mode=fhe_mode, limit=limit, out_dir=work,
                            progress=stage_progress(progress, fhe_mode), on_plan=check_limits)
    report, mode = outcome.report, render.mode_label(fhe_mode)
    session.last_audit = sessions.LastAudit(
        package.model_id, bench.benchmark_id, fhe_mode, package.path,
        outcome.encrypted_dir, outcome.run_dir)
    pbs = package.manifest.circuit.get("pbs_count", "n/a")
    return (
        render.banner(report),
        gr.Dataframe(value=render.metric_rows(report), label=f"Metrics · {mode}"),
        gr.Plot(value=render.confusion_figure(report, package.manifest.class_names),
                label=f"Confusion matrix · {mode}"),
        gr.Dataframe(value=render.fhe_rows(report, pbs), label=f"FHE figures · {mode}"),
        gr.Textbox(value=outcome.first_ciphertext_hex or texts.NO_PREVIEW,
                   label=f"First input ciphertext, first 64 bytes in hex · {mode}"),
        gr.JSON(value=render.transcript_view(report), label=f"Transcript and hashes · {mode}"),
        gr.File(value=[str(p) for p in render.write_reports(report, package, work)],
                label=f"Audit report, JSON and Markdown · {mode}"),
        "",  # the previous verification no longer applies
    )


def verify(n: float | None, request: gr.Request,
           progress: gr.Progress = PROGRESS) -> str:
    """Re-execute this session's latest real-FHE run (its first N samples; 0 or None: all) and
    compare every hash with the transcript."""
    last = sessions.session_for(request).last_audit
    if last is None or last.fhe_mode != "execute" or last.run_dir is None:
        raise gr.Error(texts.VERIFY_NEEDS_EXECUTE, print_exception=False)
    if n is not None and n < 0:
        raise gr.Error(texts.BAD_LIMIT, print_exception=False)

    def step(done: int, total: int, _sample_id: str) -> None:
        progress((done, total), desc=texts.VERIFY_PROGRESS, unit="samples")

    with user_errors("verification"):
        result = verify_run(ModelPackage.load(last.package_path),
                            EncryptedBenchmark.load(last.encrypted_dir),
                            RunResult.load(last.run_dir),
                            limit=int(n) if n else None, progress=step)
    return texts.VERIFY_RESULT.format(
        status=("❌ Hashes do not match" if result.problems
                else "⚠️ Inconclusive" if result.n_inconclusive else "✅ Hashes match"),
        mode=render.mode_label(last.fhe_mode), model=last.model_id,
        benchmark=last.benchmark_id, summary=result.summary())


# -- server role on Hub artifacts ------------------------------------------------------------


def _hub_module() -> Any:
    # Imported lazily: the Hub client is optional and must not slow down or break start-up.
    try:
        hub = importlib.import_module("fhe_backend.hub")
    except ImportError as exc:
        log.warning("fhe_backend.hub is not importable: %s", exc)
        raise gr.Error(texts.HUB_MISSING, print_exception=False) from exc
    return hub


def _from_hub(resolve: Callable[[str], Any], ref: str) -> Any:
    try:
        return resolve(ref)
    except AuditError as exc:
        raise gr.Error(str(exc), print_exception=False) from exc
    except Exception as exc:  # network and Hub client failures of every kind
        log.exception("resolving %s failed", ref)
        raise gr.Error(texts.HUB_UNREACHABLE.format(kind=type(exc).__name__),
                       print_exception=False) from exc


def server_run(model_ref: str, benchmark_ref: str, request: gr.Request,
               progress: gr.Progress = PROGRESS) -> tuple[str, dict[str, Any], str, str]:
    """Run a Hub model package on a Hub encrypted benchmark; no key, no plaintext involved."""
    model_ref, benchmark_ref = (model_ref or "").strip(), (benchmark_ref or "").strip()
    if not model_ref or not benchmark_ref:
        raise gr.Error(texts.HUB_REFS_NEEDED, print_exception=False)
    hub = _hub_module()
    progress(0.0, desc=texts.HUB_DOWNLOAD)
    package: ModelPackage = _from_hub(hub.resolve_model_ref, model_ref)
    encrypted: EncryptedBenchmark = _from_hub(hub.resolve_encrypted_ref, benchmark_ref)
    cap = max_execute_samples()
    if encrypted.manifest.n_samples > cap:
        raise gr.Error(texts.SERVER_CAP.format(cap=cap, n=encrypted.manifest.n_samples),
                       print_exception=False)
    # The benchmark id comes from a downloaded manifest: keep it from escaping the folder.
    name = "fhe-run-" + SAFE_NAME.sub("_", encrypted.manifest.benchmark_id)
    out_dir = sessions.fresh_dir(sessions.session_for(request), "server") / name
    with user_errors("server run"):
        run = FHEServer(package).run(
            encrypted, out_dir, executor=distributed.executor_from_env(),
            progress=lambda done, total, _record: progress(
                (done, total), desc=texts.SERVER_PROGRESS, unit="samples"),
            # The repos and commits the inputs came from, recorded as the CLI's run records them.
            sources=hub.transcript_sources(model_ref, package, benchmark_ref, encrypted))
    archive = Path(shutil.make_archive(str(out_dir), "zip", out_dir.parent, name))
    t = run.transcript
    status = texts.SERVER_DONE.format(model=t.model_id, benchmark=t.benchmark_id,
                                      n=t.n_samples, failed=t.n_failed,
                                      per_sample=t.fhe_s_per_sample, outputs=t.outputs_sha256)
    command = texts.DECRYPT_COMMAND.format(archive=shlex.quote(archive.name), run=shlex.quote(name),
                                           benchmark=shlex.quote(t.benchmark_id))
    return status, render.transcript_summary(t.to_dict()), str(archive), command
