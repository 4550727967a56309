"""Verifier: anyone re-executes a run from public artifacts and compares hashes.

FHE evaluation is deterministic: the same input ciphertexts and evaluation keys give
byte-identical outputs. So a published run can be checked without any key: recompute each
output and compare it to the transcript's per-sample hashes and to the stored outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .artifacts import EncryptedBenchmark, ModelPackage, RunResult
from .errors import IntegrityError
from .hashing import content_hash, sha256_bytes
from .server import FHEServer


@dataclass
class Verification:
    ok: bool
    n_checked: int
    n_samples: int
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.ok:
            return (f"Verified: {self.n_checked} of {self.n_samples} samples re-executed in FHE "
                    "give byte-identical outputs, and every hash matches the transcript.")
        return "Verification FAILED: " + "; ".join(self.problems[:5])


def verify_run(
    package: ModelPackage,
    encrypted: EncryptedBenchmark,
    run: RunResult,
    *,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Verification:
    """Re-execute the first ``limit`` samples (all by default) and compare every hash."""
    transcript = run.transcript
    problems: list[str] = []
    if transcript.model_fingerprint != package.fingerprint:
        problems.append("the transcript names another model fingerprint")
    if transcript.inputs_sha256 != encrypted.manifest.inputs_sha256:
        problems.append("the transcript's inputs hash is not this encrypted benchmark's")
    rows = encrypted.ciphertexts()
    if content_hash(rows) != encrypted.manifest.inputs_sha256:
        problems.append("the ciphertexts do not hash to the benchmark manifest's inputs hash")
    raw_keys = encrypted.evaluation_keys()
    if sha256_bytes(raw_keys) != transcript.evaluation_keys_sha256:
        problems.append("the evaluation keys are not the ones the run used")
    try:
        outputs = dict(run.outputs(check=True))
    except IntegrityError as exc:
        problems.append(str(exc))
        outputs = dict(run.outputs(check=False))
    if problems:
        return Verification(False, 0, len(rows), problems)

    records = {r.sample_id: r for r in transcript.samples}
    server = FHEServer(package)
    keys = server.load_keys(raw_keys)
    todo = rows if limit is None else rows[:limit]
    for i, (sample_id, ciphertext) in enumerate(todo):
        record = records.get(sample_id)
        if record is None:
            problems.append(f"sample {sample_id!r} is missing from the transcript")
            continue
        if record.error:
            continue  # failed samples have no output to compare
        recomputed = server.circuit.run(ciphertext, keys)
        digest = sha256_bytes(recomputed)
        if digest != record.output_sha256 or outputs.get(sample_id) != recomputed:
            problems.append(f"sample {sample_id!r}: re-executed output differs")
        if progress:
            progress(i + 1, len(todo))
    return Verification(not problems, len(todo), len(rows), problems)
