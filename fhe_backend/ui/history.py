"""The History tab: this session's audits, each re-opened with its results and report files."""

from __future__ import annotations

from typing import Any

import gradio as gr

from . import sessions, texts
from .handlers import audit_views


def refresh(request: gr.Request = None) -> tuple[Any, ...]:
    """The session's audits, newest first, the newest chosen; a sentence when there are none."""
    session = sessions.existing_session(request)
    past = session.history if session is not None else []
    titles = [audit.title for audit in reversed(past)]
    note = texts.HISTORY_COUNT.format(n=len(titles)) if titles else texts.HISTORY_EMPTY
    return gr.Dropdown(choices=titles, value=titles[0] if titles else None), note


def reopen(title: str | None, request: gr.Request = None) -> tuple[Any, ...]:
    """One past audit's views, as the Audit tab showed them (no ciphertext preview: the
    ciphertexts of older runs are gone)."""
    if not title:  # the list was emptied or refreshed to nothing: nothing to show
        return (gr.skip(),) * 6
    session = sessions.existing_session(request)
    past = next((a for a in (session.history if session else []) if a.title == title), None)
    if past is None:
        raise gr.Error(texts.HISTORY_GONE, print_exception=False)
    banner, metrics, confusion, figures, _preview, transcript, files = audit_views(
        past, texts.NO_PREVIEW)
    return banner, metrics, confusion, figures, transcript, files
