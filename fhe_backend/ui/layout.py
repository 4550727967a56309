"""The Blocks: a header, one function per tab, the API-only endpoint and the queue.

A tab is one function ``tab(demo)`` that lays out its components, wires its events and returns
the components a link to it carries (by :data:`links.LINK_KEYS`); adding a tab means writing one
such function and listing it in ``TABS`` with its id (the link's ``tab=``) and label.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from .. import modes
from ..hub.zoo import benchmark_ids, model_ids
from . import bias, compare, handlers, history, leaderboard, links, render, sessions, texts
from .bias_render import audit_choices, audits_info, sections
from .settings import (
    BIAS_DEFAULT_SAMPLES,
    FHE_CONCURRENCY_ID,
    max_execute_samples,
    max_queries,
    queue_max_size,
)

FHE_JOB = {"concurrency_id": FHE_CONCURRENCY_ID, "concurrency_limit": 1}
# Card, estimate and dropdown refreshes read a few small files: they never wait behind FHE.
# They are page plumbing, not actions: callable, but left out of the API page.
LIGHT = {"concurrency_limit": None, "show_progress": "hidden", "api_visibility": "undocumented"}
# Components a link to a tab carries, by link key (model, benchmark, fhe, samples).
LinkInputs = dict[str, gr.components.Component]
# The Run button hands settings.REFUSED_UPLOAD_JS's note (a refused file's name) to the handler.
RUN_JS = """
(...args) => {
  args[args.length - 1] = window.__fheAuditRefusedUpload || "";
  window.__fheAuditRefusedUpload = "";
  return args;
}
"""
# While a run is under way, the results of the one before stay on screen greyed out under a
# "previous run" note (settings.CSS); only a box that holds a result (``data-shown``, set when a
# run succeeds) is marked. A failed run leaves them marked: they are still the previous run's.
MARK_PREVIOUS_JS = """
() => {
  const box = document.getElementById("BOX");
  if (box && box.dataset.shown) box.classList.add("previous-run");
}
"""
SHOWN_JS = """
() => {
  const box = document.getElementById("BOX");
  if (box) { box.classList.remove("previous-run"); box.dataset.shown = "1"; }
}
"""


def marks_previous(trigger: Callable[..., Any], box_id: str, fn: Callable[..., Any],
                   inputs: list[Any], outputs: list[Any], **kwargs: Any) -> None:
    """``trigger`` (a button's click) runs ``fn``, the results box ``box_id`` marked as the
    previous run's while it does."""
    trigger(None, None, None, js=MARK_PREVIOUS_JS.replace("BOX", box_id)).then(
        fn, inputs, outputs, **kwargs).success(None, None, None,
                                               js=SHOWN_JS.replace("BOX", box_id))


# The share button's query, made a full link of the page as the visitor sees it.
SHARE_JS = """
(query) => {
  if (!query) return query;
  const url = new URL(window.location.href);
  url.search = query;
  url.hash = "";
  const link = url.toString();
  if (navigator.clipboard) navigator.clipboard.writeText(link).catch(() => {});
  return link;
}
"""


def audit_tab(demo: gr.Blocks) -> LinkInputs:
    gr.Markdown(texts.ONE_PROCESS_NOTE, elem_classes="demo-note")
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            model = gr.Dropdown(choices=model_ids(), label="Model", elem_id="model",
                                allow_custom_value=True, info=texts.MODEL_INFO)
            card = gr.Markdown(elem_id="model-card")
            with gr.Accordion("Input schema: what the model expects", open=False):
                schema = gr.Markdown(texts.NO_SCHEMA, elem_id="model-schema")
        with gr.Column(scale=1, min_width=300):
            benchmark = gr.Dropdown(choices=[], label="Benchmark (fits the model)",
                                    allow_custom_value=True, info=texts.BENCHMARK_INFO,
                                    elem_id="benchmark")
            with gr.Accordion("Or upload your own benchmark (CSV or Parquet)", open=False):
                gr.Markdown(texts.UPLOAD_NOTE, elem_classes="demo-note")
                upload = gr.File(label="Benchmark table", file_count="single",
                                 file_types=[".csv", ".parquet", ".pq"], type="filepath",
                                 elem_id="upload")
                upload_status = gr.Markdown(elem_id="upload-status")
                with gr.Row():
                    label_column = gr.Textbox("label", label="Label column",
                                              elem_id="label-column")
                    id_column = gr.Textbox("", label="Id column (optional)",
                                           placeholder="ids row-0, row-1, …",
                                           elem_id="id-column")
                sensitive_columns = gr.Textbox(
                    "", label="Sensitive columns (optional, comma-separated)",
                    elem_id="sensitive-columns")
            mode = gr.Radio(render.mode_choices(), value=modes.EXECUTE, label="Mode",
                            elem_id="mode")
            samples = gr.Slider(1, 200, value=20, step=1, label="Samples",
                                elem_id="samples")
            estimate = gr.Markdown(elem_id="estimate")
            run = gr.Button("Run the audit", variant="primary", elem_id="run")
            with gr.Accordion("Command-line equivalent", open=False):
                cli = gr.Code(language="shell", show_label=False, interactive=False,
                              elem_id="cli")
    # The name of a file the browser refused (too big), set by RUN_JS.
    refused = gr.Textbox(visible=False, elem_id="upload-refused")

    banner = gr.Markdown(texts.NO_RESULT, elem_id="result-banner",
                         elem_classes="mode-banner", min_height=80)
    with gr.Column(elem_id="audit-results", elem_classes="results-box"):
        results = _result_views("")
    with gr.Row(equal_height=True):
        verify_n = gr.Number(0, label="Verify: re-execute the first N samples (0: all)",
                             precision=0, elem_id="verify-n", scale=1, min_width=200)
        verify = gr.Button(texts.VERIFY_BUTTON, elem_id="verify",
                           scale=1, size="md", min_width=200)
    verdict = gr.Markdown(elem_id="verdict")
    metrics, confusion, figures, preview, transcript, reports = results

    choice = [model, benchmark, mode]
    shown = [banner, metrics, confusion, figures, preview, transcript, reports, verdict]
    demo.load(handlers.load_page, None,
              [model, mode, card, schema, benchmark, samples, estimate, cli, *shown],
              api_name="load_page", **LIGHT)
    # .input, not .change: a page load sets these too, and must not reset the link's count.
    model.input(handlers.select_model, choice,
                [mode, card, schema, benchmark, samples, estimate, cli],
                api_name="select_model", **LIGHT)
    gr.on([benchmark.input, mode.input], handlers.select_run_settings, choice,
          [samples, estimate, cli], api_name="select_run_settings", **LIGHT)
    samples.change(handlers.describe_run, [*choice, samples], [estimate, cli],
                   api_name="describe_run", trigger_mode="always_last", **LIGHT)
    table = [upload, label_column, id_column, sensitive_columns]
    gr.on([upload.change, label_column.submit, id_column.submit, sensitive_columns.submit],
          handlers.select_upload, [model, mode, *table],
          [upload_status, benchmark, samples, estimate, cli], api_name="select_upload", **LIGHT)
    marks_previous(run.click, "audit-results", handlers.audit,
                   [*choice, samples, *table, refused], shown, api_name="audit",
                   show_progress_on=banner, js=RUN_JS, **FHE_JOB)
    verify.click(handlers.verify, verify_n, verdict, api_name="verify", **FHE_JOB)
    return {"model": model, "benchmark": benchmark, "fhe": mode, "samples": samples}


def _result_views(prefix: str) -> list[gr.components.Component]:
    """Metrics, confusion matrix, FHE figures, ciphertext preview, transcript, report files.
    Each pair sits in a row that wraps on a narrow screen (min_width), so neither is squeezed."""
    with gr.Row():
        # wrap: long metric names take two lines rather than push the values out of sight.
        metrics = gr.Dataframe(headers=["metric", "value"], label="Metrics",
                               interactive=False, elem_id=f"{prefix}metrics", min_width=320,
                               wrap=True, column_widths=render.column_widths(2))
        confusion = gr.Plot(label="Confusion matrix", elem_id=f"{prefix}confusion",
                            min_width=320)
    with gr.Row():
        figures = gr.Dataframe(headers=["FHE figure", "value"], label="FHE figures",
                               interactive=False, elem_id=f"{prefix}fhe-figures", min_width=320,
                               wrap=True, column_widths=render.column_widths(2))
        with gr.Column(min_width=320):
            preview = gr.Textbox(label="First input ciphertext", lines=3, interactive=False,
                                 elem_id=f"{prefix}ciphertext", visible=not prefix)
            reports = gr.File(label="Audit report", file_count="multiple", interactive=False,
                              elem_id=f"{prefix}reports")
    transcript = gr.JSON(label="Transcript and hashes", elem_id=f"{prefix}transcript",
                         elem_classes="json-view")
    return [metrics, confusion, figures, preview, transcript, reports]


def _bias_views() -> list[gr.Component | gr.Column]:
    """Per audit a hidden box with its figure and reading, shown once the audit has run."""
    views: list[gr.Component | gr.Column] = []
    for name in sections():
        with gr.Column(visible=False, elem_id=f"bias-{name}") as box, gr.Row():
            plot = gr.Plot(elem_id=f"bias-{name}-plot", scale=3, min_width=320)
            with gr.Column(scale=2, min_width=300):
                reading = gr.Markdown(elem_id=f"bias-{name}-reading")
        views += [box, plot, reading]
    return views


def bias_tab(demo: gr.Blocks) -> LinkInputs:
    gr.Markdown(texts.ONE_PROCESS_NOTE, elem_classes="demo-note")
    gr.Markdown(texts.BIAS_INTRO)
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            model = gr.Dropdown(choices=model_ids(), label="Model", elem_id="bias-model",
                                allow_custom_value=True)
            benchmark = gr.Dropdown(choices=[], label="Benchmark (fits the model)",
                                    allow_custom_value=True, elem_id="bias-benchmark")
            audits = gr.CheckboxGroup(audit_choices(), label="Audits", info=audits_info(),
                                      elem_id="bias-audits")
            # Probes multiply the FHE queries: simulation first, real FHE one click away.
            mode = gr.Radio(render.mode_choices(), value=modes.SIMULATE, label="Mode",
                            info=texts.BIAS_SEALED_INFO, elem_id="bias-mode")
            samples = gr.Slider(1, 200, value=BIAS_DEFAULT_SAMPLES, step=1, label="Samples",
                                info=texts.BIAS_SAMPLES_INFO, elem_id="bias-samples")
            # 0, not empty: the page shows an empty Number as 0 anyway. No minimum: Gradio
            # would refuse a negative number itself, twice and with a logged traceback.
            budget = gr.Number(0, label="FHE query budget", precision=0,
                               info=texts.BIAS_BUDGET_INFO.format(
                                   cap=max_execute_samples(), max_queries=max_queries()),
                               elem_id="bias-budget")
        with gr.Column(scale=1, min_width=300):
            estimate = gr.Markdown(elem_id="bias-estimate")
            run = gr.Button("Run the audits", variant="primary", elem_id="bias-run")
            with gr.Accordion("Command-line equivalent", open=False):
                cli = gr.Code(language="shell", show_label=False, interactive=False)
    banner = gr.Markdown(texts.BIAS_NO_RESULT, elem_id="bias-banner",
                         elem_classes="mode-banner", min_height=80)
    with gr.Column(elem_id="bias-results", elem_classes="results-box"):
        views = _bias_views()
        reports = gr.File(label="Audit report", file_count="multiple", interactive=False,
                          elem_id="bias-reports")

    choice = [model, benchmark, mode, budget]
    settings = [model, benchmark, audits, mode, samples, budget]
    shown = [banner, *views, reports]
    # .input, not .change: these update other inputs, whose own .change would chain back.
    demo.load(bias.load_page, budget,
              [model, mode, benchmark, audits, samples, estimate, cli, *shown],
              api_name="bias_load_page", **LIGHT)
    model.input(bias.select_model, choice, [benchmark, audits, samples, estimate, cli],
                api_name="bias_select_model", **LIGHT)
    benchmark.input(bias.select_benchmark, choice, [audits, samples, estimate, cli],
                    api_name="bias_select_benchmark", **LIGHT)
    gr.on([audits.change, mode.change, samples.change, budget.change], bias.describe, settings,
          [estimate, cli], api_name="bias_describe", trigger_mode="always_last", **LIGHT)
    marks_previous(run.click, "bias-results", bias.run, settings, shown,
                   api_name="bias_audit", show_progress_on=banner, **FHE_JOB)
    return {"model": model, "benchmark": benchmark, "fhe": mode, "samples": samples}


def compare_tab(demo: gr.Blocks) -> LinkInputs:
    gr.Markdown(texts.COMPARE_INTRO)
    with gr.Row():
        benchmark = gr.Dropdown(choices=benchmark_ids(), label="Benchmark",
                                elem_id="compare-benchmark", min_width=240)
        models = gr.CheckboxGroup(model_ids(), label="Models", info=texts.COMPARE_MODELS_INFO,
                                  elem_id="compare-models", min_width=240)
    with gr.Row():
        # Sealed is left out: each model would need minutes of its own large keys.
        mode = gr.Radio(render.mode_choices(modes.PER_SAMPLE), value=modes.SIMULATE,
                        label="Mode", elem_id="compare-mode", min_width=240)
        samples = gr.Slider(1, 200, value=compare.DEFAULT_SAMPLES, step=1, label="Samples",
                            elem_id="compare-samples", min_width=240)
    run = gr.Button("Compare", variant="primary", elem_id="compare-run")
    banner = gr.Markdown(texts.COMPARE_NO_RESULT, elem_id="compare-banner",
                         elem_classes="mode-banner", min_height=60)
    # One card per model on a phone (render.stacked_table): every figure in sight.
    with gr.Column(elem_id="compare-results", elem_classes="results-box"):
        table = gr.HTML(label="Comparison", elem_id="compare-table")
        chart = gr.Plot(label="Comparison", elem_id="compare-chart")
    demo.load(compare.load_page, None, [benchmark, models, samples, mode, banner, table, chart],
              api_name="compare_load_page", **LIGHT)
    benchmark.input(compare.select_benchmark, benchmark, [models, samples],
                    api_name="compare_select_benchmark", **LIGHT)
    marks_previous(run.click, "compare-results", compare.run,
                   [benchmark, models, mode, samples], [banner, table, chart],
                   api_name="compare", show_progress_on=banner, **FHE_JOB)
    return {"benchmark": benchmark, "models": models, "fhe": mode, "samples": samples}


def history_tab(demo: gr.Blocks) -> LinkInputs:
    gr.Markdown(texts.HISTORY_INTRO)
    with gr.Row():
        chosen = gr.Dropdown(choices=[], label="Audit", elem_id="history-audit", scale=3,
                             min_width=240)
        refresh = gr.Button("Refresh", elem_id="history-refresh", scale=1, min_width=120)
    note = gr.Markdown(texts.HISTORY_EMPTY, elem_id="history-note")
    banner = gr.Markdown(elem_id="history-banner", elem_classes="mode-banner")
    metrics, confusion, figures, _preview, transcript, reports = _result_views("history-")
    # /history is the Refresh button's endpoint, listed on the API page like the other buttons.
    gr.on([refresh.click, demo.load], history.refresh, None, [chosen, note],
          api_name="history", **{**LIGHT, "api_visibility": "public"})
    chosen.change(history.reopen, chosen,
                  [banner, metrics, confusion, figures, transcript, reports],
                  api_name="history_reopen", **LIGHT)
    return {}


def hub_tab(demo: gr.Blocks) -> LinkInputs:
    gr.Markdown(texts.HUB_INTRO)
    with gr.Row():
        model_ref = gr.Textbox(label="Model package", placeholder=texts.MODEL_REF_HINT,
                               elem_id="hub-model", min_width=240)
        benchmark_ref = gr.Textbox(label="Encrypted benchmark",
                                   placeholder=texts.BENCHMARK_REF_HINT,
                                   elem_id="hub-benchmark", min_width=240)
    with gr.Row():
        example = gr.Button(texts.HUB_EXAMPLE_BUTTON, elem_id="hub-example", min_width=240)
        run = gr.Button("Run the model on the encrypted benchmark", variant="primary",
                        elem_id="hub-run", min_width=240)
    status = gr.Markdown(elem_id="hub-status", min_height=40)
    command = gr.Code(label="Decryption, for the auditor", language="shell",
                      interactive=False, elem_id="hub-command")
    archive = gr.File(label="Run folder (encrypted outputs + transcript)",
                      interactive=False, elem_id="hub-archive")
    transcript = gr.JSON(label="Transcript (real FHE)", elem_id="hub-transcript",
                         elem_classes="json-view")
    gr.Markdown(texts.HUB_LIMITS)
    demo.load(handlers.hub_load_page, None,
              [model_ref, benchmark_ref, status, transcript, archive, command],
              api_name="hub_load_page", **LIGHT)
    # Keygen and encryption of the example are FHE work: they queue with the other jobs.
    example.click(handlers.hub_example, None, [model_ref, benchmark_ref, status],
                  api_name="hub_example", show_progress_on=status, **FHE_JOB)
    run.click(handlers.server_run, [model_ref, benchmark_ref],
              [status, transcript, archive, command], api_name="server_run",
              show_progress_on=status, **FHE_JOB)
    return {"model": model_ref, "benchmark": benchmark_ref}


def how_it_works_tab(demo: gr.Blocks) -> LinkInputs:
    gr.Markdown(texts.ROLES_TITLE + "\n"
                + render.markdown_table(texts.ROLES_HEADERS, texts.ROLES_ROWS),
                elem_id="how-roles")
    for text in (texts.FLOW_DIAGRAM, texts.THREAT_MODEL, texts.CLI_EQUIVALENTS,
                 texts.API_USAGE):
        gr.Markdown(text)
    return {}


@dataclass(frozen=True)
class TabSpec:
    id: str  # the link's tab=
    label: str
    build: Callable[[gr.Blocks], LinkInputs | None]


TABS: list[TabSpec] = [
    TabSpec(links.DEFAULT_TAB, "Audit (demo)", audit_tab),
    TabSpec("bias", "Bias & interpretability", bias_tab),
    TabSpec("compare", "Compare models", compare_tab),
    TabSpec("history", "History", history_tab),
    TabSpec("hub", "Hub benchmark (server role)", hub_tab),
    TabSpec(leaderboard.TAB_ID, "Leaderboard", leaderboard.leaderboard_tab),
    TabSpec("how", "How it works", how_it_works_tab),
]


def _share(tab_inputs: list[tuple[str, str]]) -> Callable[..., str]:
    """The share button's function: the query of the current tab and its link inputs
    (``tab_inputs``: the (tab id, link key) of each value that follows the tab)."""

    def share_query(tab: str, *values: object) -> str:
        return links.query(tab, {key: value for (tab_id, key), value
                                 in zip(tab_inputs, values, strict=True) if tab_id == tab})

    return share_query


def selected_tab(event: gr.SelectData) -> str:
    """The id of the tab the visitor chose: tabs are laid out in TABS order."""
    return TABS[event.index].id


def linked_tab(request: gr.Request = None) -> tuple[object, object]:
    """The tab a link opens (``?tab=``); the link's unusable values each get a warning. Without
    ``tab=`` the tabs are left alone: a visitor may have clicked one before this load ends."""
    params = dict(request.query_params) if request is not None else {}
    link = links.parse(params)
    for warning in link.warnings:
        gr.Warning(warning)
    if "tab" not in params:
        return gr.skip(), gr.skip()
    return gr.Tabs(selected=link.tab), link.tab


def build_demo() -> gr.Blocks:
    """The whole Space. Cheap: lists the zoo's folder names, compiles and downloads nothing."""
    # delete_cache: files Gradio copied for download go after an hour, checked hourly.
    # analytics_enabled=False: a privacy tool does not report its visitors to anyone.
    with gr.Blocks(title=texts.TITLE, delete_cache=(3600, 3600),
                   analytics_enabled=False) as demo:
        gr.Markdown(texts.HEADER)
        with gr.Row():
            share = gr.Button(texts.SHARE_LINK, size="sm", scale=0, elem_id="share-link",
                              min_width=140)
            gr.DuplicateButton(size="sm", scale=0)
        share_url = gr.Textbox(label=texts.SHARE_LINK_LABEL, visible=False, elem_id="share-url",
                               buttons=["copy"], interactive=False)
        current = gr.State(links.DEFAULT_TAB)
        tab_inputs: list[tuple[str, str]] = []
        components: list[gr.components.Component] = []
        with gr.Tabs(overflow_behavior="wrap", elem_id="tabs") as tabs:
            for spec in TABS:
                with gr.Tab(spec.label, id=spec.id, elem_id=f"tab-{spec.id}"):
                    inputs = spec.build(demo) or {}
                for key, component in inputs.items():
                    tab_inputs.append((spec.id, key))
                    components.append(component)
        tabs.select(selected_tab, None, current, **LIGHT)
        demo.load(linked_tab, None, [tabs, current], api_name="linked_tab", **LIGHT)
        share.click(_share(tab_inputs), [current, *components], share_url,
                    api_name="share_link", **LIGHT).then(
            lambda: gr.Textbox(visible=True), None, share_url, **LIGHT).then(
            None, share_url, share_url, js=SHARE_JS)
        gr.api(handlers.run_audit_api, api_name="run_audit", **FHE_JOB)
        demo.unload(sessions.close_session)
    demo.queue(max_size=queue_max_size())
    return demo
