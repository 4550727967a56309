"""Spot-check of a run made by another server, before the auditor decrypts it.

A server that returns some other function of the inputs (another model, or worse, the inputs
themselves) would turn the auditor into a decryption oracle. So before decrypting a run it did
not make itself, the desk checks the transcript's hashes against the encrypted benchmark it
published, re-executes k samples drawn at random (unpredictably: the server cannot know which)
and compares the decrypted labels of its own outputs with the published ones. Any mismatch voids
the run. Only the k published outputs of the check are decrypted before the verdict.

A sealed run publishes one total, never a batch's counts (decrypting those is refused: they pin
predictions), so it is checked whole: every batch is re-executed, added up along the same chain,
and the two decrypted totals must be equal (k = n batches, whatever the target). A total the
server added noise to is refused: comparing it with the noise-free one would read the noise.

Size: if the server altered m of the n outputs, k samples drawn without replacement all miss
them with probability C(n-m, k) / C(n, k), so the check catches the run with probability
1 - C(n-m, k) / C(n, k). The desk sizes k from a target (:func:`plan`): by default a 95% chance
to catch a change as large as one release step, ceil(step x n) altered samples (for a sealed
run, the batches that many samples need at least: ceil(m / batch size)), re-executing everything
when that takes every sample anyway. For n = 171 and ladder:0.01 (m = 2), k = 133; a fixed
k = 20 caught 1 altered output 12% of the time and 5 of them half the time. The signed result
records k, the target and the 95% upper bound on the altered share that passing implies.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..auditor.client import Auditor
from ..auditor.sealed import SealedAuditor
from ..errors import AuditError
from ..formats.artifacts import TOTAL_ID, EncryptedBenchmark, ModelPackage, RunResult
from ..formats.hashing import content_hash, sha256_bytes
from ..sealed.chain import rerun, total_problem
from ..sealed.circuit import sealed_view
from ..untrusted.keyset import read_evaluation_keys
from ..untrusted.sandbox import IsolatedCircuit, vet

# The default chance to catch a run altered by one release step.
POWER = 0.95


def catch_probability(n: int, altered: int, k: int) -> float:
    """Probability that k of n samples drawn without replacement hit at least one of
    ``altered`` altered outputs: 1 - C(n - altered, k) / C(n, k)."""
    k = min(k, n)
    if altered <= 0 or k <= 0:
        return 0.0
    return 1.0 - math.comb(n - altered, k) / math.comb(n, k)


def size_for(n: int, altered: int, power: float = POWER) -> int:
    """The smallest k whose check catches ``altered`` of n altered outputs with probability
    ``power`` (n: everything, when no smaller k does)."""
    altered = min(max(altered, 1), n)
    return next((k for k in range(1, n + 1) if catch_probability(n, altered, k) >= power), n)


def altered_share_bound(n: int, k: int, confidence: float = POWER) -> float:
    """The one-sided ``confidence`` upper bound on the share of altered outputs given that k
    checked outputs were all right: the largest m that such a pass does not reject at level
    1 - confidence (P(pass | m) = C(n-m, k) / C(n, k) >= 1 - confidence), divided by n."""
    k = min(k, n)
    m = 0
    while m < n and math.comb(n - m - 1, k) / math.comb(n, k) >= 1 - confidence:
        m += 1
    return round(m / n, 4) if n else 0.0


@dataclass(frozen=True)
class Plan:
    """How many of a run's n outputs (samples, or sealed batches) the desk re-executes."""
    n: int
    k: int
    altered: int  # the target: this many altered outputs are caught with probability ``power``
    power: float
    chosen_by: str  # "target", or "auditor" (an explicit --spot-check K)

    def to_dict(self) -> dict[str, Any]:
        return {"altered": self.altered, "power": self.power, "chosen_by": self.chosen_by,
                "catch_probability": round(catch_probability(self.n, self.altered, self.k), 4)}


def plan(n_units: int, n_samples: int, step: float, k: int | None = None,
         power: float = POWER) -> Plan:
    """The spot check of a run of ``n_units`` outputs over ``n_samples`` samples: k from the
    target (a change of one release ``step``: ceil(step x n_samples) altered samples, or the
    fewest batches holding them) unless the auditor gave k."""
    samples = max(1, math.ceil(round(step * n_samples, 9)))
    per_unit = max(1, math.ceil(n_samples / max(n_units, 1)))
    altered = min(n_units, max(1, math.ceil(samples / per_unit)))
    if k is not None:
        return Plan(n_units, min(k, n_units), altered, power, "auditor")
    return Plan(n_units, size_for(n_units, altered, power), altered, power, "target")


