"""Event functions: call the backend, turn its one-sentence errors into ``gr.Error``.

Each function is the whole of one UI action or API endpoint. Backend errors
(:class:`~fhe_backend.errors.AuditError`) reach the user as their sentence; anything else is
logged with its traceback and reaches the user as one sentence too, so the app keeps serving.
"""

from __future__ import annotations

import importlib
import logging
import math
import re
import shlex
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from .. import modes
from ..auditor.benchmarks import PlainBenchmark, benchmark_from_upload
from ..errors import AuditError, NotFoundError, SchemaError
from ..formats.artifacts import EncryptedBenchmark, ModelPackage, RunResult
from ..hub.references import resolve_benchmark, resolve_model
from ..hub.remote import is_hub_ref
from ..hub.zoo import benchmark_ids, benchmarks_for, model_ids
from ..orchestration import AuditOutcome, StageProgress, check_fit, run_audit
from ..report import bundle_outcome
from ..server import distributed
from ..server.run import FHEServer
from ..verifier.verify import verify_run
from . import links, render, sessions, texts, timings
from .settings import MAX_FILE_SIZE, max_execute_samples, max_queries, max_sealed_batches

log = logging.getLogger(__name__)
# Gradio recognises a progress parameter by this default and hands each call its own callback.
PROGRESS = gr.Progress()

SAFE_NAME = re.compile(r"[^\w.-]")
# "/tmp/fhe-audit-session-x/upload/empty.csv" -> "empty.csv"
ABSOLUTE_PATH = re.compile(r"(?:/[^\s/'\"(),]+)+/([^\s/'\"(),]+)")
DECIMAL_COMMA = r"^(-?\d+),(\d+)$"


@contextmanager
def user_errors(action: str) -> Iterator[None]:
    """AuditError -> its sentence; an unexpected exception -> a sentence, traceback in the log."""
    try:
        yield
    except gr.Error:
        raise
    except sessions.SessionClosed as exc:
        log.info("%s stopped: its tab was closed", action)
        raise gr.Error(texts.SESSION_CLOSED, print_exception=False) from exc
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


def sealed_cap(package: ModelPackage) -> int:
    """Most samples of one sealed audit here: a couple of batches (their keys alone take
    minutes), and never more than real FHE's cap."""
    return min(max_execute_samples(), max_sealed_batches() * render.sealed_batch_size(package))


def _sample_count(package: ModelPackage, n_bench: int, fhe_mode: str) -> tuple[int, int]:
    """(largest allowed, suggested): real FHE is capped and aims at about a minute of run;
    sealed real FHE is capped at a couple of batches."""
    cap = n_bench
    if fhe_mode == modes.SEALED:
        cap = sealed_cap(package)
    elif modes.get(fhe_mode).real_fhe:
        cap = max_execute_samples()
    top = max(1, min(n_bench, cap))
    return top, render.suggested_samples(package, top, fhe_mode)


def _slider(top: int, value: int, fhe_mode: str = modes.EXECUTE,
            package: ModelPackage | None = None) -> gr.Slider:
    info = (texts.SEALED_SAMPLES_INFO.format(batches=max_sealed_batches(),
                                             batch=render.sealed_batch_size(package),
                                             cap=max_execute_samples())
            if fhe_mode == modes.SEALED and package is not None else
            texts.SAMPLES_INFO.format(cap=max_execute_samples()))
    return gr.Slider(minimum=1, maximum=top, value=value, step=1, info=info)


def mode_radio(package: ModelPackage | None, fhe_mode: str) -> tuple[gr.Radio, str]:
    """The Mode radio for this model: sealed is offered only when its package carries a sealed
    circuit (else the radio says why); a sealed choice then falls back to execute."""
    if package is None:
        return gr.Radio(choices=render.mode_choices(), value=fhe_mode, info=None), fhe_mode
    problem = render.sealed_unavailable(package)
    # Who can verify this model's runs is said here, before any run (verifier/verify.py).
    verifiable = render.verifiability(package)
    if problem is None:
        return gr.Radio(choices=render.mode_choices(), value=fhe_mode, info=(
            texts.SEALED_INFO.format(model=package.model_id) + " " + verifiable)), fhe_mode
    if fhe_mode == modes.SEALED:
        fhe_mode = modes.EXECUTE
    return (gr.Radio(choices=render.mode_choices(modes.PER_SAMPLE), value=fhe_mode,
                     info=problem + " " + verifiable), fhe_mode)


