"""The server role on Dask: a LocalCluster of two worker processes gives the outputs hash of a
local run, even when a worker is killed mid-run; progress, cancellation and errors behave as in a
local run; each worker loads the model and the keys once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support import FAST_MODEL, copy_tree

from fhe_backend.errors import AuditError
from fhe_backend.formats.artifacts import (
    CIPHERTEXTS,
    EncryptedBenchmark,
    RunResult,
    SampleRecord,
    Transcript,
    write_ciphertexts,
)
from fhe_backend.formats.hashing import content_hash, sha256_file
from fhe_backend.latency import bench_scaling
from fhe_backend.server.distributed import (
    SCHEDULER_ENV,
    DaskExecutor,
    connect,
    executor_from_env,
    local_cluster,
    shards,
)
from fhe_backend.server.run import PARTIAL, FHEServer

REPO = Path(__file__).resolve().parents[2]
CALLS: Counter[str] = Counter()  # per worker process, filled by _count_loads
COUNTING: list[bool] = []  # set once the counters are installed in the worker process


@pytest.fixture(scope="module")
def client():
    """Two worker processes, one thread each; this process's environment is restored after
    (Dask's nanny sets OMP_NUM_THREADS=1 in the process that spawns workers)."""
    saved = dict(os.environ)
    with local_cluster(2) as address, connect(address) as client:
        yield client
    os.environ.clear()
    os.environ.update(saved)


def address(client) -> str:
    return client.scheduler.address


# -- run on each worker through client.run (this module is importable there) ------------------


def _count_loads() -> None:
    """Count circuit compilations and key deserializations in this worker from now on."""
    from concrete import fhe

    from fhe_backend.untrusted.circuit import FHECircuit

    CALLS.clear()
    if COUNTING:
        return
    for owner, name, wrap in ((FHECircuit, "__init__", lambda f: f),
                              (fhe.EvaluationKeys, "deserialize", staticmethod)):
        original = getattr(owner, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            CALLS[_name] += 1
            return _original(*args, **kwargs)

        setattr(owner, name, wrap(counted))
    COUNTING.append(True)


def _loads() -> dict[str, int]:
    return {"compile": CALLS["__init__"], "keys": CALLS["deserialize"]}


def _slow_down(seconds: float) -> None:
    """Make each sample take ``seconds`` more in this worker, so a kill lands mid-run."""
    from fhe_backend.untrusted.circuit import FHECircuit

    original = FHECircuit.run

    def slow(self, ciphertext, keys, **options):
        time.sleep(seconds)
        return original(self, ciphertext, keys, **options)

    FHECircuit.run = slow


# -- tests -------------------------------------------------------------------------------------


def test_shards_spread_over_the_workers():
    todo = [(i, str(i), b"") for i in range(171)]
    parts = shards(todo, 2)
    assert [p for part in parts for p in part] == todo
    assert len(parts) >= 8 and max(map(len, parts)) <= 16
    assert [len(p) for p in shards(todo[:3], 2)] == [1, 1, 1]


def test_two_workers_give_the_local_outputs_hash(tmp_path, audited, client):
    client.run(_count_loads)
    seen = []
    run = FHEServer(audited.package).run(
        audited.encrypted, tmp_path / "run", executor=DaskExecutor(address(client)),
        progress=lambda done, total, record: seen.append((done, total)))
    t = run.transcript
    assert t.outputs_sha256 == audited.run.transcript.outputs_sha256
    assert seen == [(i, 171) for i in range(1, 172)]
    assert [s.sample_id for s in t.samples] == [i for i, _ in audited.encrypted.ciphertexts()]
    workers = Counter(s.worker for s in t.samples)
    assert set(workers) == set(client.nthreads()), workers  # both workers took shards
    assert all(s.started_at <= s.finished_at for s in t.samples)
    # The model and keys were loaded once per worker, not once per sample or shard.
    assert client.run(_loads) == {w: {"compile": 1, "keys": 1} for w in workers}


def test_cancel_then_resume_on_the_cluster(tmp_path, audited, client):
    done = []
    executor = DaskExecutor(address(client))
    with pytest.raises(AuditError, match="resume"):
        FHEServer(audited.package).run(audited.encrypted, tmp_path / "run", executor=executor,
                                       progress=lambda n, total, r: done.append(n),
                                       should_stop=lambda: len(done) >= 30)
    assert len(list((tmp_path / "run" / PARTIAL).glob("*.out"))) == 30
    resumed = []
    run = FHEServer(audited.package).run(audited.encrypted, tmp_path / "run", executor=executor,
                                         progress=lambda n, total, r: resumed.append(n))
    assert resumed[0] == 31 and resumed[-1] == 171
    assert run.transcript.outputs_sha256 == audited.run.transcript.outputs_sha256


def test_a_bad_ciphertext_is_a_failed_sample_as_in_a_local_run(tmp_path, audited, client):
    folder = copy_tree(audited.encrypted.path, tmp_path / "enc")
    rows = audited.encrypted.ciphertexts()[:6]
    rows[2] = (rows[2][0], b"not a ciphertext")
    write_ciphertexts(folder / CIPHERTEXTS, rows)
    # Rewrite the manifest the way the auditor would, so only the ciphertext is wrong.
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(n_samples=6, inputs_sha256=content_hash(rows))
    manifest["files"][CIPHERTEXTS] = sha256_file(folder / CIPHERTEXTS)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    encrypted = EncryptedBenchmark.load(folder)
    local = FHEServer(audited.package).run(encrypted, tmp_path / "local")
    remote = FHEServer(audited.package).run(encrypted, tmp_path / "dask",
                                            executor=DaskExecutor(address(client)))
    assert remote.transcript.n_failed == local.transcript.n_failed == 1
    assert remote.transcript.samples[2].error == local.transcript.samples[2].error
    assert remote.transcript.outputs_sha256 == local.transcript.outputs_sha256


def test_bench_reports_throughput_of_one_and_two_workers(fast_package, fast_benchmark, client):
    result = bench_scaling(fast_package, fast_benchmark, 8, scheduler=address(client))
    assert [r["workers"] for r in result["runs"]] == [1, 2]
    assert all(r["samples_per_s"] > 0 and r["omp_threads"] == "1" for r in result["runs"])
    assert result["scaling_ratio"] == pytest.approx(
        result["runs"][1]["samples_per_s"] / result["runs"][0]["samples_per_s"])
    assert result["outputs_identical"] and result["decrypted_identical"]


def test_cli_runs_on_a_scheduler_and_on_local_workers(tmp_path, audited, client):
    expected = audited.run.transcript.outputs_sha256
    for option, value in (("--scheduler", address(client)), ("--workers", "2")):
        result = cli("run", "--model", FAST_MODEL, "--encrypted", str(audited.encrypted.path),
                     "--out", str(tmp_path / option), option, value, "--json")
        assert result.returncode == 0, result.stderr
        transcript = json.loads(result.stdout)  # one JSON object: no Dask chatter on stdout
        assert transcript["outputs_sha256"] == expected
        assert {s["worker"].split("://")[0] for s in transcript["samples"]} == {"tcp"}


def test_unreachable_or_malformed_scheduler_is_a_one_sentence_error(tmp_path, audited):
    for scheduler, fragment in (("tcp://127.0.0.1:9", "Cannot reach the Dask scheduler"),
                                ("nonsense", "is not a Dask scheduler address")):
        result = cli("run", "--model", FAST_MODEL, "--encrypted", str(audited.encrypted.path),
                     "--out", str(tmp_path / "run"), "--scheduler", scheduler,
                     env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"})
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and fragment in last, last


def test_killed_worker_loses_nothing(tmp_path, audited, client):
    """SIGKILL one worker once 40 samples are committed: its shard is rescheduled."""
    client.run(_slow_down, 0.02)
    pids = client.run(os.getpid)
    victim = sorted(pids)[1]
    killed_at: list[str] = []

    def kill_once(done: int, total: int, record: SampleRecord) -> None:
        if done >= 40 and not killed_at:
            os.kill(pids[victim], signal.SIGKILL)
            killed_at.append(datetime.now(UTC).isoformat(timespec="milliseconds"))

    run = FHEServer(audited.package).run(audited.encrypted, tmp_path / "run",
                                         executor=DaskExecutor(address(client)),
                                         progress=kill_once)
    assert killed_at, "the run finished before a worker could be killed"
    samples = run.transcript.samples
    assert run.transcript.outputs_sha256 == audited.run.transcript.outputs_sha256
    assert len({s.sample_id for s in samples}) == 171 and run.transcript.n_failed == 0
    by_victim = [s for s in samples if s.worker == victim]
    assert by_victim, "the victim did no work before it was killed"
    # What the dead worker was doing when killed was redone by the others, after the kill.
    assert all(s.finished_at <= killed_at[0] for s in by_victim)
    assert any(s.finished_at > killed_at[0] for s in samples if s.worker != victim)
    assert RunResult.load(tmp_path / "run").outputs()  # and the run folder is complete


def test_old_transcripts_without_worker_times_still_load(audited):
    data = audited.run.transcript.to_dict()
    for sample in data["samples"]:
        for key in ("worker", "started_at", "finished_at"):
            sample.pop(key)
    transcript = Transcript.from_dict(data, "old run")
    assert transcript.samples[0].worker is None and transcript.samples[0].started_at is None


def test_the_app_runs_on_the_scheduler_named_by_the_environment(monkeypatch):
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    assert executor_from_env() is None
    monkeypatch.setenv(SCHEDULER_ENV, "tcp://10.0.0.5:8786")
    assert executor_from_env() == DaskExecutor(scheduler="tcp://10.0.0.5:8786")


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fhe_backend", *args], capture_output=True, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, timeout=300,
    )
