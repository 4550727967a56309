"""The README's Dask steps with real processes, on loopback: `dask scheduler`, then `dask worker`
processes, then `run --scheduler`. A cluster whose processes lack the package, or run other code,
is refused in one sentence before any work is sent.

The shared test environment does not install the package, so "has the package" is
PYTHONPATH=<repository> here; the README's installed form is checked by hand in a fresh venv."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODEL = "breast-cancer-logreg"
START_TIMEOUT_S = 90


# A process "without the package": `make test` installs it (editable) into the venv, so removing
# PYTHONPATH is not enough; this sitecustomize makes `import fhe_backend` fail as it would there.
WITHOUT_PACKAGE = "import sys\nsys.modules['fhe_backend'] = None  # import fhe_backend fails\n"


def environment(pythonpath: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT"] = "10s"
    if pythonpath is None:
        blocker = Path(tempfile.mkdtemp(prefix="fhe-audit-no-package-"))
        (blocker / "sitecustomize.py").write_text(WITHOUT_PACKAGE)
        pythonpath = blocker
    env["PYTHONPATH"] = str(pythonpath)
    return env


@contextmanager
def process(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> Iterator[None]:
    """A `dask ...` process in its own session, stopped (then killed) on exit."""
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dask", *args], cwd=cwd, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield
    finally:
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            if proc.poll() is None:
                os.killpg(proc.pid, sig)
                try:
                    proc.wait(timeout=wait)
                except subprocess.TimeoutExpired:
                    continue


@contextmanager
def cluster(tmp: Path, scheduler_path: Path | None,
            worker_paths: list[Path | None]) -> Iterator[str]:
    """A scheduler and one `dask worker` per entry of ``worker_paths`` (each process's
    PYTHONPATH; None: the package is not importable), all on 127.0.0.1 and started from an
    empty folder; yields the scheduler's address once every worker has joined."""
    from distributed import Client

    tmp.mkdir(parents=True, exist_ok=True)
    info = tmp / "scheduler.json"
    with ExitStack() as stack:
        stack.enter_context(process(
            ["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(info)], environment(scheduler_path), tmp,
            tmp / "scheduler.log"))
        deadline = time.monotonic() + START_TIMEOUT_S
        while not info.is_file():
            assert time.monotonic() < deadline, (tmp / "scheduler.log").read_text()
            time.sleep(0.2)
        time.sleep(0.2)  # the file is written in one go, but let it land
        address = json.loads(info.read_text())["address"]
        for i, path in enumerate(worker_paths):
            stack.enter_context(process(
                ["worker", address, "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard",
                 "--name", f"w{i}"], environment(path), tmp, tmp / f"worker{i}.log"))
        with Client(address, set_as_default=False, timeout="30s") as client:
            client.wait_for_workers(len(worker_paths), timeout=START_TIMEOUT_S)
        yield address


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fhe_backend", *args], capture_output=True,
                          text=True, cwd=cwd, env=environment(REPO), timeout=300)


def run_on(address: str, encrypted: Path, out: Path) -> subprocess.CompletedProcess:
    return cli("run", "--model", MODEL, "--encrypted", str(encrypted), "--out", str(out),
               "--scheduler", address, "--json", cwd=out.parent)


def test_scheduler_and_two_workers_run_like_a_local_run(tmp_path, audited):
    with cluster(tmp_path / "cluster", REPO, [REPO, REPO]) as address:
        result = run_on(address, audited.encrypted.path, tmp_path / "run")
    assert result.returncode == 0, result.stderr
    transcript = json.loads(result.stdout)
    # A linear circuit: the same output bytes as the local run of the same ciphertexts.
    assert transcript["outputs_sha256"] == audited.run.transcript.outputs_sha256
    workers = {s["worker"] for s in transcript["samples"]}
    assert len(workers) == 2 and all(w.startswith("tcp://127.0.0.1:") for w in workers)


def test_a_cluster_without_the_package_is_one_sentence(tmp_path, audited):
    with cluster(tmp_path / "cluster", None, [None]) as address:
        result = run_on(address, audited.encrypted.path, tmp_path / "run")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: The Dask cluster at") and last.count(". ") == 0, last
    assert "cannot import fhe_backend in the scheduler and worker tcp://127.0.0.1:" in last, last
    assert "pip install 'fhe-audit[dask]'" in last
    assert not list((tmp_path / "run").glob(".partial/*.out"))  # refused before any work


def test_a_worker_running_other_code_is_named(tmp_path, audited):
    other = tmp_path / "other"
    shutil.copytree(REPO / "fhe_backend", other / "fhe_backend",
                    ignore=shutil.ignore_patterns("__pycache__", "assets"))
    init = other / "fhe_backend" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "0.0.0+other-'))
    with cluster(tmp_path / "cluster", REPO, [other]) as address:
        result = run_on(address, audited.encrypted.path, tmp_path / "run")
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "runs other versions than this process: worker tcp://127.0.0.1:" in last, last
    assert "fhe_backend 0.0.0+other-" in last and "(here 0.1.0)" in last, last
    assert "fhe_backend code" in last and "the scheduler" not in last, last


def test_the_sentence_lists_every_process():
    from fhe_backend.server.distributed import _listed

    assert _listed(["the scheduler"]) == "the scheduler"
    assert _listed(["a", "b", "c"]) == "a, b and c"