def _benchmark_size(benchmark_id: str, session: sessions.Session | None) -> tuple[str, int]:
    """The benchmark's name on the command line and its sample count: a zoo id, or this
    session's uploaded table."""
    if is_upload_choice(benchmark_id):
        if session is None or session.table is None:
            raise NotFoundError(texts.UPLOAD_GONE)
        return session.table.path.name, session.table.n_samples
    return benchmark_id, zoo_benchmark(benchmark_id).n_samples


def _estimate_and_cli(model_id: str | None, benchmark_id: str | None, fhe_mode: str,
                      n: float | None, session: sessions.Session | None = None,
                      ) -> tuple[str, str]:
    if not model_id or not benchmark_id or not n:
        return "", ""
    try:
        package = audit_model(model_id)
        name, _ = _benchmark_size(benchmark_id, session)
    except (AuditError, gr.Error):
        return "", ""  # the model card already shows why
    count = int(n)
    return (render.estimate(package, count, fhe_mode),
            render.cli_command(model_id, name, fhe_mode, count))


def select_model(model_id: str | None, benchmark_id: str | None, fhe_mode: str,
                 ) -> tuple[Any, ...]:
    """Mode radio (sealed only for a model with a sealed circuit), model card and input
    schema; benchmarks narrowed to those that fit (keeping the current one if it does)."""
    return _select_model(model_id, benchmark_id, fhe_mode, None)


def _select_model(model_id: str | None, benchmark_id: str | None, fhe_mode: str,
                  link: links.Link | None) -> tuple[Any, ...]:
    if not model_id:
        return (mode_radio(None, fhe_mode)[0], texts.CHOOSE_MODEL, texts.NO_SCHEMA,
                gr.Dropdown(choices=[], value=None), gr.skip(), "", "")
    try:
        package = audit_model(model_id)
    except (AuditError, gr.Error) as exc:
        return (gr.skip(), texts.PACKAGE_BROKEN.format(error=getattr(exc, "message", exc)),
                texts.NO_SCHEMA, gr.Dropdown(choices=[], value=None), gr.skip(), "", "")
    radio, wanted_mode = mode_radio(package, fhe_mode)
    if link is not None and wanted_mode != fhe_mode:
        link.warnings.append(render.sealed_unavailable(package) or "")
    fhe_mode = wanted_mode
    fits = fitting_benchmarks(model_id, package)
    chosen = benchmark_id if benchmark_id in fits else (fits[0] if fits else None)
    card, schema = render.model_card(package), render.schema_markdown(package)
    if chosen is None:
        card += "\n\n" + texts.NO_FITTING_BENCHMARK.format(model=model_id)
        return radio, card, schema, gr.Dropdown(choices=[], value=None), gr.skip(), "", ""
    top, n = _sample_count(package, zoo_benchmark(chosen).n_samples, fhe_mode)
    if link is not None:
        n = links.clamp_samples(link, top, n)
    return (radio, card, schema, gr.Dropdown(choices=fits, value=chosen),
            _slider(top, n, fhe_mode, package), *_estimate_and_cli(model_id, chosen, fhe_mode, n))


def select_run_settings(model_id: str | None, benchmark_id: str | None, fhe_mode: str,
                        request: gr.Request = None) -> tuple[Any, ...]:
    """Benchmark or mode changed: the sample range and count suggested for them, estimate, CLI.

    The count is reset rather than carried over: a new benchmark or mode has its own range."""
    session = sessions.existing_session(request)
    return select_run_settings_for(model_id, benchmark_id, fhe_mode, session)[1:]


