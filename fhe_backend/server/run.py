"""Server: run a model's circuit on every ciphertext of an encrypted benchmark.

It needs the model package and the encrypted benchmark only; it never sees a key directory.
Outputs are written as they complete into ``RUN/.partial/`` (one file per sample, renamed into
place, with a JSON record written last as the commit marker), so a run that is killed can be
rerun into the same folder and resumes without redoing or losing a sample. When all samples are
done the outputs are gathered into ``outputs.parquet`` and ``transcript.json`` is written.

A sealed run's samples are batches of its module's ``count``; when they are done the server adds
their outputs up along a chain of the module's ``add`` (and, for a privately served model, its
``noise``), and publishes that one total only: the per-batch outputs stay in the journal and are
deleted with it (:mod:`fhe_backend.sealed.circuit`).

Where the samples are evaluated is pluggable: an :class:`Executor` turns pending samples into
results as they complete (:class:`LocalExecutor` in this process by default, a Dask cluster with
:mod:`fhe_backend.server.distributed`), while the journal, progress, cancellation and transcript
stay here, so a distributed run resumes, reports and hashes exactly like a local one.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import socket
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..auditor.keydirs import refuse_inside_key_dir
from ..errors import AuditError, BusyError, CiphertextError, MismatchError
from ..formats import atomic
from ..formats.artifacts import (
    OUTPUTS,
    TOTAL_ID,
    TRANSCRIPT,
    EncryptedBenchmark,
    ModelPackage,
    RunResult,
    SampleRecord,
    Transcript,
    installed_versions,
    machine_info,
    now_iso,
    write_ciphertexts,
    write_json,
)
from ..formats.hashing import content_hash, sha256_bytes
from ..formats.layers import circuit_package
from ..formats.progress import Progress
from ..sealed.chain import add_up
from ..untrusted.circuit import FHECircuit, load_evaluation_keys
from ..untrusted.keyset import read_evaluation_keys
from ..untrusted.sandbox import IsolatedCircuit, vet

if TYPE_CHECKING:
    from .privacy import PrivateCounts

PARTIAL = ".partial"
RUN_KEY = "run.json"
# The run folder's owner: an OS lock on this file (released by the kernel when its holder
# exits, killed or not), holding who took it. Kept after the run: deleting a lock file while
# another process opens it would let two writers lock two different files.
LOCK = ".lock"
_HOLDER = re.compile(r"pid \d+ on [\w.-]{1,100}, started [\dT:+-]{1,40}")

# A sample still to evaluate: (position in the benchmark, sample id, input ciphertext).
Pending = tuple[int, str, bytes]
# Its result: (position, record, output ciphertext or None when the sample failed).
Evaluated = tuple[int, SampleRecord, bytes | None]


class Executor(Protocol):
    """Evaluates pending samples and yields each result as it completes, in any order.

    Closing the generator early (a cancelled or failed run) must abandon the outstanding work;
    results not yet yielded are simply redone when the run is resumed.
    """

    def evaluate(
        self, package: ModelPackage, raw_keys: bytes, todo: list[Pending]
    ) -> Generator[Evaluated, None, None]: ...  # runs ``package.function`` on each


def evaluate_sample(
    run: Callable[[bytes], bytes], sample_id: str, ciphertext: bytes, worker: str
) -> tuple[SampleRecord, bytes | None]:
    """One sample, timed; a ciphertext the circuit rejects is a failed sample, not a failed run."""
    started_at = _timestamp()
    start = time.perf_counter()
    try:
        output: bytes | None = run(ciphertext)
        error = None
    except CiphertextError as exc:
        output, error = None, str(exc)
    seconds = time.perf_counter() - start
    digest = sha256_bytes(output) if output is not None else None
    return SampleRecord(sample_id, seconds, digest, error, worker, started_at,
                        _timestamp()), output


class LocalExecutor:
    """This machine, one sample after the other: the default.

    Ciphertexts and evaluation keys come from whoever published the benchmark, so they are
    evaluated in a sandboxed child process: a crash fails one sample, never this process.
    """

    def evaluate(
        self, package: ModelPackage, raw_keys: bytes, todo: list[Pending]
    ) -> Generator[Evaluated, None, None]:
        worker = f"local:{os.getpid()}"
        with IsolatedCircuit(package.server_zip, raw_keys) as circuit:
            for index, sample_id, ciphertext in todo:
                yield (index, *evaluate_sample(
                    lambda ct: circuit.run(ct, function=package.function), sample_id,
                    ciphertext, worker))


class FHEServer:
    """The server role for one model package (the circuit is compiled once per process)."""

    def __init__(self, package: ModelPackage):
        self.package = package
        self._circuit: FHECircuit | None = None

    @property
    def circuit(self) -> FHECircuit:
        if self._circuit is None:
            self._circuit = FHECircuit(self.package.server_zip)
        return self._circuit

    def load_keys(self, raw: bytes) -> Any:
        """Evaluation keys for in-process use, checked against this circuit's keyset."""
        return load_evaluation_keys(raw, self.package.server_zip)

    def run(
        self,
        encrypted: EncryptedBenchmark,
        out_dir: Path,
        *,
        progress: Progress[SampleRecord] | None = None,
        sources: dict[str, Any] | None = None,
        should_stop: Callable[[], bool] | None = None,
        executor: Executor | None = None,
        dp: PrivateCounts | None = None,
    ) -> RunResult:
        """Evaluate every sample; resumes an interrupted run in the same ``out_dir``.

        ``executor`` says where samples are evaluated (default: this process); the outputs and
        their hash do not depend on it, since FHE evaluation is deterministic. ``dp``: noise on
        a sealed run's total, charged to the auditor's key in the server's budget.
        """
        encrypted.check_model(self.package)
        package = self.package
        sealed = encrypted.manifest.circuit == "sealed"
        if sealed:  # batches for the sealed audit module
            from ..sealed.circuit import sealed_view

            package = sealed_view(package)
        else:
            package = circuit_package(package, encrypted.manifest.circuit)
        if dp is not None:
            if not sealed:
                raise AuditError("Noise (--dp-epsilon) is added to a sealed run's total only; "
                                 "this benchmark was encrypted per sample.")
            # Before any work: a bad epsilon or a spent budget is one sentence now.
            dp.check(encrypted.manifest.key_fingerprint)
        out_dir = Path(out_dir)
        refuse_inside_key_dir(out_dir, "a run")
        with run_lock(out_dir):
            return self._run(package, encrypted, out_dir, progress, sources, should_stop,
                             executor, sealed, dp)

    def _run(
        self,
        package: ModelPackage,
        encrypted: EncryptedBenchmark,
        out_dir: Path,
        progress: Progress | None,
        sources: dict[str, Any] | None,
        should_stop: Callable[[], bool] | None,
        executor: Executor | None,
        sealed: bool = False,
        dp: PrivateCounts | None = None,
    ) -> RunResult:
        if (out_dir / TRANSCRIPT).is_file():
            done = RunResult.load(out_dir)
            if done.transcript.inputs_sha256 != encrypted.manifest.inputs_sha256:
                raise AuditError(f"{out_dir} already holds a run of other inputs; choose a new "
                                 "folder.")
            done.outputs()  # a finished run is returned only if transcript and outputs agree
            return done
        # The vetted circuit fixes the size of every input and of its keys: larger files are
        # refused from their metadata, before a byte is decompressed or read.
        vetted = vet(package.server_zip)
        rows = encrypted.ciphertexts(vetted.input_bytes)
        encrypted.check_inputs(rows)  # evaluate exactly the ciphertexts the benchmark names
        raw_keys = read_evaluation_keys(encrypted.evaluation_keys_path, vetted.client_specs)
        if dp is not None and encrypted.manifest.key_fingerprint != sha256_bytes(raw_keys):
            # The budget is charged to this fingerprint: one edited in the manifest would give
            # the same keys a fresh budget per edit.
            raise MismatchError("The encrypted benchmark's key fingerprint is not the hash of "
                                "its evaluation keys, and the privacy budget is charged to "
                                "it; nothing was run.")
        journal = _Journal(out_dir / PARTIAL)
        journal.open({
            "model_fingerprint": self.package.fingerprint,
            "inputs_sha256": encrypted.manifest.inputs_sha256,
        }, out_dir)

        started_at = journal.started_at
        records = journal.records()
        total = len(rows)
        todo = [(i, sample_id, ct) for i, (sample_id, ct) in enumerate(rows) if i not in records]

        def stop_if_asked() -> None:
            if should_stop and len(records) < total and should_stop():
                raise AuditError(f"Run stopped after {len(records)} of {total} samples; rerun "
                                 f"into {out_dir} to resume.")

        stop_if_asked()
        results = (executor or LocalExecutor()).evaluate(package, raw_keys, todo)
        with closing(results):  # leaving early cancels the executor's outstanding work
            for index, record, output in results:
                journal.commit(index, record, output)
                records[index] = record
                if progress:
                    progress(len(records), total, record)
                stop_if_asked()

        ordered = [records[i] for i in range(total)]
        kept = [(i, r.sample_id) for i, r in enumerate(ordered) if not r.error]
        summed: dict[str, Any] = {}
        if sealed:
            noise = dp.charge(encrypted.manifest.key_fingerprint,
                              2 * int(package.manifest.sealed["n_groups"]),
                              journal.path) if dp else None
            start = time.perf_counter()
            with IsolatedCircuit(package.server_zip, raw_keys) as circuit:
                summed_up = add_up(circuit, (journal.output(i) for i, _ in kept),
                                   noise[0] if noise else None)
            summed = {**summed_up.record(noise[1] if noise else None),
                      "seconds": time.perf_counter() - start}

            def outputs() -> Iterator[tuple[str, bytes]]:
                return iter([(TOTAL_ID, summed_up.blob)])
        else:
            def outputs() -> Iterator[tuple[str, bytes]]:
                # Read back from the journal one at a time: never more than one sample's output
                # in this process, however many samples and however large each output.
                return ((sample_id, journal.output(i)) for i, sample_id in kept)

        write_ciphertexts(out_dir / OUTPUTS, outputs())
        ok_times = [r.seconds for r in ordered if not r.error]
        transcript = Transcript(
            model_id=self.package.model_id,
            model_fingerprint=self.package.fingerprint,
            benchmark_id=encrypted.manifest.benchmark_id,
            key_fingerprint=encrypted.manifest.key_fingerprint,
            keyset_id=encrypted.manifest.keyset_id,
            inputs_sha256=encrypted.manifest.inputs_sha256,
            evaluation_keys_sha256=sha256_bytes(raw_keys),
            outputs_sha256=content_hash(outputs()),
            mode="execute",
            n_samples=total,
            n_failed=total - len(kept),
            total_s=float(sum(r.seconds for r in ordered)),
            fhe_s_per_sample=float(sum(ok_times) / len(ok_times)) if ok_times else 0.0,
            samples=ordered,
            versions=installed_versions(),
            machine=machine_info(),
            started_at=started_at,
            finished_at=now_iso(),
            sources=sources or {},
            model_semantics_sha256=self.package.semantics_sha256,
            circuit=encrypted.manifest.circuit,
            total=summed,
        )
        write_json(out_dir / TRANSCRIPT, transcript.to_dict())
        shutil.rmtree(out_dir / PARTIAL, ignore_errors=True)
        return RunResult(path=out_dir, transcript=transcript)


