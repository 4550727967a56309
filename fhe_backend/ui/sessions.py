"""Per-session scratch folders: a run's files belong to the browser session that made them.

Keys and ciphertexts are files, not values to deep-copy into ``gr.State``, so each session gets a
temp folder in a module-level dict keyed by ``request.session_hash``. ``demo.unload`` removes it;
sessions whose unload never comes (a killed browser, an API client) are swept once idle.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from ..auditor.benchmarks import PlainBenchmark

IDLE_S = 2 * 3600
# How long a closed tab's folder outlives the job that was still running in it: the job's
# result (report files in the folder) is delivered after the handler returns, to a stream that
# may still be open (an unload also comes when a heartbeat times out under load).
GRACE_S = 10 * 60
HISTORY_SIZE = 20  # audits a session keeps, with their report files


@dataclass
class LastAudit:
    """What the Verify button re-executes: the session's latest audit."""

    model_id: str
    benchmark_id: str
    fhe_mode: str
    package_path: Path
    encrypted_dir: Path | None
    run_dir: Path | None


@dataclass
class PastAudit:
    """One audit of this session, as the History tab re-opens it."""

    title: str
    report: dict[str, Any]
    class_names: list[str]
    pbs_count: Any
    files: list[Path]


@dataclass
class Session:
    root: Path
    touched: float = field(default_factory=time.monotonic)
    last_audit: LastAudit | None = None
    # The latest uploaded table: (the path Gradio gave, its copy in this session's folder).
    upload: tuple[str, Path] | None = None
    # That table read as a benchmark, once it fitted the chosen model.
    table: PlainBenchmark | None = None
    # Every audit of the session, oldest first (bounded: HISTORY_SIZE).
    history: list[PastAudit] = field(default_factory=list)
    # Set when the tab closes: the session's running job stops at its next progress step,
    # rather than hold the single FHE queue for a visitor who has left.
    closed: threading.Event = field(default_factory=threading.Event)
    # Jobs running in the session's folder: a closed tab's folder goes when the last one ends,
    # never under a job that runs on (its stream still open, or between progress steps).
    jobs: int = 0


class SessionClosed(Exception):
    """Raised from a job's progress once its session's tab has closed; caught by
    ``handlers.user_errors`` (nobody is left to read it)."""


_SESSIONS: dict[str, Session] = {}
_LOCK = threading.Lock()
_LEFT: list[tuple[float, Path]] = []  # closed sessions' folders, removed GRACE_S after their job


def _key(request: gr.Request | None) -> str:
    # Without a session (a direct call) the caller gets a one-off folder, shared with no one.
    if request is not None and request.session_hash:
        return request.session_hash
    return f"anonymous-{uuid.uuid4().hex}"


def session_for(request: gr.Request | None) -> Session:
    key = _key(request)
    with _LOCK:
        _sweep_idle()
        session = _SESSIONS.get(key)
        if session is None:
            root = Path(tempfile.mkdtemp(prefix="fhe-audit-session-"))
            session = _SESSIONS[key] = Session(root)
        session.touched = time.monotonic()
        return session


def existing_session(request: gr.Request | None) -> Session | None:
    """The request's session if it has one already; creates no folder (page plumbing)."""
    if request is None or not request.session_hash:
        return None
    with _LOCK:
        return _SESSIONS.get(request.session_hash)


def remember(session: Session, audit: PastAudit) -> None:
    """Adds an audit to the session's history; the oldest goes past HISTORY_SIZE."""
    session.history.append(audit)
    for old in session.history[:-HISTORY_SIZE]:
        for path in old.files:
            path.unlink(missing_ok=True)
    del session.history[:-HISTORY_SIZE]


def fresh_dir(session: Session, name: str) -> Path:
    """An empty folder for a new result; the previous one of that kind goes (bounded disk)."""
    path = session.root / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def abandoned(session: Session, request: gr.Request | None) -> Callable[[], bool]:
    """Whether the job serving ``request`` has been left: its tab closed (the unload came) and
    Gradio dropped the job's connection too, so its result has nowhere to go. The unload alone
    is not enough: a heartbeat that timed out under load also sends it, while the job's own
    stream, still open, waits for the result. A direct call (no Gradio queue) has only the
    unload to go by."""
    app = getattr(getattr(request, "request", None), "app", None)
    queue = getattr(app.get_blocks(), "_queue", None) if hasattr(app, "get_blocks") else None

    def left() -> bool:
        if not session.closed.is_set():
            return False
        if queue is None:
            return True
        jobs = [job for running in queue.active_jobs if running for job in running
                if job.session_hash == getattr(request, "session_hash", None)]
        return not any(job.alive for job in jobs)

    return left


@contextmanager
def job(session: Session) -> Iterator[None]:
    """A job working in the session's folder; if the tab closed meanwhile, the folder goes
    GRACE_S after the job ends (its result files are read after it returns)."""
    with _LOCK:
        session.jobs += 1
    try:
        yield
    finally:
        with _LOCK:
            session.jobs -= 1
            if session.jobs == 0 and session.closed.is_set():
                _LEFT.append((time.monotonic(), session.root))


def close_session(request: gr.Request) -> None:
    """``demo.unload`` handler: the tab is closed, its job stops, its keys and ciphertexts go
    (at once, or when its running job ends)."""
    with _LOCK:
        session = _SESSIONS.pop(request.session_hash or "", None)
        if session is None:
            return
        session.closed.set()  # a job still running for it stops at its next step
        idle = session.jobs == 0
    if idle:
        shutil.rmtree(session.root, ignore_errors=True)


def _sweep_idle() -> None:
    now = time.monotonic()
    while _LEFT and now - _LEFT[0][0] > GRACE_S:
        shutil.rmtree(_LEFT.pop(0)[1], ignore_errors=True)
    for key in [k for k, s in _SESSIONS.items() if now - s.touched > IDLE_S and not s.jobs]:
        shutil.rmtree(_SESSIONS.pop(key).root, ignore_errors=True)
