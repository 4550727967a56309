"""Faults during a run: a killed server process, a full disk. Nothing is lost or duplicated."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from support import start_run

from fhe_backend.errors import AuditError
from fhe_backend.formats import atomic
from fhe_backend.formats.artifacts import RunResult
from fhe_backend.server.run import PARTIAL, FHEServer

REPO = Path(__file__).resolve().parents[2]


def kill_after(process: subprocess.Popen, partial: Path, n_outputs: int, timeout: float) -> bool:
    """SIGKILL the server once it has committed ``n_outputs`` samples; False if it finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if partial.is_dir() and len(list(partial.glob("*.out"))) >= n_outputs:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.002)
    process.wait(timeout=timeout)
    return False


def test_server_killed_at_random_points_resumes_to_the_same_hash(tmp_path, audited):
    rng = random.Random(20261127)
    out = tmp_path / "run"
    kills = 0
    for target in sorted(rng.sample(range(5, 160), 3)):
        process = start_run(audited.encrypted.path, out)
        kills += kill_after(process, out / PARTIAL, target, timeout=120)
    assert kills >= 2, "the server finished before it could be killed"
    process = start_run(audited.encrypted.path, out)
    assert process.wait(timeout=300) == 0
    run = RunResult.load(out)
    assert run.transcript.outputs_sha256 == audited.run.transcript.outputs_sha256
    ids = [s.sample_id for s in run.transcript.samples]
    assert len(ids) == len(set(ids)) == 171


def test_full_disk_is_a_clear_error_and_the_run_resumes(tmp_path, audited, monkeypatch):
    real_write = atomic.write_bytes
    writes = {"n": 0}

    def failing_write(path, data):
        writes["n"] += 1
        if writes["n"] > 30:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(path, data)

    monkeypatch.setattr(atomic, "write_bytes", failing_write)
    with pytest.raises(AuditError, match=r"No space left on device.*resumes when rerun"):
        FHEServer(audited.package).run(audited.encrypted, tmp_path / "run")
    monkeypatch.setattr(atomic, "write_bytes", real_write)
    run = FHEServer(audited.package).run(audited.encrypted, tmp_path / "run")
    assert run.transcript.outputs_sha256 == audited.run.transcript.outputs_sha256


def test_unwritable_output_folder(tmp_path, audited):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(AuditError, match="Cannot write the run into"):
        FHEServer(audited.package).run(audited.encrypted, blocker / "run")