@contextmanager
def run_lock(out_dir: Path) -> Iterator[None]:
    """Own ``out_dir`` for the duration, or refuse: one writer per run folder.

    ``flock`` is tied to the open file: the kernel releases it when the holder exits, however it
    exits, so a killed run never leaves the folder locked. The holder writes who it is into the
    lock file, for the sentence that refuses a second writer.
    """
    path = out_dir / LOCK
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        # O_NOFOLLOW: a planted symbolic link must not make us truncate a file elsewhere.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise AuditError(f"Cannot write the run into {out_dir} ({exc.strerror}).") from exc
    with open(fd, "r+", encoding="utf-8", errors="replace") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            found = handle.read(200).strip()
            holder = found if _HOLDER.fullmatch(found) else "another process"
            raise BusyError(f"{out_dir} is being written by another run ({holder}); wait for it "
                            "to finish, or choose another folder.") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}, started {now_iso()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _Journal:
    """Per-sample output files that survive a kill at any point."""

    def __init__(self, path: Path):
        self.path = path
        self.started_at = now_iso()

    def open(self, key: dict[str, str], out_dir: Path) -> None:
        marker = self.path / RUN_KEY
        if marker.is_file():
            previous = json.loads(marker.read_text(encoding="utf-8"))
            if {k: previous.get(k) for k in key} != key:
                raise AuditError(
                    f"{out_dir} holds an interrupted run of other inputs; choose a new folder."
                )
            self.started_at = previous.get("started_at", self.started_at)
            return
        if out_dir.exists() and any(p.name not in (PARTIAL, LOCK) for p in out_dir.iterdir()):
            raise AuditError(f"{out_dir} is not empty; choose a new folder for the run.")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            write_json(marker, {**key, "started_at": self.started_at})
        except OSError as exc:
            raise AuditError(f"Cannot write the run into {out_dir} ({exc.strerror}).") from exc

    def records(self) -> dict[int, SampleRecord]:
        found: dict[int, SampleRecord] = {}
        for meta in self.path.glob("*.json"):
            if meta.name == RUN_KEY:
                continue
            try:
                data = json.loads(meta.read_text(encoding="utf-8"))
                record = SampleRecord(**data)
            except (json.JSONDecodeError, TypeError):
                continue  # a torn record is redone
            index = int(meta.stem)
            if record.error is None:
                blob = self.path / f"{index:08d}.out"
                if not blob.is_file() or sha256_bytes(blob.read_bytes()) != record.output_sha256:
                    continue
            found[index] = record
        return found

    def commit(self, index: int, record: SampleRecord, output: bytes | None) -> None:
        try:
            if output is not None:
                atomic.write_bytes(self.path / f"{index:08d}.out", output)
            atomic.write_bytes(self.path / f"{index:08d}.json",
                          json.dumps(record.__dict__).encode("utf-8"))
        except OSError as exc:
            raise AuditError(
                f"Cannot write the output of sample {record.sample_id!r} ({exc.strerror}); "
                "the run so far is kept and resumes when rerun into the same folder."
            ) from exc

    def output(self, index: int) -> bytes:
        return (self.path / f"{index:08d}.out").read_bytes()


def _timestamp() -> str:
    # Milliseconds: a linear circuit takes a few of them per sample.
    return datetime.now(UTC).isoformat(timespec="milliseconds")