def select_run_settings_for(model_id: str | None, benchmark_id: str | None, fhe_mode: str,
                            session: sessions.Session | None, *, reset: bool = False,
                            ) -> tuple[Any, ...]:
    """The benchmark box, sample slider, estimate and CLI line for these inputs. An uploaded
    table holds the benchmark box (Run audits it) until it is removed; ``reset``: the table
    was removed, the box lists the zoo benchmarks that fit again."""
    box: Any = gr.skip()
    if is_upload_choice(benchmark_id):
        box = gr.Dropdown(choices=[benchmark_id], value=benchmark_id, interactive=False,
                          info=texts.UPLOAD_IN_USE)
    elif reset:
        fits = benchmarks_for(model_id) if model_id in model_ids() else []
        benchmark_id = fits[0] if fits else None
        box = gr.Dropdown(choices=fits, value=benchmark_id, interactive=True,
                          info=texts.BENCHMARK_INFO)
    if not model_id or not benchmark_id:
        return box, gr.skip(), "", ""
    try:
        package = audit_model(model_id)
        _, n_bench = _benchmark_size(benchmark_id, session)
    except (AuditError, gr.Error):
        return box, gr.skip(), "", ""
    top, count = _sample_count(package, n_bench, fhe_mode)
    return (box, _slider(top, count, fhe_mode, package),
            *_estimate_and_cli(model_id, benchmark_id, fhe_mode, count, session))


def describe_run(model_id: str | None, benchmark_id: str | None, fhe_mode: str,
                 n: float | None, request: gr.Request = None) -> tuple[str, str]:
    """Sample count changed: estimate and CLI line."""
    return _estimate_and_cli(model_id, benchmark_id, fhe_mode, n,
                             sessions.existing_session(request))


def page_link(request: gr.Request | None) -> links.Link:
    return links.parse(dict(request.query_params) if request is not None else {})


def empty_results(banner: str = texts.NO_RESULT) -> tuple[Any, ...]:
    """The Audit tab's result components emptied: a page never shows a result beside inputs
    that did not make it (Gradio's deep links would restore stale ones)."""
    return (banner, gr.Dataframe(value=None, label="Metrics"),
            gr.Plot(value=None, label="Confusion matrix"),
            gr.Dataframe(value=None, label="FHE figures"),
            gr.Textbox(value="", label="First input ciphertext"),
            gr.JSON(value=None, label="Transcript and hashes"),
            gr.File(value=None, label="Audit report"), "")


def load_page(request: gr.Request | None = None) -> tuple[Any, ...]:
    """Fresh zoo listing; a link's ``?model=&benchmark=&fhe=&samples=`` preselect the inputs;
    results are always emptied (a Gradio deep link restores stale ones, see :mod:`links`)."""
    link = page_link(request).for_tab("audit")
    ids = model_ids()
    model_id = link.model
    if model_id and model_id not in ids and not is_hub_ref(model_id):
        gr.Warning(texts.UNKNOWN_QUERY_MODEL.format(model=links.shown(model_id)))
        model_id = None
    model_id = model_id or (ids[0] if ids else None)
    fhe_mode = link.fhe or "execute"
    wanted = link.benchmark
    if wanted and model_id in ids and wanted not in benchmarks_for(model_id):
        gr.Warning(texts.UNFITTING_QUERY_BENCHMARK.format(benchmark=links.shown(wanted),
                                                              model=model_id))
    parsed = len(link.warnings)  # the page's own load says the link's parse warnings
    radio, card, schema, benchmarks, slider, estimate, cli = _select_model(
        model_id, wanted, fhe_mode, link)
    for warning in link.warnings[parsed:]:
        gr.Warning(warning)
    restored = link.model or link.benchmark or link.samples or link.fhe
    return (gr.Dropdown(choices=ids, value=model_id), radio,
            card if ids else texts.NO_MODELS, schema, benchmarks, slider, estimate, cli,
            *empty_results(texts.LINK_RESTORED if restored else texts.NO_RESULT))


# -- running an audit ------------------------------------------------------------------------


