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

CSS = """
.demo-note { border-left: 4px solid #d97706; padding: 0.25rem 0.75rem; background: #fffbeb; }
.mode-banner h3 { margin-bottom: 0.25rem; }
"""


def max_execute_samples() -> int:
    """Most FHE queries of one real-FHE job. A query is one ciphertext run: a benchmark sample,
    or a probe of the bias audits, which cost the server exactly the same."""
    return settings.MAX_SAMPLES.positive_int()


def max_queries() -> int:
    """Most queries of one request in any mode: the simulator needs no encryption, but a
    full benchmark times every probe still keeps a 2-core Space busy for minutes."""
    return settings.MAX_QUERIES.positive_int()


def queue_max_size() -> int:
    """Jobs waiting beyond this are refused with "queue full" rather than waiting for hours."""
    return settings.QUEUE_SIZE.positive_int()


def launch_options() -> dict[str, Any]:
    """Keyword arguments of ``demo.launch`` shared by app.py and the tests."""
    return {
        "theme": gr.themes.Soft(primary_hue="indigo"),
        "css": CSS,
        # Run history keeps every run's inputs and outputs in the browser: not in a privacy demo.
        "run_history": False,
        "max_file_size": MAX_FILE_SIZE,
    }
