"""Limits of the Space, overridable by environment variables, and the launch options."""

from __future__ import annotations

from typing import Any

import gradio as gr

from .. import settings

MAX_SAMPLES_ENV = settings.MAX_SAMPLES.name
MAX_QUERIES_ENV = settings.MAX_QUERIES.name
QUEUE_SIZE_ENV = settings.QUEUE_SIZE.name

# Every FHE job (audit, verify, server run) shares this group: with 2 vCPUs two concurrent FHE
# runs would only slow each other down, so they queue one after the other.
FHE_CONCURRENCY_ID = "fhe"

# The default sample count aims at about this many seconds of FHE run per audit.
TARGET_RUN_S = 60.0

# Every probe of the bias audits is one more query: start the Bias tab small.
BIAS_DEFAULT_SAMPLES = 20

# Bounds every upload, the Audit tab's benchmark table included.
MAX_FILE_SIZE = "5mb"

MAX_FILE_BYTES = 5 * 1024 * 1024

# Explicit colours for both schemes: WCAG AA (4.5:1) for every text, light and dark (Gradio
# adds .dark when the visitor's system is dark). The note's own colours win over the theme's
# Markdown colours, which assume the page's background. One selector per rule: Gradio scopes
# custom CSS by rewriting selectors, and garbles the second of a ".dark a, .dark b" list.
CSS = """
.demo-note { border-left: 4px solid #b45309; padding: 0.25rem 0.75rem; background: #fffbeb; }
.demo-note { color: #1f2937 !important; }
.demo-note * { color: #1f2937 !important; }
.dark .demo-note { border-left-color: #f59e0b; background: #2d2208; }
.dark .demo-note { color: #f3f4f6 !important; }
.dark .demo-note * { color: #f3f4f6 !important; }
/* The indigo accent of the selected tab is too dark on the dark page. */
.dark #tabs button.selected { color: #a5b4fc; }
/* Syntax colours of code blocks and of the JSON viewer, darker on light, lighter on dark. */
.token.punctuation { color: #4b5563 !important; }
.token.comment { color: #4b5563 !important; }
.token.string { color: #3f6212 !important; }
.dark .token.punctuation { color: #d1d5db !important; }
.dark .token.comment { color: #9ca3af !important; }
.dark .token.string { color: #bef264 !important; }
.json-view .key { color: #9a3412 !important; }
.json-view .value { color: #166534 !important; }
.json-view .punctuation { color: #4b5563 !important; }
.dark .json-view .key { color: #fdba74 !important; }
.dark .json-view .value { color: #86efac !important; }
.dark .json-view .punctuation { color: #d1d5db !important; }
.mode-banner h3 { margin-bottom: 0.25rem; }
/* Schema tables scroll sideways on a phone instead of breaking words letter by letter. */
#model-schema table { display: block; overflow-x: auto; }
#model-schema th, #model-schema td { white-space: nowrap; }
/* Tables of results (render.stacked_table): rows on a wide screen, one card per row on a phone,
   each value under its header's name, so that nothing needs a sideways scroll. */
.stacked table { width: 100%; border-collapse: collapse; }
.stacked th { text-align: left; padding: 0.35rem 0.5rem; }
.stacked td { text-align: left; padding: 0.35rem 0.5rem; overflow-wrap: anywhere; }
.stacked tr { border-bottom: 1px solid var(--border-color-primary); }
@media (max-width: 640px) {
  .stacked thead { display: none; }
  .stacked tr { display: block; padding: 0.4rem 0; }
  .stacked td { display: flex; gap: 0.75rem; padding: 0.15rem 0.25rem; }
  .stacked td::before { content: attr(data-label); font-weight: 600; flex: 0 0 8.5rem; }
}
/* A run under way: the previous run's results stay, greyed out under a note (layout.py). */
.previous-run > * { opacity: 0.35; }
.previous-run::before { content: "Previous run: replaced when the new run ends."; }
.previous-run::before { font-weight: 600; padding: 0.25rem 0; }
/* Matplotlib plots are white pictures: in the dark scheme they are inverted, hues kept. */
.dark .matplotlib img { filter: invert(0.9) hue-rotate(180deg); }
/* Who sees what: words stay whole in its narrow columns ("benchmark", not "benchmar k"). */
#how-roles td { overflow-wrap: normal; word-break: normal; }
#how-roles th { overflow-wrap: normal; word-break: normal; }
"""