def stage_progress(progress: gr.Progress, fhe_mode: str, unit: str = "samples",
                   abandoned: Callable[[], bool] | None = None) -> StageProgress:
    """Progress by role; ``unit`` names what the FHE stages count (samples, or queries). Once
    ``abandoned`` (sessions.abandoned: the tab closed) the next step raises SessionClosed: the
    job ends there instead of holding the FHE queue for nobody."""
    steps = texts.STEPS[fhe_mode]
    order = list(steps)

    def report(stage: str, done: int, total: int) -> None:
        if abandoned is not None and abandoned():
            raise sessions.SessionClosed
        label = f"Step {order.index(stage) + 1}/{len(order)} · {steps[stage]}"
        if total > 1:
            label = texts.SAMPLE_PROGRESS.format(label=label, done=done, total=total, unit=unit)
        progress((done, total), desc=label, unit=unit if total > 1 else "steps")

    return report


def unit_of(fhe_mode: str) -> str:
    """What the FHE stages count: a sealed audit encrypts and runs batches."""
    return "batches" if fhe_mode == modes.SEALED else "samples"


def whole_count(value: Any, message: str, *, zero_is_none: bool = False) -> int | None:
    """A sample count or budget as an int: None or empty for none, a whole number of at least
    1 otherwise, given as a number or as its text ("5"); ``message`` refuses anything else.
    ``zero_is_none``: 0 also means none (the Bias tab's budget box shows 0 for no budget)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise gr.Error(message, print_exception=False)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int past 1e308
        raise gr.Error(message, print_exception=False) from None
    if zero_is_none and number == 0:
        return None
    if not (math.isfinite(number) and number >= 1 and number == int(number)):
        raise gr.Error(message, print_exception=False)
    return int(number)


def prepare(model_id: str | None, benchmark_id: str | None, fhe_mode: str,
            limit: Any, budget: Any = None, *, allow_hub: bool = False,
            ) -> tuple[ModelPackage, PlainBenchmark, int | None, int | None]:
    """Refuse a bad request before any key is generated; the limit and budget as integers
    (a budget of 0 is no budget, as on the Bias tab). ``allow_hub``: the model may also be
    an hf:// reference."""
    if not benchmark_id:
        _check_request(model_id, fhe_mode, limit, budget)  # says "choose a model" first
        raise gr.Error(texts.CHOOSE_BENCHMARK, print_exception=False)
    package, limit, budget = prepare_model(model_id, fhe_mode, limit, budget,
                                           allow_hub=allow_hub)
    with user_errors("audit"):
        bench = zoo_benchmark(benchmark_id)
        check_fit(package, bench)
    return package, bench, limit, budget


def prepare_model(model_id: str | None, fhe_mode: str, limit: Any, budget: Any = None, *,
                  allow_hub: bool = False) -> tuple[ModelPackage, int | None, int | None]:
    limit, budget = _check_request(model_id, fhe_mode, limit, budget)
    with user_errors("audit"):
        package = audit_model(model_id or "") if allow_hub else zoo_model(model_id or "")
    return package, limit, budget


def _check_request(model_id: str | None, fhe_mode: str, limit: Any,
                   budget: Any) -> tuple[int | None, int | None]:
    if not model_id:
        raise gr.Error(texts.CHOOSE_MODEL, print_exception=False)
    if not isinstance(fhe_mode, str) or fhe_mode not in modes.MODES:  # the API takes any JSON
        raise gr.Error(texts.UNKNOWN_MODE.format(mode=fhe_mode, known=modes.known()),
                       print_exception=False)
    return (whole_count(limit, texts.BAD_LIMIT),
            whole_count(budget, texts.BAD_BUDGET, zero_is_none=True))


# -- an uploaded table -----------------------------------------------------------------------


