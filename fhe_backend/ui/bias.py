"""The Bias & interpretability tab's events: audits that fit, their cost, the run, the views.

Like :mod:`handlers` (whose checks it shares), every function is one UI action; backend errors
reach the user as their sentence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from .. import modes
from ..auditor.benchmarks import PlainBenchmark
from ..auditor.probes import check_budget
from ..audits import AUDITS
from ..errors import AuditError
from ..formats.artifacts import ModelPackage
from ..hub.zoo import benchmarks_for, list_benchmarks, model_ids
from ..orchestration import plan_audit, run_audit
from . import bias_render, links, render, sessions, texts
from .handlers import (
    PROGRESS,
    check_limits,
    limit_problem,
    page_link,
    prepare,
    sealed_cap,
    stage_progress,
    unit_of,
    user_errors,
    whole_count,
    zoo_benchmark,
    zoo_model,
)
from .settings import BIAS_DEFAULT_SAMPLES


def fitting_audits(bench: PlainBenchmark, package: ModelPackage | None = None) -> list[str]:
    """The audits this benchmark (and model) allow: those reading sensitive attributes (sex,
    race…) need some; those reading hidden layers need a ``package`` that publishes one; the
    others fit any benchmark."""
    return [a for a in bias_render.sections()
            if (bench.sensitive_columns or not AUDITS[a].needs_sensitive)
            and (not AUDITS[a].layers or (package is not None
                                          and package.manifest.representations))]


def _budget(budget: float | None) -> int | None:
    # The page's Number box says 0 for no budget; an emptied box gives None.
    return whole_count(budget, texts.BAD_BUDGET, zero_is_none=True)


def describe(model_id: str | None, benchmark_id: str | None, audits: list[str] | None,
             fhe_mode: str, n: float | None, budget: float | None) -> tuple[str, str]:
    """The chosen audits' cost before anything runs (and why they would be refused), the CLI."""
    if not model_id or not benchmark_id or not n:
        return "", ""
    if not audits:
        return texts.CHOOSE_AUDITS, ""
    try:
        budget = _budget(budget)
    except gr.Error as exc:  # said here, next to the box; Run says it again only if pressed
        return texts.COST_PROBLEM.format(problem=exc.message), ""
    if fhe_mode == modes.SEALED:
        return _describe_sealed(model_id, benchmark_id, audits, int(n))
    try:
        package = zoo_model(model_id)
        # No budget here: a plan over budget is still costed, with the budget's sentence.
        plan = plan_audit(package, zoo_benchmark(benchmark_id), fhe_mode=fhe_mode,
                          limit=int(n), audits=audits)
    except AuditError as exc:
        return texts.COST_PROBLEM.format(problem=exc), ""
    problem = _budget_problem(plan["n_queries"], budget) or limit_problem(plan["n_queries"],
                                                                          fhe_mode)
    return (bias_render.estimate(plan, package, fhe_mode, problem),
            render.cli_command(model_id, benchmark_id, fhe_mode, int(n), audits, budget))


