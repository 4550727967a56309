"""The auditor's desk: every pending submission in, one signed result out.

For each pending submission, oldest first: check who submitted it (a signed submission must
check against the submitter key it names, and a submitter name whose earlier results carry a key
is bound to that key) and when (not in the future, not before the challenge), load the model
package (every ModelPackage check, its fingerprint must still be the submitted one, the hidden
benchmark must fit its input schema), keygen, encrypt the
hidden benchmark (sealed where the package has a sealed circuit: batches whose run yields only
the confusion counts; per sample otherwise), run (in this process, on Dask, or by taking a run
another server published in ``runs/<id>/`` after spot-checking it), decrypt, score, apply the
release policy, and write the signed result, which says which mode was used.

Resumable and idempotent: keys are made once per package and mode (a keygen killed half-way is
redone from Concrete's keyset cache), the encrypted benchmark counts only once its manifest
exists (a half-written one is redone; a sealed one writes its label-totals ledger before its
manifest), the run resumes in its own folder (the server's journal), the
withheld raw score and its salt are written to the identity's private notes before the result,
and the result is written atomically last. A desk killed at any point and restarted therefore
redoes at most the step it was in and writes exactly one result per submission. A lock file
keeps a second desk off the same challenge.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from ..auditor.benchmarks import PlainBenchmark
from ..auditor.client import Auditor
from ..auditor.sealed import SealedAuditor, SealedCounts, decrypted_summary, sealed_metrics
from ..audits import labels_for
from ..audits.metrics import classification_metrics
from ..errors import AuditError, ChallengeError
from ..formats import atomic
from ..formats.artifacts import (
    MANIFEST,
    TRANSCRIPT,
    EncryptedBenchmark,
    ModelPackage,
    RunResult,
    read_json,
    write_json,
)
from ..formats.hashing import sha256_file
from ..modes import SEALED  # the desk's sealed mode is the registry's
from ..sealed.circuit import has_sealed
from ..server.run import Executor, FHEServer
from .identity import Identity, key_fingerprint, signed_by
from .leaderboard import transcript_summary
from .policy import commit_score, wilson_interval
from .spotcheck import DEFAULT_SIZE, spot_check
from .store import RESULT_FORMAT, WORK, Challenge, benchmark_digest, submitter_key

LOCK = ".desk.lock"
POLL_S = 10.0
CLOCK_SKEW = timedelta(minutes=10)  # between a submitter's clock and the desk's
PER_SAMPLE = "per-sample"
AUTO = "auto"
DESK_MODES = (AUTO, SEALED, PER_SAMPLE)
Say = Callable[[str], None]


def check_mode(wanted: str) -> str:
    if wanted not in DESK_MODES:
        raise ChallengeError(f"Unknown desk mode {wanted!r}; choose from {', '.join(DESK_MODES)}.")
    return wanted


def audit_mode(package: ModelPackage, wanted: str = AUTO) -> str:
    """How the hidden benchmark is encrypted for this package: sealed (the metric computed
    under FHE, only the confusion counts decrypted) where the package has a sealed circuit,
    per sample otherwise. The auditor may ask for per-sample (cheaper keys) or require sealed
    (a package without a sealed circuit is then rejected); each result says which was used."""
    if check_mode(wanted) == PER_SAMPLE:
        return PER_SAMPLE
    if has_sealed(package):
        return SEALED
    if wanted == SEALED:
        raise ChallengeError("This desk audits sealed only and the package has no sealed circuit "
                             "(its owner did not build one).")
    return PER_SAMPLE


@dataclass
class _Prepared:
    package: ModelPackage
    auditor: Auditor | SealedAuditor
    encrypted: EncryptedBenchmark
    mode: str


@dataclass
class DeskReport:
    processed: list[dict[str, Any]] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"processed": [{k: r.get(k) for k in ("submission_id", "submitter", "decision",
                                                     "score", "mode")} for r in self.processed],
                "waiting": self.waiting}


class Desk:
    def __init__(self, challenge: Challenge, keys: Path, identity: Identity, *,
                 executor: Executor | None = None, spot_size: int = DEFAULT_SIZE,
                 wait_for_runs: bool = False, local_models: bool = True,
                 mode: str = AUTO, say: Say | None = None):
        if challenge.on_hub:
            raise ChallengeError(f"{challenge.ref} is on the Hub; run the desk on the auditor's "
                                 "local challenge folder and publish it with challenge publish.")
        if identity.public_key != challenge.public_key:
            raise ChallengeError(f"The identity in {identity.path} is not the auditor of "
                                 f"challenge {challenge.challenge_id} (another public key).")
        self.challenge, self.keys, self.identity = challenge, Path(keys), identity
        self.executor, self.spot_size, self.wait_for_runs = executor, spot_size, wait_for_runs
        # A Hub challenge's submissions come from anyone: a model must then be a zoo id or a
        # Hub reference, never a path on the auditor's machine.
        self.local_models = local_models
        self.mode = check_mode(mode)
        self.say = say or (lambda _text: None)
        self._benchmark: PlainBenchmark | None = None

    # -- the hidden benchmark ----------------------------------------------------------------

    @property
    def benchmark(self) -> PlainBenchmark:
        """The hidden benchmark, refused unless it is the one the challenge committed to."""
        if self._benchmark is None:
            from ..hub.references import resolve_benchmark

            note = self.identity.read_note(self.challenge.challenge_id, "challenge")
            if note is None:
                raise ChallengeError(f"The identity in {self.identity.path} has no notes for "
                                     f"challenge {self.challenge.challenge_id}; run the desk "
                                     "with the identity that created it.")
            bench = resolve_benchmark(str(note["benchmark_ref"]))
            committed = self.challenge.data["benchmark"]["inputs_sha256"]
            if benchmark_digest(bench, bytes.fromhex(str(note["salt"]))) != committed:
                raise ChallengeError(f"Benchmark {note['benchmark_ref']!r} changed since the "
                                     "challenge was created; it no longer matches its hash.")
            self._benchmark = bench
        return self._benchmark

    # -- the loop ----------------------------------------------------------------------------

    def run(self, once: bool = True, poll_s: float = POLL_S) -> DeskReport:
        with _lock(self.challenge.path / WORK / LOCK):
            while True:
                report = self.process_pending()
                if once:
                    return report
                time.sleep(poll_s)

    def process_pending(self) -> DeskReport:
        # The auditor's own side first: a missing or changed benchmark stops the desk, it must
        # not be blamed on the submissions.
        _ = self.benchmark
        report = DeskReport()
        blocked: set[str] = set()  # submitters with an earlier submission still waiting
        for submission in self.challenge.pending():
            if submission["submitter"] in blocked:
                # Released in order only, but encrypted now, so another server can run it.
                self._prepare(submission)
                report.waiting.append(submission["id"])
                continue
            result = self.process(submission)
            if result is None:
                blocked.add(submission["submitter"])
                report.waiting.append(submission["id"])
            else:
                report.processed.append(result)
        return report

    def process(self, submission: dict[str, Any]) -> dict[str, Any] | None:
        """The signed result of one submission (None: waiting for another server's run)."""
        sub_id = str(submission["id"])
        path = self.challenge.result_path(sub_id)
        if path.is_file():
            existing = read_json(path, "Challenge result")
            if self.challenge.signed_result(existing):
                return existing
            # not the auditor's: overwritten by the desk's own result below
        self.say(f"desk: {sub_id} ({submission['submitter']}, {submission['model']})")
        prepared = self._prepare(submission)
        if isinstance(prepared, dict):
            return prepared
        package, auditor, encrypted, mode = (prepared.package, prepared.auditor,
                                             prepared.encrypted, prepared.mode)
        external = self.challenge.external_run(sub_id)
        spot = None
        if (external / TRANSCRIPT).is_file():
            try:
                run = RunResult.load(external)
            except AuditError as exc:  # another server's garbage voids its run, not the desk
                return self._write(submission, {"decision": "void", "reason": str(exc),
                                                "executed_by": "another server", "mode": mode})
            check = spot_check(package, auditor, encrypted, run, self.spot_size)
            spot = check.to_dict()
            if not check.ok:
                self._publish_transcript(sub_id, external)
                return self._write(submission, {
                    "decision": "void", "reason": "; ".join(check.problems[:3]),
                    "spot_check": spot, "executed_by": "another server", "mode": mode,
                    "transcript": transcript_summary(run.transcript.to_dict()),
                    "transcript_sha256": sha256_file(external / TRANSCRIPT)})
            executed_by = "another server (spot-checked)"
        elif self.wait_for_runs:
            return None
        else:
            run = FHEServer(package).run(encrypted, self.challenge.work_dir(sub_id) / "run",
                                         executor=self.executor)
            executed_by = "the desk" + (" (Dask)" if self.executor else "")
        if isinstance(auditor, SealedAuditor):
            if run.transcript.n_failed:  # counts with batches missing would be a wrong score
                self._publish_transcript(sub_id, run.path)
                return self._write(submission, {
                    "decision": "void", "executed_by": executed_by, "mode": mode,
                    "spot_check": spot,
                    "reason": f"{run.transcript.n_failed} batch(es) failed in FHE; a sealed "
                              "run's counts would be incomplete, so nothing was decrypted",
                    "transcript": transcript_summary(run.transcript.to_dict()),
                    "transcript_sha256": sha256_file(run.path / TRANSCRIPT)})
            counts = auditor.decrypt(run)
            raw, n = self._score_counts(counts)
            decrypted = decrypted_summary(counts)
        else:
            raw, n = self._score(auditor.decrypt(run), package)
            decrypted = {"what": "per sample: the model's class scores", "n_samples": n}
        return self._release(submission, package, run, raw, n, executed_by, spot,
                             {"mode": mode, "decrypted": decrypted})

    def _prepare(self, submission: dict[str, Any]) -> _Prepared | dict[str, Any]:
        """Check, keygen and encrypt; a package that fails a check gets a rejected result."""
        try:
            package = self._checked_package(submission)
            mode = audit_mode(package, self.mode)
        except AuditError as exc:
            return self._write(submission, {"decision": "rejected", "reason": str(exc)})
        auditor: Auditor | SealedAuditor = (SealedAuditor(package, self.keys) if mode == SEALED
                                            else Auditor(package, self.keys))
        auditor.keygen()
        return _Prepared(package, auditor, self._encrypted(auditor, str(submission["id"])),
                         mode)

    def _checked_package(self, submission: dict[str, Any]) -> ModelPackage:
        from ..hub.references import resolve_model
        from ..hub.remote import is_hub_ref
        from ..hub.zoo import model_ids

        self.check_submitter(submission)
        ref = str(submission["model"])
        if not (self.local_models or is_hub_ref(ref) or ref in model_ids()):
            raise ChallengeError("The model must be a zoo id or a Hub reference (hf://OWNER/NAME).")
        self.check_date(submission)
        c = self.challenge
        if submission.get("challenge") != c.challenge_id or submission.get(
                "auditor_key", c.public_key) != c.public_key:
            raise ChallengeError("The submission was made to another challenge (its challenge "
                                 "id or auditor key is not this one's).")
        if self.challenge.over_quota(submission):
            raise ChallengeError(f"Over the quota of {self.challenge.quota} submissions.")
        package = resolve_model(ref)
        if package.fingerprint != submission.get("model_fingerprint"):
            raise ChallengeError("The model package changed since it was submitted (another "
                                 "fingerprint).")
        self.benchmark.check_inputs(package.manifest.input_schema, package.manifest.class_names)
        return package

    def check_date(self, submission: dict[str, Any]) -> None:
        """The quota counts submissions per day of ``submitted_at``, which a submission file
        states itself: a date in the future (beyond clock skew) or before the challenge
        existed would put it on a day of its choosing."""
        stated = datetime.fromisoformat(str(submission["submitted_at"])).astimezone(UTC)
        if stated > datetime.now(UTC) + CLOCK_SKEW:
            raise ChallengeError(f"The submission is dated {stated.isoformat()}, in the future.")
        created = self.challenge.data.get("created_at")
        if isinstance(created, str) and stated < datetime.fromisoformat(created) - CLOCK_SKEW:
            raise ChallengeError(f"The submission is dated {stated.isoformat()}, before the "
                                 f"challenge was created ({created}).")

    def check_submitter(self, submission: dict[str, Any]) -> None:
        """A signed submission must check against the key it names; a submitter name whose
        earliest keyed result carries a key is bound to it (unsigned claims are refused too)."""
        key = submitter_key(submission)
        if key is None and ("signature" in submission or "submitter_key" in submission):
            raise ChallengeError("The submission's signature does not check against the "
                                 "submitter key it names; it was altered or forged.")
        bound = self.challenge.bound_key(str(submission["submitter"]))
        if bound is not None and key != bound:
            raise ChallengeError(f"{submission['submitter']}'s earlier submissions were signed "
                                 f"by another key ({key_fingerprint(bound)[:16]}…); this one "
                                 f"is {'unsigned' if key is None else 'signed by another key'}.")

    def _encrypted(self, auditor: Auditor | SealedAuditor, sub_id: str) -> EncryptedBenchmark:
        folder = self.challenge.work_dir(sub_id) / "encrypted"
        if (folder / MANIFEST).is_file():
            return EncryptedBenchmark.load(folder)
        shutil.rmtree(folder, ignore_errors=True)  # an encryption killed half-way is redone
        folder.parent.mkdir(parents=True, exist_ok=True)
        return auditor.encrypt(self.benchmark, folder)

    def _score(self, decrypted: Any, package: ModelPackage) -> tuple[float, int]:
        """The raw metric over the whole hidden benchmark; a failed sample counts as wrong for
        accuracy (the other metrics are over the decrypted samples)."""
        real = decrypted.select(None)
        n = self.benchmark.n_samples
        y_true = labels_for(self.benchmark, package, real.sources)
        if self.challenge.metric == "accuracy":
            return float(np.sum(real.predictions == y_true)) / n, n
        metrics = classification_metrics(y_true, real.predictions, real.scores,
                                          len(package.manifest.class_names))
        return float(metrics[self.challenge.metric]), n

    def _score_counts(self, counts: SealedCounts) -> tuple[float, int]:
        """The raw metric from a sealed run's decrypted counts (the confusion matrix over the
        whole hidden benchmark: the auditor's own label totals, the circuit's positives)."""
        n = int(counts.totals.sum())
        if n != self.benchmark.n_samples:
            raise ChallengeError(f"The sealed counts cover {n} samples, the hidden benchmark "
                                 f"has {self.benchmark.n_samples}.")
        if self.challenge.metric == "accuracy":
            return float(np.trace(counts.confusion())) / n, n
        return float(sealed_metrics(counts)[self.challenge.metric]), n

    # -- results -----------------------------------------------------------------------------

    def _previous(self, submission: dict[str, Any]) -> dict[str, Any] | None:
        """The submitter's latest scored result before this submission (signature checked)."""
        earlier = [r for r in self.challenge.results().values()
                   if r.get("submitter") == submission["submitter"]
                   and str(r.get("submitted_at")) < str(submission["submitted_at"])
                   and r.get("score") is not None and signed_by(
                       {k: v for k, v in r.items() if k != "_file"}, self.challenge.public_key)]
        return max(earlier, key=lambda r: str(r["submitted_at"]), default=None)

    def _release(self, submission: dict[str, Any], package: ModelPackage, run: RunResult,
                 raw: float, n: int, executed_by: str, spot: dict[str, Any] | None,
                 how: dict[str, Any]) -> dict[str, Any]:
        previous = self._previous(submission)
        decision = self.challenge.policy.release(raw, previous["score"] if previous else None)
        digest, salt = commit_score(raw)
        # The withheld raw score, before the result: a kill in between only redraws the salt.
        self.identity.write_note(self.challenge.challenge_id, f"score-{submission['id']}", {
            "raw_score": raw, "salt": salt, "raw_score_sha256": digest})
        if decision.decision == "previous best re-released" and previous is not None:
            best = previous["best"]
        else:
            best = {"submission_id": submission["id"], "model": submission["model"],
                    "model_fingerprint": package.fingerprint,
                    "date": datetime.now(UTC).isoformat(timespec="seconds")}
        self._publish_transcript(str(submission["id"]), run.path)
        return self._write(submission, {
            "decision": decision.decision, "score": decision.released,
            "previous_best": decision.previous_best, "raw_score_sha256": digest,
            "interval": (wilson_interval(decision.released, n)
                         if self.challenge.metric == "accuracy" else None),
            "n_samples": n, "n_failed": run.transcript.n_failed, "best": best,
            "executed_by": executed_by, "spot_check": spot, **how,
            "transcript": transcript_summary(run.transcript.to_dict()),
            "transcript_sha256": sha256_file(run.path / TRANSCRIPT)})

    def _publish_transcript(self, sub_id: str, run_dir: Path) -> None:
        target = self.challenge.transcript_path(sub_id)
        target.parent.mkdir(exist_ok=True)
        with atomic.replacing(target) as tmp:
            shutil.copyfile(run_dir / TRANSCRIPT, tmp)

    def _write(self, submission: dict[str, Any], outcome: dict[str, Any]) -> dict[str, Any]:
        c = self.challenge
        key = submitter_key(submission)
        result = {
            "format": RESULT_FORMAT, "schema_version": 1, "challenge": c.challenge_id,
            "benchmark": c.data["benchmark"], "metric": c.metric, "policy": str(c.policy),
            "submission_id": submission["id"], "submitter": submission["submitter"],
            "model": submission["model"], "model_fingerprint": submission["model_fingerprint"],
            "submitted_at": submission["submitted_at"],
            # Only a key whose signature over the submission checks is recorded (and binds).
            "submitter_key": key,
            "submitter_fingerprint": key_fingerprint(key) if key else None,
            "mode": None, "decrypted": None,
            "score": None, "interval": None, "raw_score_sha256": None, "transcript": None,
            "transcript_sha256": None, "spot_check": None, "best": None,
            **outcome,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "auditor": self.identity.public(),
        }
        signed = self.identity.sign_document(result)
        path = c.result_path(str(submission["id"]))
        path.parent.mkdir(exist_ok=True)
        write_json(path, signed)  # atomic: a killed desk leaves no result or the whole one
        return signed


class _lock:
    """One desk per challenge: a lock file holding the desk's pid; a stale one (its process
    is gone, e.g. killed) is taken over."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                if _alive(self.path):
                    raise ChallengeError(f"Another desk is running on this challenge (lock "
                                         f"{self.path}); stop it first.") from None
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(str(os.getpid()))
            return
        raise ChallengeError(f"Cannot take the desk lock {self.path}.")

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)


def _alive(path: Path) -> bool:
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
    except (ValueError, OSError):
        return False
    return pid != os.getpid()
