"""The Blocks: a header, one function per tab, the API-only endpoint and the queue.

A tab is one function ``tab(demo)`` that lays out its components and wires its events; adding a
tab means writing one such function and listing it in ``TABS``.
"""

from __future__ import annotations

from collections.abc import Callable

import gradio as gr

from ..zoo import model_ids
from . import bias, handlers, leaderboard, render, sessions, texts
from .bias_render import SECTIONS
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


def audit_tab(demo: gr.Blocks) -> None:
    with gr.Tab("Audit (demo)", id="audit"):
        gr.Markdown(texts.ONE_PROCESS_NOTE, elem_classes="demo-note")
        with gr.Row():
            with gr.Column(scale=1):
                model = gr.Dropdown(choices=model_ids(), label="Model", elem_id="model",
                                    allow_custom_value=True, info=texts.MODEL_INFO)
                card = gr.Markdown(elem_id="model-card")
                with gr.Accordion("Input schema: what the model expects", open=False):
                    schema = gr.Markdown(texts.NO_SCHEMA, elem_id="model-schema")
            with gr.Column(scale=1):
                benchmark = gr.Dropdown(choices=[], label="Benchmark (fits the model)",
                                        allow_custom_value=True,
                                        elem_id="benchmark")
                with gr.Accordion("Or upload your own benchmark (CSV or Parquet)", open=False):
                    gr.Markdown(texts.UPLOAD_NOTE, elem_classes="demo-note")
                    upload = gr.File(label="Benchmark table", file_count="single",
                                     file_types=[".csv", ".parquet", ".pq"], type="filepath",
                                     elem_id="upload")
                    with gr.Row():
                        label_column = gr.Textbox("label", label="Label column",
                                                  elem_id="label-column")
                        id_column = gr.Textbox("", label="Id column (optional)",
                                               placeholder="ids row-0, row-1, …",
                                               elem_id="id-column")
                    sensitive_columns = gr.Textbox(
                        "", label="Sensitive columns (optional, comma-separated)",
                        elem_id="sensitive-columns")
                mode = gr.Radio(texts.MODE_CHOICES, value="execute", label="Mode",
                                elem_id="mode")
                samples = gr.Slider(1, 200, value=20, step=1, label="Samples",
                                    elem_id="samples")
                estimate = gr.Markdown(elem_id="estimate")
                run = gr.Button("Run the audit", variant="primary", elem_id="run")
                with gr.Accordion("Command-line equivalent", open=False):
                    cli = gr.Code(language="shell", show_label=False, interactive=False)

        banner = gr.Markdown(texts.NO_RESULT, elem_id="result-banner",
                             elem_classes="mode-banner", min_height=80)
        with gr.Row():
            metrics = gr.Dataframe(headers=["metric", "value"], label="Metrics",
                                   interactive=False, elem_id="metrics")
            confusion = gr.Plot(label="Confusion matrix", elem_id="confusion")
        with gr.Row():
            figures = gr.Dataframe(headers=["FHE figure", "value"], label="FHE figures",
                                   interactive=False, elem_id="fhe-figures")
            with gr.Column():
                preview = gr.Textbox(label="First input ciphertext", lines=3,
                                     interactive=False, elem_id="ciphertext")
                reports = gr.File(label="Audit report", file_count="multiple",
                                  interactive=False, elem_id="reports")
        transcript = gr.JSON(label="Transcript and hashes", elem_id="transcript")
        with gr.Row(equal_height=True):
            verify_n = gr.Number(0, label="Verify: re-execute the first N samples (0: all)",
                                 precision=0, minimum=0, elem_id="verify-n", scale=1)
            verify = gr.Button("Verify: re-execute the run, compare hashes", elem_id="verify",
                               scale=1, size="md")
        verdict = gr.Markdown(elem_id="verdict")

    choice = [model, benchmark, mode]
    demo.load(handlers.load_page, None,
              [model, mode, card, schema, benchmark, samples, estimate, cli],
              api_name="load_page", **LIGHT)
    model.change(handlers.select_model, choice, [card, schema, benchmark, samples, estimate, cli],
                 api_name="select_model", **LIGHT)
    gr.on([benchmark.change, mode.change], handlers.select_run_settings, choice,
          [samples, estimate, cli], api_name="select_run_settings", **LIGHT)
    samples.change(handlers.describe_run, [*choice, samples], [estimate, cli],
                   api_name="describe_run", trigger_mode="always_last", **LIGHT)
    table = [upload, label_column, id_column, sensitive_columns]
    run.click(handlers.audit, [*choice, samples, *table],
              [banner, metrics, confusion, figures, preview, transcript, reports, verdict],
              api_name="audit", show_progress_on=banner, **FHE_JOB)
    verify.click(handlers.verify, verify_n, verdict, api_name="verify", **FHE_JOB)


def _bias_views() -> list[gr.Component | gr.Column]:
    """Per audit a hidden box with its figure and reading, shown once the audit has run."""
    views: list[gr.Component | gr.Column] = []
    for name in SECTIONS:
        with gr.Column(visible=False, elem_id=f"bias-{name}") as box, gr.Row():
            plot = gr.Plot(elem_id=f"bias-{name}-plot", scale=3)
            with gr.Column(scale=2):
                reading = gr.Markdown(elem_id=f"bias-{name}-reading")
        views += [box, plot, reading]
    return views


