"""The Compare tab: several models audited on the same samples of one benchmark, one table and
one chart (metrics with their intervals when the report has them, FHE time, PBS)."""

from __future__ import annotations

from html import escape
from typing import Any

import gradio as gr
from matplotlib.figure import Figure

from .. import modes
from ..hub.zoo import benchmark_ids, benchmarks_for, model_ids
from ..orchestration import run_audit
from . import links, render, sessions, texts
from .handlers import (
    PROGRESS,
    check_limits,
    page_link,
    stage_progress,
    user_errors,
    whole_count,
    zoo_benchmark,
    zoo_model,
)
from .settings import max_execute_samples

DEFAULT_SAMPLES = 50


def fitting_models(benchmark_id: str | None) -> list[str]:
    return [m for m in model_ids() if benchmark_id in benchmarks_for(m)]


def select_benchmark(benchmark_id: str | None) -> tuple[Any, ...]:
    """Every zoo model that fits the benchmark, all chosen; the sample range of the benchmark."""
    models = fitting_models(benchmark_id)
    if not benchmark_id or benchmark_id not in benchmark_ids():
        return gr.CheckboxGroup(choices=[], value=[]), gr.skip()
    n = zoo_benchmark(benchmark_id).n_samples
    return (gr.CheckboxGroup(choices=models, value=models),
            gr.Slider(minimum=1, maximum=n, value=min(DEFAULT_SAMPLES, n), step=1))


def load_page(request: gr.Request = None) -> tuple[Any, ...]:
    """The benchmark that most zoo models fit comes first (a comparison needs two or more),
    unless a link (``?tab=compare&benchmark=&models=&fhe=&samples=``) names one: its inputs are
    set, and each value that cannot be used is named in a warning. Results are emptied."""
    link = page_link(request).for_tab("compare")
    parsed = len(link.warnings)  # the page's own load says the link's parse warnings
    ids = benchmark_ids()
    chosen = max(ids, key=lambda b: len(fitting_models(b)), default=None)
    if link.benchmark in ids:
        chosen = link.benchmark
    elif link.benchmark:
        link.warnings.append(texts.UNKNOWN_QUERY_BENCHMARK.format(
            benchmark=links.shown(link.benchmark), known=", ".join(ids)))
    mode = modes.SIMULATE
    if link.fhe in modes.PER_SAMPLE:
        mode = link.fhe
    elif link.fhe:
        link.warnings.append(texts.COMPARE_QUERY_MODE.format(
            mode=links.shown(link.fhe), known=modes.known(modes.PER_SAMPLE)))
    boxes, slider = select_benchmark(chosen)
    fits = fitting_models(chosen)
    if link.models is not None:
        unfit = [m for m in link.models if m not in fits]
        if unfit:
            link.warnings.append(texts.UNFITTING_QUERY_MODELS.format(
                models=links.shown_list(unfit), benchmark=chosen))
        boxes = gr.CheckboxGroup(choices=fits, value=[m for m in link.models if m in fits])
    if link.samples is not None and chosen in ids:
        n = zoo_benchmark(chosen).n_samples
        slider = gr.Slider(minimum=1, maximum=n, step=1, value=links.clamp_samples(
            link, n, min(DEFAULT_SAMPLES, n)))
    for warning in link.warnings[parsed:]:
        gr.Warning(warning)
    restored = link.benchmark or link.models or link.fhe or link.samples
    return (gr.Dropdown(choices=ids, value=chosen), boxes, slider, mode,
            texts.COMPARE_LINK_RESTORED if restored else texts.COMPARE_NO_RESULT,
            gr.HTML(value="", label="Comparison"),
            gr.Plot(value=None, label="Comparison"))


def row(report: dict[str, Any], pbs: Any) -> list[str]:
    metrics, intervals = report["metrics"], report.get("intervals") or {}
    undefined = report.get("undefined_metrics") or {}
    per_sample = report["timing"].get("fhe_s_per_sample")

    def value(name: str) -> str:
        return render.value_or_reason(metrics.get(name), undefined.get(name))

    return [report["model"], value("accuracy"),
            render.interval_text(intervals.get("accuracy")) if "intervals" in report else "n/a",
            value("balanced_accuracy"), value("f1"), value("roc_auc"),
            f"{per_sample:.4f}" if per_sample is not None else texts.NO_FHE_TIME, str(pbs)]


def legend() -> str:
    """What each metric of the table measures, one line each."""
    return "<ul class='metric-legend'>" + "".join(
        f"<li>{escape(render.metric_label(name))}</li>"
        for name in texts.COMPARE_LEGEND_METRICS) + "</ul>"