def _semicolons_to_commas(path: Path) -> None:
    """A CSV saved with ``;`` between columns (and ``,`` as the decimal mark), as spreadsheets
    in many locales write it, rewritten as the comma-separated file the reader expects."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        header = handle.readline()
    if header.count(";") == 0 or header.count(",") > 0:
        return
    try:
        frame = pd.read_csv(path, sep=";", dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise SchemaError(texts.SEMICOLON_UNREADABLE.format(name=path.name)) from exc
    frame = frame.apply(lambda column: column.str.replace(DECIMAL_COMMA, r"\1.\2", regex=True))
    frame.to_csv(path, index=False)


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
    if target.suffix.lower() == ".csv":
        _semicolons_to_commas(target)
    return target


def _without_paths(message: str) -> str:
    """A backend sentence about an uploaded file with every folder removed: the visitor named
    the file, the Space's temporary folders are none of their business."""
    return ABSOLUTE_PATH.sub(r"\1", message)


def uploaded_benchmark(package: ModelPackage, upload: str, label_column: str | None,
                       id_column: str | None, sensitive_columns: str | None,
                       session: sessions.Session) -> PlainBenchmark:
    """The uploaded table as a benchmark, checked against the model's input schema; errors are
    one sentence with no server path, labels outside the model's classes name its classes."""
    try:
        with user_errors("upload"):
            bench = benchmark_from_upload(session_upload(session, upload), label_column,
                                          id_column, sensitive_columns)
            bench.check_inputs(package.manifest.input_schema, package.manifest.class_names)
    except gr.Error as exc:
        message = _without_paths(str(exc.message))
        if texts.OUTSIDE_CLASSES in message:
            message += " " + texts.LABELS_BY_NAME.format(
                classes=", ".join(package.manifest.class_names),
                column=(label_column or "label").strip() or "label")
        raise gr.Error(message, print_exception=False) from exc
    return bench


def prepare_audit(model_id: str | None, benchmark_id: str | None, fhe_mode: str,
                  limit: Any, upload: str | None, label_column: str | None,
                  id_column: str | None, sensitive_columns: str | None,
                  session: sessions.Session) -> tuple[ModelPackage, PlainBenchmark, int | None]:
    """The Audit tab's request: a zoo id or Hub model; the uploaded table when there is one,
    checked against the model's input schema, else the zoo benchmark."""
    if not upload:
        if is_upload_choice(benchmark_id):
            raise gr.Error(texts.UPLOAD_GONE, print_exception=False)
        package, bench, limit, _ = prepare(model_id, benchmark_id, fhe_mode, limit,
                                           allow_hub=True)
        return package, bench, limit
    package, limit, _ = prepare_model(model_id, fhe_mode, limit, allow_hub=True)
    bench = uploaded_benchmark(package, upload, label_column, id_column, sensitive_columns,
                               session)
    return package, bench, limit


def is_upload_choice(benchmark_id: str | None) -> bool:
    return bool(benchmark_id) and str(benchmark_id).startswith(texts.UPLOAD_CHOICE_PREFIX)


def upload_choice(bench: PlainBenchmark) -> str:
    return texts.UPLOAD_CHOICE_PREFIX + bench.path.name


def select_upload(model_id: str | None, fhe_mode: str, upload: str | None,
                  label_column: str | None, id_column: str | None,
                  sensitive_columns: str | None, request: gr.Request) -> tuple[Any, ...]:
    """A table was uploaded (or removed): the benchmark box, sample range, estimate and command
    line follow it; a table the model cannot take is refused here, before Run."""
    session = sessions.session_for(request)
    if not upload:
        session.table = None
        return ("", *select_run_settings_for(model_id, None, fhe_mode, session, reset=True))
    try:
        package, _, _ = prepare_model(model_id, fhe_mode, None, allow_hub=True)
        bench = uploaded_benchmark(package, upload, label_column, id_column, sensitive_columns,
                                   session)
    except gr.Error as exc:
        session.table = None
        return (texts.UPLOAD_REFUSED.format(error=exc.message), gr.skip(), gr.skip(), gr.skip(),
                gr.skip())
    session.table = bench
    status = texts.UPLOAD_ACCEPTED.format(name=bench.path.name, n=bench.n_samples,
                                          model=model_id)
    return (status, *select_run_settings_for(model_id, upload_choice(bench), fhe_mode, session))