def max_execute_samples() -> int:
    """Most FHE queries of one real-FHE job. A query is one ciphertext run: a benchmark sample,
    or a probe of the bias audits, which cost the server exactly the same."""
    return settings.MAX_SAMPLES.positive_int()


def max_queries() -> int:
    """Most queries of one request in any mode: the simulator needs no encryption, but a
    full benchmark times every probe still keeps a 2-core Space busy for minutes."""
    return settings.MAX_QUERIES.positive_int()


def max_sealed_batches() -> int:
    """Most batches of one sealed audit: its keys take minutes to make and each batch minutes
    to run in real FHE, so the Space keeps a sealed job to a couple of batches."""
    return settings.MAX_SEALED_BATCHES.positive_int()


def queue_max_size() -> int:
    """Jobs waiting beyond this are refused with "queue full" rather than waiting for hours."""
    return settings.QUEUE_SIZE.positive_int()


# Gradio refuses a file over MAX_FILE_SIZE in the browser, with a toast, and the File box stays
# empty: Run must not then audit the zoo benchmark as if nothing was meant. This notes the
# refused file's name; the Run button's js hands it to the handler, once.
REFUSED_UPLOAD_JS = """
() => {
  const limit = LIMIT;
  const note = (files) => {
    const big = Array.from(files || []).filter((f) => f.size > limit).map((f) => f.name);
    window.__fheAuditRefusedUpload = big.join(", ");
  };
  const inUpload = (target) => target && target.closest && target.closest("#upload");
  document.addEventListener("change", (e) => {
    if (inUpload(e.target) && e.target.files) note(e.target.files);
  }, true);
  document.addEventListener("drop", (e) => {
    if (inUpload(e.target) && e.dataTransfer) note(e.dataTransfer.files);
  }, true);
}
"""


def _theme() -> gr.themes.Base:
    """Soft, indigo, with every text at WCAG AA (4.5:1) in both schemes: Soft's indigo-500
    labels, accents and buttons and its grey-400 hints reach 2.5 to 4.5:1 on the light page,
    its indigo-500 links 4.3:1 on the dark one (measured in Chromium, tests/test_browser.py)."""
    pale = "*primary_300"
    return gr.themes.Soft(primary_hue="indigo").set(
        link_text_color_dark=pale, link_text_color_hover_dark=pale,
        link_text_color_visited_dark=pale, link_text_color_active_dark=pale,
        block_label_text_color="*primary_700", block_title_text_color="*primary_700",
        body_text_color_subdued="*neutral_600", color_accent="*primary_600",
        button_primary_background_fill="*primary_600",
        button_primary_background_fill_hover="*primary_700",
        button_primary_background_fill_dark="*primary_600",
        button_primary_background_fill_hover_dark="*primary_700",
        checkbox_label_background_fill_selected="*primary_600")


THEME = _theme()


def no_hot_reload() -> None:
    """On a Hugging Face Space (``SYSTEM=spaces`` with a ``SPACE_ID``) Gradio starts a hot
    reloader that needs the ``spaces`` package and, without it, prints a traceback at start-up;
    a deployed audit service never reloads its code, so the reloader's watch does nothing."""
    import gradio.http_server

    gradio.http_server.watchfn_spaces = lambda _reloader: None


def launch_options() -> dict[str, Any]:
    """Keyword arguments of ``demo.launch`` shared by app.py and the tests."""
    return {
        "theme": THEME,
        "css": CSS,
        # Run history keeps every run's inputs and outputs in the browser: not in a privacy demo.
        "run_history": False,
        "max_file_size": MAX_FILE_SIZE,
        "js": REFUSED_UPLOAD_JS.replace("LIMIT", str(MAX_FILE_BYTES)),
    }
