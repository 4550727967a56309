"""Exit statuses scripts can trust, measured on subprocesses after real FHE has run in them:
0 success or verified, 1 not verified, 2 error, 130 interrupted (README "Exit codes").
Concrete's atexit hook would otherwise turn every one of them into 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from support import FAST_BENCHMARK, FAST_MODEL, copy_tree

from fhe_backend.formats.artifacts import RunResult
from fhe_backend.server.run import PARTIAL

REPO = Path(__file__).resolve().parent.parent


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "fhe_backend", *args]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(command(*args), capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)


def test_verify_of_an_edited_transcript_exits_1(tmp_path, audited):
    run = copy_tree(audited.run.path, tmp_path / "run")
    transcript = json.loads((run / "transcript.json").read_text())
    transcript["samples"][1]["output_sha256"] = "0" * 64
    (run / "transcript.json").write_text(json.dumps(transcript))
    result = cli("verify", "--model", FAST_MODEL, "--encrypted", str(audited.encrypted.path),
                 "--run", str(run), "--limit", "3")
    assert result.returncode == 1, result.stderr[-2000:]
    assert "FAILED" in result.stdout and "Traceback" not in result.stderr


def test_verify_of_an_intact_run_exits_0(audited):
    result = cli("verify", "--model", FAST_MODEL, "--encrypted", str(audited.encrypted.path),
                 "--run", str(audited.run.path), "--limit", "2", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["ok"] is True  # late output is flushed before the exit


def test_error_after_fhe_exits_2(tmp_path):
    """The keys and the encrypted benchmark are made (Concrete has run), then writing the run
    fails: one sentence, status 2."""
    out = tmp_path / "audit"
    out.mkdir()
    (out / "run").write_text("a file where the run folder goes")
    result = cli("audit", "--model", FAST_MODEL, "--benchmark", FAST_BENCHMARK, "--limit", "2",
                 "--out", str(out))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")


def test_usage_error_and_help_statuses():
    assert cli("verify", "--model").returncode == 2
    assert cli("--help").returncode == 0


def test_ctrl_c_during_evaluation_exits_130_and_the_run_resumes(tmp_path, audited):
    out = tmp_path / "run"
    process = subprocess.Popen(
        command("run", "--model", FAST_MODEL, "--encrypted", str(audited.encrypted.path),
                "--out", str(out)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if (out / PARTIAL).is_dir() and len(list((out / PARTIAL).glob("*.out"))) >= 20:
            break
        time.sleep(0.005)
    assert process.poll() is None, "the run finished before it could be interrupted"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    assert "interrupted" in err and "resumes" in err and "Traceback" not in err
    # The journal is intact: a rerun completes to the very outputs of the uninterrupted run.
    result = cli("run", "--model", FAST_MODEL, "--encrypted", str(audited.encrypted.path),
                 "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert RunResult.load(out).transcript.outputs_sha256 == \
        audited.run.transcript.outputs_sha256


def test_a_failing_suite_fails_even_after_a_circuit_ran(tmp_path):
    """Concrete's atexit hook turns any status into 0 once a circuit ran: this suite's
    conftest drops it, or CI would pass a red suite (it did, before)."""
    test = tmp_path / "test_after_fhe.py"
    test.write_text(
        "def test_fails_after_a_circuit_ran():\n"
        "    from concrete import fhe\n"
        "    circuit = fhe.compiler({'x': 'encrypted'})(lambda x: x + 1).compile(range(4))\n"
        "    assert circuit.encrypt_run_decrypt(1) == 2\n"
        "    assert False, 'deliberate'\n")
    tests = Path(__file__).resolve().parent
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider",
         str(test)], cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tests), str(tests.parent)])})
    assert "1 failed" in result.stdout, result.stdout[-2000:]
    assert result.returncode == 1, result.stdout[-2000:]
