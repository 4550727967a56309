"""Verifier: re-execute a run from public artifacts and compare it with what was published.

Linear circuits (no programmable bootstrapping) are bit-for-bit reproducible: the same input
ciphertexts and evaluation keys give byte-identical outputs in any process, so anyone can check
a run without a key. Circuits with bootstrapping are reproducible only inside one process:
Concrete's FFT (concrete-fft, used by every bootstrap) picks its algorithm by timing when a
process first plans it, and different plans round differently. The outputs then decrypt to the
same values but differ in their noise bits. For those circuits a byte mismatch proves nothing,
so the auditor, who holds the key, verifies by decrypting both the published and the
re-executed output and comparing the predicted labels; without the key the result is reported
as inconclusive, never as verified.

A sealed run publishes one total (:mod:`fhe_backend.sealed.circuit`): the verifier re-executes
every batch and the chain of additions, and the key holder compares the two decrypted totals
(never a batch's counts). A total the server added noise to cannot be settled that way: the
noise-free total would tell the key holder the noise, so only the hashes are checked and the
re-execution is reported as inconclusive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..auditor.client import Auditor
from ..errors import IntegrityError
from ..formats.artifacts import EncryptedBenchmark, ModelPackage, RunResult
from ..formats.hashing import content_hash, sha256_bytes
from ..formats.layers import layer_of, representation_view
from ..formats.progress import Progress
from ..sealed.chain import rerun, total_problem
from ..untrusted.keyset import read_evaluation_keys
from ..untrusted.sandbox import IsolatedCircuit, vet

if TYPE_CHECKING:
    from ..auditor.sealed import SealedAuditor


@dataclass
class Verification:
    n_checked: int
    n_samples: int
    problems: list[str] = field(default_factory=list)
    n_identical: int = 0  # byte-identical re-executions
    n_equivalent: int = 0  # different bytes, same decrypted label (bootstrapped circuits)
    n_inconclusive: int = 0  # different bytes, no key to decrypt them
    why_inconclusive: str = ("This circuit uses bootstrapping, which is not bit-reproducible "
                             "across processes; the auditor can decide by decrypting "
                             "(verify --keys).")

    @property
    def ok(self) -> bool:
        return not self.problems and not self.n_inconclusive

    def summary(self) -> str:
        if self.problems:
            return "Verification FAILED: " + "; ".join(self.problems[:5])
        if self.n_inconclusive:
            return (f"Inconclusive: {self.n_inconclusive} of {self.n_checked} re-executed "
                    f"outputs differ in their bytes. {self.why_inconclusive}")
        text = (f"Verified: {self.n_checked} of {self.n_samples} samples re-executed in FHE; "
                f"{self.n_identical} byte-identical")
        if self.n_equivalent:
            text += (f", {self.n_equivalent} decrypting to the same label (bootstrapped "
                     "circuit, not bit-reproducible across processes)")
        return text + "; every hash matches the transcript."


def _check_hashes(package: ModelPackage, encrypted: EncryptedBenchmark, run: RunResult,
                  rows: list[tuple[str, bytes]], raw_keys: bytes, max_output_bytes: int,
                  ) -> list[str]:
    """What can be checked without executing anything."""
    transcript = run.transcript
    problems = []
    if transcript.model_fingerprint != package.fingerprint:
        problems.append("the transcript names another model fingerprint")
    recorded = {transcript.model_semantics_sha256, encrypted.manifest.model_semantics_sha256}
    if recorded - {"", package.semantics_sha256}:
        problems.append("the model package gives the outputs another meaning (class names, "
                        "output kind or input schema) than the one the run was made with")
    if transcript.inputs_sha256 != encrypted.manifest.inputs_sha256:
        problems.append("the transcript's inputs hash is not this encrypted benchmark's")
    if content_hash(rows) != encrypted.manifest.inputs_sha256:
        problems.append("the ciphertexts do not hash to the benchmark manifest's inputs hash")
    if sha256_bytes(raw_keys) != transcript.evaluation_keys_sha256:
        problems.append("the evaluation keys are not the ones the run used")
    coverage = run.coverage([sample_id for sample_id, _ in rows])
    if coverage:
        problems.append(coverage)
    try:
        run.outputs(check=True, max_cell_bytes=max_output_bytes)
    except IntegrityError as exc:
        problems.append(str(exc))
    return problems


def _label(auditor: Auditor, output: bytes) -> Any:
    return int(np.argmax(auditor.decrypt_output(output)))


def _verify_sealed(view: ModelPackage, run: RunResult, rows: list[tuple[str, bytes]],
                   raw_keys: bytes, output_bytes: int, auditor: SealedAuditor | None,
                   result: Verification, progress: Progress[str] | None) -> Verification:
    """Every batch re-executed and added up along the chain; the totals compared (decrypted by
    the key holder: bootstrapped outputs differ in their bytes across processes)."""
    total = run.transcript.total
    if not total:
        result.problems.append("the sealed run publishes per-batch outputs instead of one total")
        return result
    if problem := total_problem(run.transcript):
        result.problems.append(f"the transcript {problem}")
        return result
    if total.get("dp"):
        result.n_checked, result.n_inconclusive = len(rows), 1
        result.why_inconclusive = (
            "The server added noise to this total (differential privacy): the re-executed, "
            "noise-free total would tell the key holder the noise, so it is not compared; the "
            "hashes were checked. Whoever holds the private package can re-run the batches.")
        return result
    if any(r.error for r in run.transcript.samples):
        result.problems.append("batches of the run failed: it has no complete total")
        return result
    (published,) = run.outputs(check=False, max_cell_bytes=output_bytes)

    def done(sample_id: str) -> None:
        result.n_checked += 1
        if progress:
            progress(result.n_checked, len(rows), sample_id)

    mine = rerun(view.server_zip, raw_keys, rows, done)
    if mine.blob == published[1]:
        result.n_identical += 1
    elif auditor is None:
        result.n_inconclusive += 1
    elif np.array_equal(auditor.decrypt_total(run, mine.blob, mine.function),
                        auditor.decrypt_total(run, published[1])):
        result.n_equivalent += 1
    else:
        result.problems.append("the re-executed total decrypts to other counts than the "
                               "published one")
    return result


def verify_run(
    package: ModelPackage,
    encrypted: EncryptedBenchmark,
    run: RunResult,
    *,
    limit: int | None = None,
    progress: Progress[str] | None = None,
    auditor: Auditor | None = None,
) -> Verification:
    """Re-execute the first ``limit`` samples (all by default) and compare with the run (a
    sealed run: all of its batches, since only their total is published).

    ``auditor`` (with the keys that encrypted the benchmark) settles outputs of bootstrapped
    circuits whose bytes differ, by comparing decrypted labels (a sealed run: totals).
    """
    bootstrapped = bool(package.manifest.circuit.get("pbs_count"))
    view = package  # the package seen through the circuit the benchmark was encrypted for
    if encrypted.manifest.circuit == "sealed":  # batches of the sealed circuit (it bootstraps)
        from ..sealed.circuit import sealed_view

        view, bootstrapped = sealed_view(package), True
    elif (layer := layer_of(encrypted.manifest.circuit)) is not None:  # a published layer's
        view = representation_view(package, layer)
        bootstrapped = bool(view.entry.get("pbs_count"))
    circuit_zip = view.server_zip
    vetted = vet(circuit_zip)
    rows = encrypted.ciphertexts(vetted.input_bytes)
    raw_keys = read_evaluation_keys(encrypted.evaluation_keys_path, vetted.client_specs)
    result = Verification(0, len(rows), _check_hashes(package, encrypted, run, rows, raw_keys,
                                                      vetted.output_bytes))
    if result.problems:
        return result
    if encrypted.manifest.circuit == "sealed":
        return _verify_sealed(view, run, rows, raw_keys, vetted.output_bytes, auditor, result,
                              progress)
    outputs = dict(run.outputs(check=False, max_cell_bytes=vetted.output_bytes))
    records = {r.sample_id: r for r in run.transcript.samples}
    with IsolatedCircuit(circuit_zip, raw_keys) as circuit:
        todo = rows if limit is None else rows[:limit]
        for i, (sample_id, ciphertext) in enumerate(todo):
            record = records.get(sample_id)
            if record is None:
                result.problems.append(f"sample {sample_id!r} is missing from the transcript")
                continue
            if record.error:
                continue  # failed samples have no output to compare
            recomputed = circuit.run(ciphertext)
            published = outputs.get(sample_id)
            if published is None or sha256_bytes(published) != record.output_sha256:
                result.problems.append(f"sample {sample_id!r}: output missing or not as recorded")
            elif recomputed == published:
                result.n_identical += 1
            elif not bootstrapped:
                result.problems.append(f"sample {sample_id!r}: re-executed output differs")
            elif auditor is None:
                result.n_inconclusive += 1
            elif _label(auditor, recomputed) == _label(auditor, published):
                result.n_equivalent += 1
            else:
                result.problems.append(f"sample {sample_id!r}: re-executed output decrypts to "
                                       "another label")
            result.n_checked += 1
            if progress:
                progress(i + 1, len(todo), sample_id)
    return result
