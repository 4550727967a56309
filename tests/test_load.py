"""A bounded load test on loopback: 8 ``gradio_client`` sessions at once, each sending real-FHE
audits of the fast model to ``/run_audit``, a fixed number of requests under a time cap.

Every request must be answered (none lost), every answer correct (the metrics of a direct run on
the same samples), the FHE queue honoured (one job at a time, timed server-side) and memory
bounded (peak RSS of this process, which holds the server and every client). The figures are
printed: ``pytest tests/test_load.py -s`` reproduces them (README, *Trust and robustness*).
"""

from __future__ import annotations

import itertools
import os
import platform
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from typing import Any

import psutil
import pytest
from gradio_client import Client
from support import FAST_BENCHMARK, FAST_MODEL, launched_space

from fhe_backend.orchestration import run_audit
from fhe_backend.ui import handlers

SESSIONS, REQUESTS_PER_SESSION, SAMPLES = 8, 2, 10
TIME_CAP_S = 300
# This process holds the Space, its FHE runtime, every client and whatever earlier tests
# loaded: bound its peak, and what the load adds to it (measured: about 1.1 GiB and 0.1 GiB
# on a 2-core x86_64 machine).
PEAK_RSS_BOUND = 3 * 1024**3
LOAD_RSS_BOUND = 512 * 1024**2


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with launched_space(tmp_path_factory, FAST_MODEL) as (_, local_url):
        yield local_url


class PeakRss:
    """Samples this process's resident memory in a thread; ``peak`` is the largest seen."""

    def __init__(self, every_s: float = 0.05) -> None:
        self.process, self.every_s = psutil.Process(), every_s
        self.before = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _session(url: str) -> list[tuple[float, dict[str, Any]]]:
    """One browser-like session: its requests one after the other, each timed end to end."""
    with closing(Client(url, verbose=False)) as client:
        answers = []
        for _ in range(REQUESTS_PER_SESSION):
            start = time.monotonic()
            report = client.predict(FAST_MODEL, FAST_BENCHMARK, "execute", SAMPLES,
                                    api_name="/run_audit")
            answers.append((time.monotonic() - start, report))
        return answers


def _percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def test_concurrent_sessions_are_served_one_fhe_job_at_a_time(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = run_audit(FAST_MODEL, FAST_BENCHMARK, fhe_mode="execute", limit=SAMPLES).report
    jobs: list[tuple[float, float]] = []  # (start, end) of every FHE job, seen by the server
    lock, audit = threading.Lock(), handlers.run_audit

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.monotonic()
        try:
            return audit(*args, **kwargs)
        finally:
            with lock:
                jobs.append((start, time.monotonic()))

    monkeypatch.setattr(handlers, "run_audit", timed)
    started = time.monotonic()
    with PeakRss() as memory, ThreadPoolExecutor(SESSIONS) as pool:
        futures = [pool.submit(_session, url) for _ in range(SESSIONS)]
        answers = [a for f in futures for a in f.result(timeout=TIME_CAP_S)]
    elapsed = time.monotonic() - started

    n = SESSIONS * REQUESTS_PER_SESSION
    assert len(answers) == len(jobs) == n, "a request was lost"
    for _, report in answers:
        assert (report["fhe_mode"], report["n_samples"], report["n_failed"]) == (
            "execute", SAMPLES, 0)
        assert report["metrics"] == expected["metrics"]
    spans = sorted(jobs)
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans)), (
        "two FHE jobs overlapped")
    assert elapsed < TIME_CAP_S
    assert memory.peak < PEAK_RSS_BOUND and memory.peak - memory.before < LOAD_RSS_BOUND

    latencies = [latency for latency, _ in answers]
    job_s = [end - start for start, end in jobs]
    print(f"\nload: {n} requests from {SESSIONS} concurrent sessions ({SAMPLES} samples each, "
          f"real FHE, {FAST_MODEL}) on {platform.machine()} with {os.cpu_count()} CPUs\n"
          f"  all answered and correct in {elapsed:.1f} s; FHE jobs never overlapped\n"
          f"  latency end to end (queue included): p50 {_percentile(latencies, 50):.2f} s, "
          f"p95 {_percentile(latencies, 95):.2f} s, max {max(latencies):.2f} s\n"
          f"  one FHE job (server side): p50 {statistics.median(job_s):.2f} s\n"
          f"  peak RSS of the process: {memory.peak / 1024**2:.0f} MiB (bound "
          f"{PEAK_RSS_BOUND / 1024**2:.0f} MiB), of which the load added "
          f"{(memory.peak - memory.before) / 1024**2:.0f} MiB (bound "
          f"{LOAD_RSS_BOUND / 1024**2:.0f} MiB)")