def figure(reports: list[dict[str, Any]], pbs: list[Any], mode: str) -> Figure:
    """Accuracy per model (with its interval as an error bar when there is one), PBS per
    sample beside it."""
    fig = Figure(figsize=(8.0, 3.2 + render.LABEL_IN), layout="constrained")
    fig.get_layout_engine().set(rect=(0, 0, 1, 3.2 / (3.2 + render.LABEL_IN)))
    left, right = fig.subplots(1, 2)
    names = [r["model"] for r in reports]
    accuracy = [r["metrics"]["accuracy"] for r in reports]
    low, high = [], []
    for r, value in zip(reports, accuracy, strict=True):
        interval = (r.get("intervals") or {}).get("accuracy")
        ok = interval and None not in interval
        # max(0, …): an interval's bounds are rounded, and may sit a hair inside the value.
        low.append(max(0.0, value - interval[0]) if ok else 0.0)
        high.append(max(0.0, interval[1] - value) if ok else 0.0)
    left.barh(names, accuracy, xerr=[low, high], color="tab:blue", capsize=4)
    left.set_xlim(0, 1)
    left.set_xlabel(texts.COMPARE_AXES["accuracy"])
    right.barh(names, [p if isinstance(p, int | float) else 0 for p in pbs], color="tab:orange")
    right.set_xlabel(texts.COMPARE_AXES["pbs"])
    right.set_yticks(range(len(names)), [""] * len(names))
    fig.supxlabel(f"{reports[0]['benchmark']} · {mode} · {reports[0]['n_samples']} samples",
                  fontsize=8, color="dimgray")
    return fig


def run(benchmark_id: str | None, models: list[str] | None, fhe_mode: str, n: Any,
        request: gr.Request = None, progress: gr.Progress = PROGRESS) -> tuple[Any, ...]:
    """Audit each chosen model on the same N samples of the benchmark (a seeded stratified
    draw), in one mode."""
    if not models:
        raise gr.Error(texts.CHOOSE_MODELS, print_exception=False)
    if fhe_mode not in modes.PER_SAMPLE:
        raise gr.Error(texts.UNKNOWN_MODE.format(mode=fhe_mode, known=modes.known(
            modes.PER_SAMPLE)), print_exception=False)
    limit = whole_count(n, texts.BAD_LIMIT)
    with user_errors("comparison"):
        bench = zoo_benchmark(benchmark_id or "")
        packages = [zoo_model(m) for m in models]
    used = min(limit or bench.n_samples, bench.n_samples)
    total, cap = used * len(packages), max_execute_samples()
    if fhe_mode == "execute" and total > cap:
        raise gr.Error(texts.COMPARE_EXECUTE_CAP.format(cap=cap, n_models=len(packages), n=used,
                                                        total=total), print_exception=False)
    session = sessions.session_for(request)  # a comparison belongs to a session like any audit
    with sessions.job(session):
        reports, pbs = [], []
        mode = render.mode_label(fhe_mode)
        for package in packages:
            with user_errors("comparison"):
                report = run_audit(package, bench, fhe_mode=fhe_mode, limit=used,
                                   progress=stage_progress(progress, fhe_mode,
                                                           abandoned=sessions.abandoned(
                                                               session, request)),
                                   on_plan=check_limits).report
                reports.append(report)
                # Each model's audit joins the session's History, with its report files.
                n_past = len(session.history) + 1
                files = render.write_reports(report, package,
                                             sessions.fresh_dir(session, f"history/{n_past}"))
            pbs.append(package.manifest.circuit.get("pbs_count", "n/a"))
            sessions.remember(session, sessions.PastAudit(
                texts.HISTORY_ENTRY.format(n=n_past, model=report["model"],
                                           benchmark=report["benchmark"], mode=mode,
                                           samples=report["n_samples"]) + texts.HISTORY_COMPARE,
                report, package.manifest.class_names, pbs[-1], files))
    banner = texts.COMPARE_BANNER.format(mode=mode, n_models=len(reports),
                                         benchmark=bench.benchmark_id, n=used)
    return (banner,
            gr.HTML(value=render.stacked_table(texts.COMPARE_HEADERS, [
                [escape(cell) for cell in row(r, p)] for r, p in zip(reports, pbs, strict=True)])
                + legend(), label=f"Comparison · {mode}"),
            gr.Plot(value=figure(reports, pbs, mode), label=f"Comparison · {mode}"))
