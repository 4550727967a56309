"""The auditor's desk: every pending submission in, one signed result out.

For each pending submission, in the order the desk received them (its own clock: the first pass
that saw the submission; never a date the submission states): check who submitted it (a signed
submission must check against the submitter key it names, and a submitter name whose earlier
results carry a key is bound to that key) and when (not in the future, not before the
challenge), load the model package (every ModelPackage check, its fingerprint must still be the
submitted one, the hidden benchmark must fit its input schema), keygen, encrypt the hidden
benchmark (sealed where the package has a sealed circuit: batches whose run yields one total of
the confusion counts; per sample otherwise), run (in this process, on Dask, or by taking the run
the server named by the signed submission published and signed in ``runs/<id>/``, after
spot-checking it: see runs.py), decrypt, score, apply the release policy against the challenge's
leader (one Ladder state per challenge, whoever submits), and write the signed result, which
says which mode was used. The quota counts a submitter's accepted submissions per day of
receipt; the budget counts the challenge's evaluations per day, whoever asks, and once it is
spent the rest waits for the next UTC day.

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
from . import notes
from .identity import Identity, key_fingerprint
from .leaderboard import transcript_summary
from .policy import RELEASED, Leader, commit_score, published_interval
from .runs import counted_run, runner_key
from .spotcheck import plan, spot_check
from .store import (
    REJECTED,
    RESULT_FORMAT,
    WORK,
    Challenge,
    benchmark_digest,
    day_of,
    name_key,
    submitter_key,
)

LOCK = ".desk.lock"
RECEIPTS = "receipts.json"  # in work/: when the desk first saw each submission
INTERVAL_NOTE = ("95% Wilson interval of this submission's raw score (withheld), ends rounded "
                 "outward to the release resolution; valid for this one submission, not for the "
                 "best of many (selection biases the leader upward)")
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
    waiting: list[str] = field(default_factory=list)  # for another server's run
    deferred: list[str] = field(default_factory=list)  # the day's budget is spent

    def to_dict(self) -> dict[str, Any]:
        return {"processed": [{k: r.get(k) for k in ("submission_id", "submitter", "decision",
                                                     "score", "mode")} for r in self.processed],
                "waiting": self.waiting, "deferred": self.deferred}


class Desk:
    def __init__(self, challenge: Challenge, keys: Path, identity: Identity, *,
                 executor: Executor | None = None, spot_size: int | None = None,
                 wait_for_runs: bool = False, local_models: bool = True,
                 mode: str = AUTO, say: Say | None = None):
        if challenge.on_hub:
            raise ChallengeError(f"{challenge.ref} is on the Hub; run the desk on the auditor's "
                                 "local challenge folder and publish it with challenge publish.")
        if identity.public_key != challenge.public_key:
            raise ChallengeError(f"The identity in {identity.path} is not the auditor of "
                                 f"challenge {challenge.challenge_id} (another public key).")
        self.challenge, self.keys, self.identity = challenge, Path(keys), identity
        # spot_size None: sized from the target (a change of one release step, 95%).
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

            note = notes.read(self.identity, self.challenge.challenge_id, notes.CHALLENGE_NOTE)
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
        pending = self.challenge.pending()
        received = self._receipts([str(s["id"]) for s in pending])
        for submission in sorted(pending, key=lambda s: (received[s["id"]], str(s["id"]))):
            if self._budget_spent():
                report.deferred.append(submission["id"])
                continue
            if name_key(submission["submitter"]) in blocked:
                # Released in order only, but encrypted now, so another server can run it.
                self._prepare(submission)
                report.waiting.append(submission["id"])
                continue
            result = self.process(submission)
            if result is None:
                blocked.add(name_key(submission["submitter"]))
                report.waiting.append(submission["id"])
            else:
                report.processed.append(result)
        return report

    def _receipts(self, ids: list[str]) -> dict[str, str]:
        """When the desk first saw each submission (now, for the ones it had not seen): the
        order of the game and the day its quota counts, from the desk's clock alone."""
        path = self.challenge.path / WORK / RECEIPTS
        known = read_json(path, "Desk receipts") if path.is_file() else {}
        # Only times the desk could have written: an edited entry (a number, not a time) broke
        # the ordering with a TypeError; it is received again, now.
        known = {k: v for k, v in known.items() if isinstance(v, str) and day_of(v) is not None}
        now = datetime.now(UTC).isoformat(timespec="microseconds")
        new = {sub_id: now for sub_id in ids if sub_id not in known}
        if new:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, {**known, **new})
        return {**known, **new}

    def _budget_spent(self) -> bool:
        budget = self.challenge.budget
        return budget is not None and self.challenge.evaluations(
            datetime.now(UTC).date()) >= budget.per_day

    def process(self, submission: dict[str, Any]) -> dict[str, Any] | None:
        """The signed result of one submission (None: waiting for another server's run)."""
        sub_id = str(submission["id"])
        path = self.challenge.result_path(sub_id)
        if path.is_file():
            existing = read_json(path, "Challenge result")
            if (self.challenge.signed_result(existing)
                    and existing.get("challenge_sha256") == self.challenge.fingerprint):
                return existing
            # not the auditor's for this challenge: overwritten by the desk's own result below
        self.say(f"desk: {sub_id} ({submission['submitter']}, {submission['model']})")
        prepared = self._prepare(submission)
        if isinstance(prepared, dict):
            return prepared
        package, auditor, encrypted, mode = (prepared.package, prepared.auditor,
                                             prepared.encrypted, prepared.mode)
        external = counted_run(self.challenge, submission)
        spot = None
        if external is not None:
            try:
                run = RunResult.load(external)
            except AuditError as exc:  # the named runner's garbage voids its own run
                return self._write(submission, {"decision": "void", "reason": str(exc),
                                                "executed_by": "another server", "mode": mode})
            sized = plan(encrypted.manifest.n_samples, self.benchmark.n_samples,
                         self.challenge.policy.resolution, self.spot_size)
            check = spot_check(package, auditor, encrypted, run, sized)
            spot = check.to_dict()
            if not check.ok:
                self._publish_transcript(sub_id, external)
                return self._write(submission, {
                    "decision": "void", "reason": "; ".join(check.problems[:3]),
                    "spot_check": spot, "executed_by": "another server", "mode": mode,
                    "transcript": transcript_summary(run.transcript.to_dict()),
                    "transcript_sha256": sha256_file(external / TRANSCRIPT)})
            executed_by = "another server (spot-checked)"
        elif self.wait_for_runs and runner_key(submission) is not None:  # a run may come
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
            correct = None  # a sealed run decrypts counts only
            decrypted = decrypted_summary(counts)
        else:
            raw, n, correct = self._score(auditor.decrypt(run), package)
            decrypted = {"what": "per sample: the model's class scores", "n_samples": n}
        return self._release(submission, package, run, (raw, n, correct), executed_by, spot,
                             {"mode": mode, "decrypted": decrypted})

    def _prepare(self, submission: dict[str, Any]) -> _Prepared | dict[str, Any]:
        """Check, keygen and encrypt; a package that fails a check gets a rejected result."""
        try:
            package = self._checked_package(submission)
            mode = audit_mode(package, self.mode)
        except AuditError as exc:
            return self._write(submission, {"decision": REJECTED, "reason": str(exc)})
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
        if (submission.get("challenge") != c.challenge_id
                or submission.get("auditor_key") != c.public_key
                or submission.get("challenge_sha256") != c.fingerprint):
            raise ChallengeError("The submission was made to another challenge (its challenge "
                                 "id, auditor key or challenge fingerprint is not this one's).")
        day = day_of(self._receipts([str(submission["id"])])[submission["id"]])
        if c.accepted(str(submission["submitter"]), day) >= c.quota.per_day:
            raise ChallengeError(f"Over the quota of {c.quota} accepted submissions per "
                                 "submitter (UTC day of receipt).")
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

    def _score(self, decrypted: Any, package: ModelPackage,
               ) -> tuple[float, int, np.ndarray]:
        """The raw metric over the whole hidden benchmark, and the per-sample correctness in
        benchmark order (ladder:auto's paired test); a failed sample counts as wrong for
        accuracy (the other metrics are over the decrypted samples)."""
        real = decrypted.select(None)
        n = self.benchmark.n_samples
        y_true = labels_for(self.benchmark, package, real.sources)
        index = {sample_id: i for i, sample_id in enumerate(self.benchmark.sample_ids())}
        correct = np.zeros(n, dtype=np.int8)
        correct[[index[s] for s in real.sources]] = real.predictions == y_true
        if self.challenge.metric == "accuracy":
            return float(np.sum(real.predictions == y_true)) / n, n, correct
        metrics = classification_metrics(y_true, real.predictions, real.scores,
                                          len(package.manifest.class_names))
        return float(metrics[self.challenge.metric]), n, correct

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

    def _leader(self) -> Leader | None:
        """The challenge's best released score so far (the earliest to reach it), with the
        per-sample correctness of its submission from the private notes (ladder:auto)."""
        best: dict[str, Any] | None = None
        for result in self.challenge.signed_results():
            score = result.get("score")
            if result.get("decision") == RELEASED and isinstance(score, int | float) and (
                    best is None or score > best["score"]):
                best = result
        if best is None:
            return None
        note = notes.read(self.identity, self.challenge.challenge_id,
                          f"score-{best['submission_id']}") or {}
        bits = note.get("correct")
        correct = (np.frombuffer(bits.encode("ascii"), np.uint8) - ord("0")
                   if isinstance(bits, str) else None)
        return Leader(float(best["score"]), correct)

    def _release(self, submission: dict[str, Any], package: ModelPackage, run: RunResult,
                 measured: tuple[float, int, np.ndarray | None], executed_by: str,
                 spot: dict[str, Any] | None, how: dict[str, Any]) -> dict[str, Any]:
        raw, n, correct = measured
        policy = self.challenge.policy
        decision = policy.release(raw, self._leader(), n, correct)
        digest, salt = commit_score(raw)
        # The withheld raw score, before the result: a kill in between only redraws the salt.
        note: dict[str, Any] = {"raw_score": raw, "salt": salt, "raw_score_sha256": digest}
        if correct is not None:
            note["correct"] = "".join("1" if c else "0" for c in correct)
        notes.write(self.identity, self.challenge.challenge_id, f"score-{submission['id']}", note)
        released = decision.released is not None
        interval = (published_interval(raw, n, policy.resolution)
                    if released and self.challenge.metric == "accuracy" else None)
        self._publish_transcript(str(submission["id"]), run.path)
        return self._write(submission, {
            "decision": decision.decision, "score": decision.released,
            "previous_best": decision.previous_best, "margin": decision.margin,
            "raw_score_sha256": digest, "interval": interval,
            "interval_note": INTERVAL_NOTE if interval else None,
            "n_samples": n, "n_failed": run.transcript.n_failed,
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
        sub_id = str(submission["id"])
        result = {
            "format": RESULT_FORMAT, "schema_version": 2, "challenge": c.challenge_id,
            # Bound to this challenge's own file: another challenge with the same id and
            # auditor cannot show this result as its own.
            "challenge_sha256": c.fingerprint,
            "benchmark": c.data["benchmark"], "metric": c.metric, "policy": str(c.policy),
            "submission_id": submission["id"], "submitter": submission["submitter"],
            "model": submission["model"], "model_fingerprint": submission["model_fingerprint"],
            "submitted_at": submission["submitted_at"],  # as the submitter stated it
            "received_at": self._receipts([sub_id])[sub_id],  # the desk's clock: what counts
            # Only a key whose signature over the submission checks is recorded (and binds).
            "submitter_key": key,
            "submitter_fingerprint": key_fingerprint(key) if key else None,
            "mode": None, "decrypted": None,
            "score": None, "interval": None, "raw_score_sha256": None, "transcript": None,
            "transcript_sha256": None, "spot_check": None,
            **outcome,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "auditor": self.identity.public(),
        }
        signed = self.identity.sign_document(result)
        path = c.result_path(sub_id)
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