def limit_problem(n_queries: int, fhe_mode: str) -> str | None:
    """The sentence refusing ``n_queries`` in ``fhe_mode`` on this Space, if over a limit (a
    sealed audit counts its samples: each costs the server a share of a batch)."""
    cap = max_execute_samples()
    if modes.get(fhe_mode).real_fhe and n_queries > cap:
        return texts.EXECUTE_CAP.format(cap=cap, n=n_queries)
    cap = max_queries()
    if n_queries > cap:
        return texts.QUERY_CAP.format(cap=cap, n=n_queries)
    return None


def check_limits(plan: dict[str, Any]) -> None:
    """``run_audit``'s ``on_plan``: refuse a request over the limits before any key exists."""
    if plan.get("sealed"):
        n, batch = plan["queries"]["samples"], plan["batch_size"]
        cap = min(max_execute_samples(), max_sealed_batches() * batch)
        if n > cap:
            raise gr.Error(texts.SEALED_CAP.format(cap=cap, batches=cap // batch, batch=batch,
                                                   n=n), print_exception=False)
        return
    problem = limit_problem(plan["n_queries"], plan["fhe_mode"])
    if problem:
        raise gr.Error(problem, print_exception=False)


def capped(report: dict[str, Any], limit: int | None, bench: PlainBenchmark) -> dict[str, Any]:
    """The report, saying so when the requested sample count exceeded the benchmark's size
    (``limit_capped``: requested and used); an uncapped report is left exactly as it was."""
    if limit is not None and limit > bench.n_samples:
        report["limit_capped"] = {"requested": limit, "used": bench.n_samples,
                                  "note": texts.LIMIT_CAPPED.format(
                                      requested=limit, used=bench.n_samples,
                                      benchmark=bench.benchmark_id)}
    return report


def run_audit_api(model: str, benchmark: str, fhe_mode: str = "execute",
                  limit: int | None = None, audits: str = "accuracy",
                  budget: int | None = None) -> dict[str, Any]:
    """Audit MODEL (a zoo id or hf://OWNER/NAME[@REVISION]) on BENCHMARK in FHE_MODE
    ("execute", "simulate" or "sealed": only aggregate counts decrypted, accuracy and
    fairness audits only, a couple of batches at most here) on LIMIT samples drawn at random,
    stratified by label (seed 0)
    (None = all; more than the benchmark holds is capped to it, and the result's
    ``limit_capped`` says so). AUDITS is a
    comma-separated list of accuracy, fairness, counterfactual, importance, surrogate; BUDGET
    the most FHE queries (samples + probes) to run (None or 0 = no budget). Returns the JSON
    object of ``python -m fhe_backend audit --model MODEL --benchmark BENCHMARK --fhe FHE_MODE
    --audits AUDITS --json``."""
    package, bench, limit, budget = prepare(model, benchmark, fhe_mode, limit, budget,
                                            allow_hub=True)
    with user_errors("audit"):
        report = run_audit(package, bench, fhe_mode=fhe_mode, limit=limit,
                           audits=audits or "accuracy", budget=budget,
                           on_plan=check_limits).report
    return capped(report, limit, bench)