def sealed_problem(package: ModelPackage, audits: list[str], n: int) -> str | None:
    """Why this sealed request cannot run (one sentence), or None: the model needs a sealed
    circuit, the audits must be the fairness audit only, the samples within the cap."""
    problem = render.sealed_unavailable(package)
    if problem:
        return problem
    others = [a for a in audits if a != "fairness"]
    if others:
        return texts.SEALED_BIAS_ONLY_FAIRNESS.format(others=", ".join(others))
    if "fairness" not in audits:
        return texts.SEALED_BIAS_NEEDS_FAIRNESS
    cap, batch = sealed_cap(package), render.sealed_batch_size(package)
    if n > cap:
        return texts.SEALED_CAP.format(cap=cap, batches=cap // batch, batch=batch, n=n)
    return None


def _describe_sealed(model_id: str, benchmark_id: str, audits: list[str],
                     n: int) -> tuple[str, str]:
    try:
        package = zoo_model(model_id)
    except AuditError as exc:
        return texts.COST_PROBLEM.format(problem=exc), ""
    problem = sealed_problem(package, audits, n)
    cli = render.cli_command(model_id, benchmark_id, modes.SEALED, n, ["fairness"])
    if problem and render.sealed_unavailable(package):
        return texts.COST_PROBLEM.format(problem=problem), ""
    cost = render.sealed_estimate(package, n)
    return (cost + ("\n\n" + texts.COST_PROBLEM.format(problem=problem) if problem else ""),
            cli)


def _budget_problem(n_queries: int, budget: int | None) -> str | None:
    try:
        check_budget(n_queries, budget)
    except AuditError as exc:
        return str(exc)
    return None


def select_benchmark(model_id: str | None, benchmark_id: str | None, fhe_mode: str,
                     budget: float | None, samples: int | None = None) -> tuple[Any, ...]:
    """Every audit that fits the benchmark, chosen; a small sample count (``samples`` when a
    link names one); their cost."""
    try:
        bench = zoo_benchmark(benchmark_id) if benchmark_id else None
    except AuditError as exc:
        return gr.CheckboxGroup(choices=[], value=[]), gr.skip(), str(exc), ""
    if bench is None:
        return gr.CheckboxGroup(choices=[], value=[]), gr.skip(), "", ""
    try:
        package = zoo_model(model_id) if model_id else None
    except AuditError:
        package = None  # the model's own box says why; the layer audits are left out
    audits = fitting_audits(bench, package)
    n = min(samples or BIAS_DEFAULT_SAMPLES, bench.n_samples)
    return (gr.CheckboxGroup(choices=[c for c in bias_render.audit_choices() if c[1] in audits],
                             value=audits),
            gr.Slider(minimum=1, maximum=bench.n_samples, value=n, step=1),
            *describe(model_id, benchmark_id, audits, fhe_mode, n, budget))


def select_model(model_id: str | None, benchmark_id: str | None, fhe_mode: str,
                 budget: float | None, samples: int | None = None) -> tuple[Any, ...]:
    """Benchmarks narrowed to those that fit the model, then as :func:`select_benchmark`."""
    fits = benchmarks_for(model_id) if model_id in model_ids() else []
    chosen = benchmark_id if benchmark_id in fits else (fits[0] if fits else None)
    return (gr.Dropdown(choices=fits, value=chosen),
            *select_benchmark(model_id, chosen, fhe_mode, budget, samples))


def empty_views(banner: str = texts.BIAS_NO_RESULT) -> tuple[Any, ...]:
    """The tab's results emptied: banner, each audit's box hidden, no report."""
    views: list[Any] = []
    for _ in bias_render.sections():
        views += [gr.Column(visible=False), gr.Plot(value=None), ""]
    return (banner, *views, gr.File(value=None, label="Audit report"))


def load_page(budget: float | None = None, request: gr.Request = None) -> tuple[Any, ...]:
    """Fresh zoo listing; a model with sensitive attributes in its benchmark comes first, as
    every audit applies to it. A link to this tab (``?tab=bias&model=…``) sets the inputs;
    results are always emptied."""
    ids = model_ids()
    showcase = next((m for b in list_benchmarks() if b.sensitive_columns
                     for m in b.fits_models if m in ids), ids[0] if ids else None)
    link = page_link(request).for_tab("bias")
    model_id = link.model
    if model_id and model_id not in ids:
        gr.Warning(texts.UNKNOWN_QUERY_MODEL.format(model=links.shown(model_id)))
        model_id = None
    model_id = model_id or showcase
    if link.benchmark and link.benchmark not in benchmarks_for(model_id or ""):
        gr.Warning(texts.UNFITTING_QUERY_BENCHMARK.format(benchmark=links.shown(link.benchmark),
                                                          model=model_id))
    fhe_mode = link.fhe or "simulate"
    restored = link.model or link.benchmark or link.samples
    return (gr.Dropdown(choices=ids, value=model_id), fhe_mode,
            *select_model(model_id, link.benchmark, fhe_mode, budget, link.samples),
            *empty_views(texts.LINK_RESTORED_BIAS if restored else texts.BIAS_NO_RESULT))


def run(model_id: str | None, benchmark_id: str | None, audits: list[str] | None,
        fhe_mode: str, n: float | None, budget: float | None, request: gr.Request,
        progress: gr.Progress = PROGRESS) -> tuple[Any, ...]:
    """The Run button: each chosen audit as a figure and a reading, both naming the mode."""
    if not audits:
        raise gr.Error(texts.CHOOSE_AUDITS, print_exception=False)
    package, bench, limit, budget = prepare(model_id, benchmark_id, fhe_mode, n, budget)
    if fhe_mode == modes.SEALED:
        problem = sealed_problem(package, audits, min(limit or bench.n_samples, bench.n_samples))
        if problem:
            raise gr.Error(problem, print_exception=False)
    session = sessions.session_for(request)
    with sessions.job(session):
        unit = unit_of(fhe_mode) if fhe_mode == modes.SEALED else "queries"
        with user_errors("audit"):
            report = run_audit(package, bench, fhe_mode=fhe_mode, limit=limit, audits=audits,
                               budget=budget,
                               progress=stage_progress(progress, fhe_mode, unit,
                                                       sessions.abandoned(session, request)),
                               on_plan=check_limits).report
            # The report files go to the session's history, where the History tab finds them.
            n_past = len(session.history) + 1
            outputs, files = _views(report, package,
                                    sessions.fresh_dir(session, f"history/{n_past}"))
        sessions.remember(session, sessions.PastAudit(
            texts.HISTORY_ENTRY.format(n=n_past, model=report["model"],
                                       benchmark=report["benchmark"],
                                       mode=render.mode_label(fhe_mode),
                                       samples=report["n_samples"])
            + texts.HISTORY_BIAS.format(audits=", ".join(audits)),
            report, package.manifest.class_names, package.manifest.circuit.get("pbs_count", "n/a"),
            files))
        return outputs


def _views(report: dict[str, Any], package: ModelPackage,
           folder: Path) -> tuple[tuple[Any, ...], list[Path]]:
    """Banner; per audit its box (shown if it ran), figure and reading; the report files (as
    shown, and as written in ``folder``)."""
    mode, class_names = render.report_mode_label(report), package.manifest.class_names
    outputs: list[Any] = [bias_render.banner(report)]
    for name in bias_render.sections():
        figure, reading = (bias_render.section(name, report, class_names) if name in report
                           else (None, ""))
        outputs += [gr.Column(visible=name in report),
                    gr.Plot(value=figure, label=f"{bias_render.title(name)} · {mode}"), reading]
    files = render.write_reports(report, package, folder,
                                 bias_render.markdown_sections(report, class_names))
    outputs.append(gr.File(value=[str(p) for p in files],
                           label=f"Audit report, JSON and Markdown · {mode}"))
    return tuple(outputs), files
