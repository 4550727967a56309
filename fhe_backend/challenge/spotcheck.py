"""Spot-check of a run made by another server, before the auditor decrypts it.

A server that returns some other function of the inputs (another model, or worse, the inputs
themselves) would turn the auditor into a decryption oracle. So before decrypting a run it did
not make itself, the desk checks the transcript's hashes against the encrypted benchmark it
published, re-executes k samples drawn at random (unpredictably: the server cannot know which)
and compares the decrypted labels of its own outputs with the published ones. Any mismatch voids
the run. Only the k published outputs of the check are decrypted before the verdict.

A sealed run is checked the same way with batches for samples: k batches are re-executed and the
decrypted counts of each (predicted positives per group and true label, the only thing a sealed
output holds) must equal the published batch's; n and m then count batches.

Catch probability: if the server altered m of the n outputs, k samples drawn without replacement
all miss them with probability C(n-m, k) / C(n, k) <= (1 - m/n)^k; the check catches the run with
probability 1 - C(n-m, k) / C(n, k) (k = 20, n = 171, m = 18 altered, about 10%: 0.91).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..auditor.client import Auditor
from ..auditor.sealed import SealedAuditor
from ..errors import AuditError
from ..formats.artifacts import EncryptedBenchmark, ModelPackage, RunResult
from ..formats.hashing import content_hash, sha256_bytes
from ..sealed.circuit import sealed_view
from ..untrusted.keyset import read_evaluation_keys
from ..untrusted.sandbox import IsolatedCircuit, vet

DEFAULT_SIZE = 20
# The share of altered outputs the recorded catch probability is stated for.
ALTERED_SHARE = 0.10


def catch_probability(n: int, altered: int, k: int) -> float:
    """Probability that k of n samples drawn without replacement hit at least one of
    ``altered`` altered outputs: 1 - C(n - altered, k) / C(n, k)."""
    k = min(k, n)
    if altered <= 0 or k <= 0:
        return 0.0
    return 1.0 - math.comb(n - altered, k) / math.comb(n, k)


@dataclass
class SpotCheck:
    n_samples: int  # ciphertexts of the encrypted benchmark: samples, or batches when sealed
    k: int
    unit: str = "sample"  # "batch" for a sealed run
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        altered = max(1, math.ceil(ALTERED_SHARE * self.n_samples))
        return {**asdict(self), "ok": self.ok,
                "formula": "1 - C(n-m, k) / C(n, k) for m altered outputs of n",
                "catch_probability_10pct_altered": round(
                    catch_probability(self.n_samples, altered, self.k), 4)}


def spot_check(package: ModelPackage, auditor: Auditor | SealedAuditor,
               encrypted: EncryptedBenchmark, run: RunResult, k: int = DEFAULT_SIZE,
               ) -> SpotCheck:
    sealed = encrypted.manifest.circuit == "sealed"
    server_zip = sealed_view(package).server_zip if sealed else package.server_zip
    vetted = vet(server_zip)
    rows = encrypted.ciphertexts(vetted.input_bytes)
    raw_keys = read_evaluation_keys(encrypted.evaluation_keys_path, vetted.client_specs)
    check = SpotCheck(len(rows), min(k, len(rows)), "batch" if sealed else "sample")
    t = run.transcript
    for ok, problem in (
        (t.model_fingerprint == package.fingerprint, "the run names another model"),
        (t.inputs_sha256 == encrypted.manifest.inputs_sha256 == content_hash(rows),
         "the run was not made on the published encrypted benchmark"),
        (t.evaluation_keys_sha256 == sha256_bytes(raw_keys),
         "the run used other evaluation keys"),
        (t.keyset_id == encrypted.manifest.keyset_id, "the run names another keyset"),
        (t.circuit == encrypted.manifest.circuit, "the run names another circuit"),
    ):
        if not ok:
            check.problems.append(problem)
    if check.problems:
        return check
    try:
        published = dict(run.outputs(check=True, max_cell_bytes=vetted.output_bytes))
    except AuditError as exc:
        check.problems.append(str(exc))
        return check
    chosen = secrets.SystemRandom().sample(range(len(rows)), check.k)
    with IsolatedCircuit(server_zip, raw_keys) as circuit:
        for index in sorted(chosen):
            sample_id, ciphertext = rows[index]
            check.checked.append(sample_id)
            theirs = published.get(sample_id)
            if theirs is None:
                check.problems.append(f"sample {sample_id} has no published output")
                continue
            mine = circuit.run(ciphertext)
            if mine != theirs and not _same_reading(auditor, mine, theirs, sealed):
                check.problems.append(f"{check.unit} {sample_id}: the published output decrypts "
                                      f"to other {'counts' if sealed else 'a label'} than the "
                                      "re-executed one")
    return check


def _same_reading(auditor: Auditor | SealedAuditor, mine: bytes, theirs: bytes,
                  sealed: bool) -> bool:
    """Different bytes (circuits with bootstrapping are not bit-reproducible across
    processes): compare what they decrypt to (a label, or a sealed batch's counts); an output
    that does not decrypt is a mismatch."""
    try:
        a, b = auditor.decrypt_output(mine), auditor.decrypt_output(theirs)
    except AuditError:
        return False
    return bool(np.array_equal(a, b)) if sealed else int(np.argmax(a)) == int(np.argmax(b))
