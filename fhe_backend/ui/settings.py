"""Limits of the Space, overridable by environment variables, and the launch options."""

from __future__ import annotations

import os
from typing import Any

import gradio as gr

MAX_SAMPLES_ENV = "FHE_AUDIT_MAX_SAMPLES"
MAX_QUERIES_ENV = "FHE_AUDIT_MAX_QUERIES"
QUEUE_SIZE_ENV = "FHE_AUDIT_QUEUE_SIZE"

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


def _env_int(name: str, default: int) -> int:
    try:
        value = int(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value >= 1 else default


def max_execute_samples() -> int:
    """Most FHE queries of one real-FHE job. A query is one ciphertext run: a benchmark sample,
    or a probe of the bias audits, which cost the server exactly the same."""
    return _env_int(MAX_SAMPLES_ENV, 200)


def max_queries() -> int:
    """Most queries of one request in any mode: the simulator needs no encryption, but a
    full benchmark times every probe still keeps a 2-core Space busy for minutes."""
    return _env_int(MAX_QUERIES_ENV, 10_000)


def queue_max_size() -> int:
    """Jobs waiting beyond this are refused with "queue full" rather than waiting for hours."""
    return _env_int(QUEUE_SIZE_ENV, 16)


def launch_options() -> dict[str, Any]:
    """Keyword arguments of ``demo.launch`` shared by app.py and the tests."""
    return {
        "theme": gr.themes.Soft(primary_hue="indigo"),
        "css": CSS,
        # Run history keeps every run's inputs and outputs in the browser: not in a privacy demo.
        "run_history": False,
        "max_file_size": MAX_FILE_SIZE,
    }