def bias_tab(demo: gr.Blocks) -> None:
    with gr.Tab("Bias & interpretability", id="bias"):
        gr.Markdown(texts.ONE_PROCESS_NOTE, elem_classes="demo-note")
        gr.Markdown(texts.BIAS_INTRO)
        with gr.Row():
            with gr.Column(scale=1):
                model = gr.Dropdown(choices=model_ids(), label="Model", elem_id="bias-model",
                                    allow_custom_value=True)
                benchmark = gr.Dropdown(choices=[], label="Benchmark (fits the model)",
                                        allow_custom_value=True, elem_id="bias-benchmark")
                audits = gr.CheckboxGroup(texts.BIAS_CHOICES, label="Audits",
                                          info=texts.BIAS_AUDITS_INFO, elem_id="bias-audits")
                # Probes multiply the FHE queries: simulation first, real FHE one click away.
                mode = gr.Radio(texts.MODE_CHOICES, value="simulate", label="Mode",
                                elem_id="bias-mode")
                samples = gr.Slider(1, 200, value=BIAS_DEFAULT_SAMPLES, step=1, label="Samples",
                                    info=texts.BIAS_SAMPLES_INFO, elem_id="bias-samples")
                # 0, not empty: the page shows an empty Number as 0 anyway.
                budget = gr.Number(0, label="FHE query budget", precision=0, minimum=0,
                                   info=texts.BIAS_BUDGET_INFO.format(
                                       cap=max_execute_samples(), max_queries=max_queries()),
                                   elem_id="bias-budget")
            with gr.Column(scale=1):
                estimate = gr.Markdown(elem_id="bias-estimate")
                run = gr.Button("Run the audits", variant="primary", elem_id="bias-run")
                with gr.Accordion("Command-line equivalent", open=False):
                    cli = gr.Code(language="shell", show_label=False, interactive=False)
        banner = gr.Markdown(texts.BIAS_NO_RESULT, elem_id="bias-banner",
                             elem_classes="mode-banner", min_height=80)
        views = _bias_views()
        reports = gr.File(label="Audit report", file_count="multiple", interactive=False,
                          elem_id="bias-reports")

    choice = [model, benchmark, mode, budget]
    settings = [model, benchmark, audits, mode, samples, budget]
    # .input, not .change: these update other inputs, whose own .change would chain back.
    demo.load(bias.load_page, None, [model, benchmark, audits, samples, estimate, cli],
              api_name="bias_load_page", **LIGHT)
    model.input(bias.select_model, choice, [benchmark, audits, samples, estimate, cli],
                api_name="bias_select_model", **LIGHT)
    benchmark.input(bias.select_benchmark, choice, [audits, samples, estimate, cli],
                    api_name="bias_select_benchmark", **LIGHT)
    gr.on([audits.change, mode.change, samples.change, budget.change], bias.describe, settings,
          [estimate, cli], api_name="bias_describe", trigger_mode="always_last", **LIGHT)
    run.click(bias.run, settings, [banner, *views, reports], api_name="bias_audit",
              show_progress_on=banner, **FHE_JOB)


def hub_tab(demo: gr.Blocks) -> None:
    with gr.Tab("Audit a Hub benchmark (server role)", id="hub"):
        gr.Markdown(texts.HUB_INTRO)
        with gr.Row():
            model_ref = gr.Textbox(label="Model package", placeholder=texts.MODEL_REF_HINT,
                                   elem_id="hub-model")
            benchmark_ref = gr.Textbox(label="Encrypted benchmark",
                                       placeholder=texts.BENCHMARK_REF_HINT,
                                       elem_id="hub-benchmark")
        run = gr.Button("Run the model on the encrypted benchmark", variant="primary")
        status = gr.Markdown(elem_id="hub-status", min_height=40)
        command = gr.Code(label="Decryption, for the auditor", language="shell",
                          interactive=False, elem_id="hub-command")
        archive = gr.File(label="Run folder (encrypted outputs + transcript)",
                          interactive=False, elem_id="hub-archive")
        transcript = gr.JSON(label="Transcript (real FHE)", elem_id="hub-transcript")
        gr.Markdown(texts.HUB_LIMITS)
    run.click(handlers.server_run, [model_ref, benchmark_ref],
              [status, transcript, archive, command], api_name="server_run",
              show_progress_on=status, **FHE_JOB)


def how_it_works_tab(demo: gr.Blocks) -> None:
    with gr.Tab("How it works", id="how"):
        gr.Markdown(texts.ROLES_TITLE + "\n"
                    + render.markdown_table(texts.ROLES_HEADERS, texts.ROLES_ROWS))
        for text in (texts.FLOW_DIAGRAM, texts.THREAT_MODEL, texts.CLI_EQUIVALENTS,
                     texts.API_USAGE):
            gr.Markdown(text)


TABS: list[Callable[[gr.Blocks], None]] = [audit_tab, bias_tab, hub_tab,
                                           leaderboard.leaderboard_tab, how_it_works_tab]


def build_demo() -> gr.Blocks:
    """The whole Space. Cheap: lists the zoo's folder names, compiles and downloads nothing."""
    # delete_cache: files Gradio copied for download go after an hour, checked hourly.
    with gr.Blocks(title=texts.TITLE, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(texts.HEADER)
        with gr.Row():
            gr.DeepLinkButton(size="sm", scale=0)
            gr.DuplicateButton(size="sm", scale=0)
        with gr.Tabs():
            for tab in TABS:
                tab(demo)
        gr.api(handlers.run_audit_api, api_name="run_audit", **FHE_JOB)
        demo.unload(sessions.close_session)
    demo.queue(max_size=queue_max_size())
    return demo