def audit(model_id: str | None, benchmark_id: str | None, fhe_mode: str, n: Any,
          upload: str | None = None, label_column: str | None = "label",
          id_column: str | None = None, sensitive_columns: str | None = None,
          refused_upload: str | None = None, request: gr.Request | None = None,
          progress: gr.Progress = PROGRESS) -> tuple[Any, ...]:
    """The Run button: every role in turn, results labelled with the mode that made them. An
    uploaded CSV or Parquet file, when given, replaces the zoo benchmark; a file the page
    refused (``refused_upload``, its name) stops the run rather than fall back to the zoo."""
    if refused_upload:
        sentence = texts.UPLOAD_TOO_BIG.format(name=refused_upload, limit=MAX_FILE_SIZE,
                                               benchmark=benchmark_id)
        gr.Warning(sentence)
        return (texts.UPLOAD_TOO_BIG_BANNER.format(sentence=sentence),
                *(gr.skip(),) * (len(empty_results()) - 1))
    clicked = time.perf_counter()
    session = sessions.session_for(request)
    with sessions.job(session):
        package, bench, limit = prepare_audit(model_id, benchmark_id, fhe_mode, n, upload,
                                              label_column, id_column, sensitive_columns, session)
        session.last_audit = None  # a failed run must not leave the previous one verifiable
        work = sessions.fresh_dir(session, "audit")
        with user_errors("audit"):
            outcome = run_audit(package, bench, fhe_mode=fhe_mode, limit=limit, out_dir=work,
                                progress=stage_progress(progress, fhe_mode, unit_of(fhe_mode),
                                                        sessions.abandoned(session, request)),
                                on_plan=check_limits)
        report = capped(outcome.report, limit, bench)
        session.last_audit = sessions.LastAudit(
            package.model_id, bench.benchmark_id, fhe_mode, package.path,
            outcome.encrypted_dir, outcome.run_dir)
        folder = sessions.fresh_dir(session, f"history/{len(session.history) + 1}")
        past = sessions.PastAudit(
            texts.HISTORY_ENTRY.format(n=len(session.history) + 1, model=report["model"],
                                       benchmark=report["benchmark"],
                                       mode=render.mode_label(fhe_mode),
                                       samples=report["n_samples"]),
            report, package.manifest.class_names,
            package.manifest.circuit.get("pbs_count", "n/a"),
            [*render.write_reports(report, package, folder),
             *bundle_archive(outcome, package, folder)])
        sessions.remember(session, past)
        if fhe_mode == modes.EXECUTE and outcome.run_dir is not None:
            # The next estimate of this model learns from this run's click to result.
            timings.record(package, report["n_samples"], time.perf_counter() - clicked,
                           [r.seconds for r in RunResult.load(outcome.run_dir).transcript.samples
                            if not r.error])
        return (*audit_views(past, outcome.first_ciphertext_hex or texts.NO_PREVIEW),
                "")  # the previous verification no longer applies


def bundle_archive(outcome: AuditOutcome, package: ModelPackage, folder: Path) -> list[Path]:
    """A real-FHE audit as one zip to take away: report, transcript, encrypted benchmark, run
    and the verify command (no key is in it: the bundle refuses key files), and a README that
    says who can verify it: anyone for a circuit without bootstrapping, else only the key
    holder, whose key this Space has deleted. A simulation has nothing to verify: no bundle."""
    if outcome.run_dir is None or outcome.encrypted_dir is None:
        return []
    bundle = bundle_outcome(outcome, package, folder / "bundle")
    report = outcome.report
    (bundle / "README.txt").write_text(texts.BUNDLE_README.format(
        model=report["model"], benchmark=report["benchmark"],
        mode=render.mode_label(modes.of_report(report)),
        verifiability=render.verifiability(package)), encoding="utf-8")
    return [Path(shutil.make_archive(str(folder / "audit-bundle"), "zip", bundle))]


def audit_views(past: sessions.PastAudit, preview: str) -> tuple[Any, ...]:
    """Banner, metrics, confusion matrix, FHE figures, ciphertext preview, transcript and report
    files of one audit, each labelled with the mode that made it."""
    report, mode = past.report, render.report_mode_label(past.report)
    return (
        render.banner(report),
        gr.Dataframe(value=render.metric_rows(report), headers=render.metric_headers(report),
                     column_widths=render.column_widths(len(render.metric_headers(report))),
                     label=f"Metrics · {mode}"),
        gr.Plot(value=render.confusion_figure(report, past.class_names),
                label=f"Confusion matrix · {mode}"),
        gr.Dataframe(value=render.fhe_rows(report, past.pbs_count),
                     label=f"FHE figures · {mode}"),
        gr.Textbox(value=preview, label=f"First input ciphertext, first 64 bytes in hex · {mode}"),
        gr.JSON(value=render.transcript_view(report), label=f"Transcript and hashes · {mode}"),
        gr.File(value=[str(p) for p in past.files],
                label=f"Audit report, JSON and Markdown · {mode}"),
    )