@dataclass
class SpotCheck:
    n_samples: int  # ciphertexts of the encrypted benchmark: samples, or batches when sealed
    k: int
    unit: str = "sample"  # "batch" for a sealed run
    target: dict[str, Any] = field(default_factory=dict)
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # Published outputs decrypted to compare them (bytes that differ from the re-executed
    # ones): each is a reading of the hidden set, which the challenge's budget counts.
    decrypted: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok,
                "formula": "1 - C(n-m, k) / C(n, k) for m altered outputs of n",
                # What a pass implies (95%): at most this share of the outputs was altered.
                "altered_share_upper_95": altered_share_bound(self.n_samples, self.k)}


def spot_check(package: ModelPackage, auditor: Auditor | SealedAuditor,
               encrypted: EncryptedBenchmark, run: RunResult, sized: Plan) -> SpotCheck:
    sealed = encrypted.manifest.circuit == "sealed"
    server_zip = sealed_view(package).server_zip if sealed else package.server_zip
    vetted = vet(server_zip)
    rows = encrypted.ciphertexts(vetted.input_bytes)
    raw_keys = read_evaluation_keys(encrypted.evaluation_keys_path, vetted.client_specs)
    check = SpotCheck(len(rows), min(sized.k, len(rows)), "batch" if sealed else "sample",
                      sized.to_dict())
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
    if sealed:
        return _check_sealed(auditor, server_zip, raw_keys, rows, run, published, check)
    chosen = secrets.SystemRandom().sample(range(len(rows)), check.k)
    mismatched = 0
    with IsolatedCircuit(server_zip, raw_keys) as circuit:
        for index in sorted(chosen):
            sample_id, ciphertext = rows[index]
            check.checked.append(sample_id)
            theirs = published.get(sample_id)
            if theirs is None:
                check.problems.append(f"sample {sample_id} has no published output")
                continue
            mine = circuit.run(ciphertext)
            if mine != theirs:
                check.decrypted += 1
                mismatched += not _same_reading(auditor, mine, theirs)
    if mismatched:
        # Neither which outputs nor how many: the signed result is public, and a runner who
        # planted chosen outputs would read the model's answer on each named hidden sample.
        check.problems.append(f"a checked {check.unit}'s published output decrypts to other "
                              f"{'counts' if sealed else 'a label'} than the re-executed one")
    return check


def _check_sealed(auditor: SealedAuditor, server_zip: Path, raw_keys: bytes,
                  rows: list[tuple[str, bytes]], run: RunResult, published: dict[str, bytes],
                  check: SpotCheck) -> SpotCheck:
    """Every batch re-executed and added up; the decrypted totals compared."""
    total = run.transcript.total
    if not total or TOTAL_ID not in published:
        check.problems.append("the sealed run publishes per-batch outputs, not one total")
        return check
    if problem := total_problem(run.transcript):
        check.problems.append(f"the sealed run's transcript {problem}, so no counts were "
                              "compared")
        return check
    if total.get("dp"):
        check.problems.append("the sealed run's total carries noise, which a spot check cannot "
                              "compare without reading it")
        return check
    check.k = len(rows)
    mine = rerun(server_zip, raw_keys, rows, check.checked.append)
    if mine.blob != published[TOTAL_ID]:
        check.decrypted += 1
        try:
            same = np.array_equal(auditor.decrypt_total(run, mine.blob, mine.function),
                                  auditor.decrypt_total(run, published[TOTAL_ID]))
        except AuditError:
            same = False
        if not same:
            check.problems.append("the sealed run's published total decrypts to other counts "
                                  "than the re-executed batches add up to")
    return check


def _same_reading(auditor: Auditor, mine: bytes, theirs: bytes) -> bool:
    """Different bytes (circuits with bootstrapping are not bit-reproducible across
    processes): compare the labels they decrypt to; an output that does not decrypt is a
    mismatch."""
    try:
        a, b = auditor.decrypt_output(mine), auditor.decrypt_output(theirs)
    except AuditError:
        return False
    return int(np.argmax(a)) == int(np.argmax(b))