def verify(n: float | None, request: gr.Request,
           progress: gr.Progress = PROGRESS) -> str:
    """Re-execute this session's latest real-FHE run (its first N samples; 0 or None: all) and
    compare every hash with the transcript."""
    session = sessions.existing_session(request)
    if session is None or not session.history:
        raise gr.Error(texts.VERIFY_NOTHING_YET, print_exception=False)
    last = session.last_audit
    if last is None or not modes.get(last.fhe_mode).real_fhe or last.run_dir is None:
        raise gr.Error(texts.VERIFY_NEEDS_EXECUTE, print_exception=False)
    n = whole_count(n, texts.BAD_VERIFY_N, zero_is_none=True)

    def step(done: int, total: int, _sample_id: str) -> None:
        progress((done, total), desc=texts.VERIFY_PROGRESS, unit="samples")

    with user_errors("verification"):
        result = verify_run(ModelPackage.load(last.package_path),
                            EncryptedBenchmark.load(last.encrypted_dir),
                            RunResult.load(last.run_dir),
                            limit=int(n) if n else None, progress=step)
    verdict = texts.VERIFY_RESULT.format(
        status=("❌ Hashes do not match" if result.problems
                else "⚠️ Inconclusive" if result.n_inconclusive else "✅ Hashes match"),
        mode=render.mode_label(last.fhe_mode), model=last.model_id,
        benchmark=last.benchmark_id, summary=result.summary())
    # The summary's "decide by decrypting" is no way out here: the key is gone.
    return verdict + ("\n\n" + texts.VERIFY_KEY_GONE if result.n_inconclusive else "")


# -- server role on Hub artifacts ------------------------------------------------------------


def _hub_module() -> Any:
    # Imported lazily: the Hub client is optional and must not slow down or break start-up.
    try:
        hub = importlib.import_module("fhe_backend.hub.remote")
    except ImportError as exc:
        log.warning("fhe_backend.hub.remote is not importable: %s", exc)
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
    session = sessions.session_for(request)
    out_dir = sessions.fresh_dir(session, "server") / name
    with sessions.job(session):
        with user_errors("server run"):
            run = FHEServer(package).run(
                encrypted, out_dir, executor=distributed.executor_from_env(),
                progress=lambda done, total, _record: progress(
                    (done, total), desc=texts.SERVER_PROGRESS, unit="samples"),
                # The repos and commits the inputs came from, as the CLI's run records them.
                sources=hub.transcript_sources(model_ref, package, benchmark_ref, encrypted))
        archive = Path(shutil.make_archive(str(out_dir), "zip", out_dir.parent, name))
    t = run.transcript
    status = texts.SERVER_DONE.format(model=t.model_id, benchmark=t.benchmark_id,
                                      n=t.n_samples, failed=t.n_failed,
                                      per_sample=t.fhe_s_per_sample, outputs=t.outputs_sha256)
    command = texts.DECRYPT_COMMAND.format(archive=shlex.quote(archive.name), run=shlex.quote(name),
                                           benchmark=shlex.quote(t.benchmark_id))
    return status, render.transcript_summary(t.to_dict()), str(archive), command


def hub_load_page(request: gr.Request = None) -> tuple[Any, ...]:
    """A link to the Hub tab (``?tab=hub&model=hf://…&benchmark=hf://datasets/…``) fills the
    references; results are always emptied."""
    link = page_link(request).for_tab("hub")
    return (link.model or "", link.benchmark or "", "", gr.JSON(value=None),
            gr.File(value=None), "")


def hub_example() -> tuple[str, str, str]:
    """The Hub tab's example references, published into the local Hub cache on first use."""
    from . import hub_example as example  # imports the Hub client: only when asked for

    with user_errors("example"):
        model_ref, benchmark_ref = example.ensure_example()
    return model_ref, benchmark_ref, texts.HUB_EXAMPLE_NOTE.format(n=example.N_SAMPLES,
                                                                    owner=example.OWNER)
