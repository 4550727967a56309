"""The challenge folder: what is public about a challenge, its submissions and its results.

Layout (a local folder, or the same files in a Hub dataset repo ``hf://datasets/OWNER/NAME``)::

    challenge.json             signed: id, benchmark (id, version, n_samples, salted inputs
                               hash), metric, policy, quota, budget, the auditor's public
                               identity; its SHA-256 (canonical form) is the challenge's
                               fingerprint, which every submission and result names
    README.md                  the card
    submissions/<id>.json      one per submission: submitter, model reference, fingerprint, time;
                               signed by the submitter's key when they have an identity
    results/<id>.json          one per processed submission, signed by the auditor
    transcripts/<id>.json      the run's transcript (public hashes) the result is tied to
    work/<id>/encrypted, run   the desk's resumable folders (ciphertexts, outputs: public, large;
                               not published with the challenge)
    runs/<id>/                 where the server a signed submission names (runner_key) may
                               publish its signed run of work/<id>/encrypted

Names are compared case-folded everywhere (``name_key``). Times that order or count anything are
the desk's own (``received_at``, when the desk first saw a submission; ``date``, when it signed
a result), never a ``submitted_at`` a submission file states.

Every file is written atomically (temporary file, then rename), so a reader or a killed writer
never sees half a file; a submission is created with O_EXCL, so two submitters never collide.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..auditor.benchmarks import PlainBenchmark
from ..errors import ArtifactError, ChallengeError, QuotaError
from ..formats.artifacts import read_json, write_json
from . import notes
from .identity import PUBLIC_KEY_HEX, Identity, canonical, key_fingerprint, signed_by
from .policy import DEFAULT_BUDGET, PerDay, Policy

CHALLENGE = "challenge.json"
CARD = "README.md"
SUBMISSIONS = "submissions"
RESULTS = "results"
TRANSCRIPTS = "transcripts"
WORK = "work"
RUNS = "runs"
FORMAT = "fhe-audit/challenge"
SUBMISSION_FORMAT = "fhe-audit/submission"
RESULT_FORMAT = "fhe-audit/challenge-result"
METRICS = ("accuracy", "balanced_accuracy", "f1", "precision", "recall")
# Files a published challenge holds (the Hub download asks for exactly these).
PUBLIC_PATTERNS = (CHALLENGE, CARD, f"{SUBMISSIONS}/*.json", f"{RESULTS}/*.json",
                   f"{TRANSCRIPTS}/*.json")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ID = re.compile(r"\d{8}T\d{12}-[A-Za-z0-9][A-Za-z0-9_.-]{0,63}-[0-9a-f]{6}")
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
# A benchmark id as a card shows it in a code span: any printable text but a backtick.
_BENCHMARK_ID = re.compile(r"[^`\x00-\x1f\x7f]{1,200}")
_KEY = re.compile(f"[0-9a-fA-F]{{{PUBLIC_KEY_HEX}}}")
REJECTED = "rejected"
MAX_MODEL_REF = 1000


def check_name(name: str, what: str) -> str:
    if not _NAME.fullmatch(name):
        raise ChallengeError(f"{what} {name!r} must be 1-64 letters, digits, '.', '_' or '-', "
                             "starting with a letter or digit.")
    return name


def name_key(name: str) -> str:
    """The submitter a name stands for: names that differ only in case are one submitter
    everywhere ("Alice" must not pass for alice, nor get a quota or a board entry of her own)."""
    return name.lower()


def same_submitter(a: str, b: str) -> bool:
    return name_key(a) == name_key(b)


def day_of(stamp: Any) -> Any:
    """The UTC day of a desk-written ISO time (None when it is not one)."""
    try:
        return datetime.fromisoformat(str(stamp)).astimezone(UTC).date()
    except ValueError:
        return None


def fingerprint(data: dict[str, Any]) -> str:
    """SHA-256 of a challenge.json's canonical form (signature included): what results and
    submissions are bound to, so two challenges with one id and one auditor never mix."""
    return hashlib.sha256(canonical(data)).hexdigest()


def benchmark_digest(benchmark: PlainBenchmark, salt: bytes) -> str:
    """Salted hash of the hidden benchmark's rows (ids, inputs, labels, in order): published
    so the auditor is committed to one benchmark, salted so it cannot be tested against
    guesses of the hidden rows."""
    frame = benchmark.frame[sorted(map(str, benchmark.frame.columns))]
    digest = hashlib.sha256(b"fhe-audit/benchmark/v1\n" + salt)
    digest.update(frame.to_csv(index=False).encode("utf-8"))
    return digest.hexdigest()


@dataclass
class Challenge:
    path: Path  # the local folder, or the snapshot of a Hub repo
    data: dict[str, Any]
    ref: str  # as given: a folder or hf://datasets/OWNER/NAME

    @property
    def challenge_id(self) -> str:
        return str(self.data["id"])

    @property
    def metric(self) -> str:
        return str(self.data["metric"])

    @property
    def policy(self) -> Policy:
        return Policy.parse(str(self.data["policy"]))

    @property
    def quota(self) -> PerDay:
        return PerDay.parse(str(self.data["quota"]))

    @property
    def budget(self) -> PerDay | None:
        """Hidden-set evaluations a day, whoever asks (None: unlimited)."""
        budget = self.data.get("budget")
        return None if budget is None else PerDay.parse(str(budget), "budget")

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.data)

    @property
    def public_key(self) -> str:
        return str(self.data["identity"]["public_key"])

    @property
    def is_demo(self) -> bool:
        return bool(self.data["identity"].get("demo"))

    @property
    def on_hub(self) -> bool:
        return self.ref.startswith("hf://")

    # -- reading -------------------------------------------------------------------------

    @classmethod
    def open(cls, ref: str) -> Challenge:
        """A challenge folder, or a Hub dataset repo (downloaded into the Hub cache)."""
        from ..hub import remote as hub

        path = (hub.download_challenge(ref, list(PUBLIC_PATTERNS), CHALLENGE)
                if hub.is_hub_ref(ref) else Path(ref).expanduser())
        data = read_json(path / CHALLENGE, f"Challenge {ref}")
        if data.get("format") != FORMAT:
            raise ChallengeError(f"{ref} is not an fhe-audit challenge.")
        challenge = cls(path, data, ref)
        _check_shape(data, ref)
        Policy.parse(str(data.get("policy")))
        PerDay.parse(str(data.get("quota")))
        _ = challenge.budget
        try:
            public_key = challenge.public_key
        except (KeyError, TypeError, AttributeError) as exc:
            raise ChallengeError(f"{ref}: challenge.json lacks {exc}.") from exc
        if not signed_by(data, public_key):
            raise ChallengeError(f"{ref}: challenge.json is not signed by the key it names; "
                                 "it was altered.")
        return challenge

    def _documents(self, folder: str, fmt: str) -> list[dict[str, Any]]:
        found = []
        for path in sorted((self.path / folder).glob("*.json")):
            try:
                data = read_json(path, f"Challenge {self.ref}")
            except ArtifactError:
                continue  # anyone's file (not JSON, too large, too deep): left out, as below
            if data.get("format") == fmt:
                found.append({**data, "_file": path})
        return found

    def submissions(self) -> list[dict[str, Any]]:
        """Every well-formed submission, by id. Submission files come from anyone: malformed
        ones are left out, never acted on; the desk orders them by its own receipt time."""
        subs = [s for s in self._documents(SUBMISSIONS, SUBMISSION_FORMAT) if _well_formed(s)]
        return sorted(subs, key=lambda s: str(s["id"]))

    def signed_results(self) -> list[dict[str, Any]]:
        """The results this challenge's auditor signed for this challenge, in the desk's order
        (receipt time, then id)."""
        found = [r for r in self.results().values() if self.signed_result(r)
                 and r.get("challenge_sha256") == self.fingerprint]
        return sorted(found, key=lambda r: (str(r.get("received_at")), str(r["submission_id"])))

    def accepted(self, submitter: str, day: Any) -> int:
        """The submitter's submissions received on ``day`` that the desk accepted (a rejected
        file, e.g. a forged or back-dated one, uses nobody's quota)."""
        return sum(1 for r in self.signed_results()
                   if same_submitter(str(r.get("submitter")), submitter)
                   and r.get("decision") != REJECTED and day_of(r.get("received_at")) == day)

    def evaluations(self, day: Any) -> int:
        """Hidden-set evaluations the desk made on ``day``, whoever asked: scored results,
        released or not, and runs void after a spot check that decrypted some of their outputs
        (the void itself says whether they matched: the budget counts them too)."""
        return sum(1 for r in self.signed_results()
                   if (r.get("raw_score_sha256") or _decrypted_by_spot_check(r))
                   and day_of(r.get("date")) == day)

    def results(self) -> dict[str, dict[str, Any]]:
        # Keyed by the file's name: another file naming the same submission cannot replace it.
        return {r["_file"].stem: r for r in self._documents(RESULTS, RESULT_FORMAT)
                if r.get("submission_id") == r["_file"].stem}

    def bound_key(self, submitter: str) -> str | None:
        """The key a submitter name is bound to: the one of their earliest result (signed by
        this challenge's auditor) that records a checked submitter key; None while unbound."""
        keyed = [r for r in self.signed_results()
                 if same_submitter(str(r.get("submitter")), submitter)
                 and isinstance(r.get("submitter_key"), str)]
        return str(keyed[0]["submitter_key"]) if keyed else None

    def result_path(self, submission_id: str) -> Path:
        return self.path / RESULTS / f"{submission_id}.json"

    def transcript_path(self, submission_id: str) -> Path:
        return self.path / TRANSCRIPTS / f"{submission_id}.json"

    def work_dir(self, submission_id: str) -> Path:
        return self.path / WORK / submission_id

    def external_run(self, submission_id: str) -> Path:
        return self.path / RUNS / submission_id

    def signed_result(self, result: dict[str, Any]) -> bool:
        """Whether this challenge's auditor signed ``result`` (results/ is writable by whoever
        may submit to a Hub challenge, so an unsigned file there proves nothing)."""
        return signed_by({k: v for k, v in result.items() if k != "_file"}, self.public_key)

    def pending(self) -> list[dict[str, Any]]:
        """Submissions without a result signed by the auditor: a file someone else dropped in
        results/ must not stop the desk from scoring a rival's submission."""
        done = {str(r["submission_id"]) for r in self.signed_results()}
        return [s for s in self.submissions() if s["id"] not in done]

    # -- submitting ----------------------------------------------------------------------

    def check_quota(self, submitter: str, now: datetime) -> None:
        """Refuse a submission over the quota of the current UTC day: the desk's accepted ones
        of today, plus those still pending that say they are of today (the desk's count, by its
        receipt time, is the one that holds)."""
        day = now.astimezone(UTC).date()
        waiting = [s for s in self.pending()
                   if same_submitter(s["submitter"], submitter) and _day(s) == day]
        today = self.accepted(submitter, day) + len(waiting)
        limit = self.quota.per_day
        if today >= limit:
            tomorrow = datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)
            raise QuotaError(f"{submitter} has made {today} of {limit} submissions allowed "
                             f"today (UTC); the next is allowed from {tomorrow.isoformat()}.")

    def submit(self, submitter: str, model_ref: str, now: datetime | None = None,
               identity: Identity | None = None, runner_key: str | None = None,
               ) -> dict[str, Any]:
        """Record a submission (the model must load and pass the package checks now), signed
        with the submitter's identity when one is given; ``runner_key``: the public key of the
        server whose signed run in ``runs/<id>/`` the desk may use (signed submissions only)."""
        from ..hub.references import resolve_model

        check_name(submitter, "Submitter")
        bound = self.bound_key(submitter)
        if bound is not None and (identity is None or identity.public_key != bound):
            raise ChallengeError(f"{submitter}'s earlier submissions were signed by key "
                                 f"{key_fingerprint(bound)[:16]}…; submit with that identity "
                                 "(--identity) or under another name.")
        if runner_key is not None and (identity is None or not _is_key(runner_key)):
            raise ChallengeError("A runner key must be 64 hex digits, in a signed submission "
                                 "(--identity): only the submitter may name who runs it.")
        if not model_ref or len(model_ref) > MAX_MODEL_REF:
            raise ChallengeError("The model reference must be 1-1000 characters.")
        now = now or datetime.now(UTC)
        self.check_quota(submitter, now)
        package = resolve_model(model_ref)  # every ModelPackage.load check, before recording
        local = Path(model_ref).expanduser()
        if self.on_hub and local.is_dir():
            raise ChallengeError("The auditor cannot read a folder on your machine: submit a "
                                 "model on the Hub (hf://OWNER/NAME) or a zoo id.")
        reference = str(local.resolve()) if local.is_dir() else model_ref
        stamp = now.astimezone(UTC)
        submission_id = f"{stamp:%Y%m%dT%H%M%S%f}-{submitter}-{secrets.token_hex(3)}"
        data = {"format": SUBMISSION_FORMAT, "schema_version": 1, "id": submission_id,
                "challenge": self.challenge_id, "submitter": submitter, "model": reference,
                "model_id": package.model_id, "model_fingerprint": package.fingerprint,
                "submitted_at": stamp.isoformat(timespec="microseconds"),
                # Names this challenge beyond its id (ids are folder names, not unique), so a
                # signed submission cannot be replayed in another auditor's challenge.
                "auditor_key": self.public_key, "challenge_sha256": self.fingerprint}
        if identity is not None:
            runner = {} if runner_key is None else {"runner_key": runner_key.lower()}
            data = identity.sign_document({**data, **runner, "submitter_key": identity.public_key})
        if self.on_hub:
            self._upload_submission(data)
            return data
        folder = self.path / SUBMISSIONS
        folder.mkdir(exist_ok=True)
        fd = os.open(folder / f"{submission_id}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                     0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(data, indent=2) + "\n")
        return data

    def _upload_submission(self, data: dict[str, Any]) -> None:
        """One commit adding ``submissions/<id>.json`` to the challenge's dataset repo."""
        from ..hub import remote as hub

        with tempfile.TemporaryDirectory() as tmp:
            name = f"{SUBMISSIONS}/{data['id']}.json"
            (Path(tmp) / SUBMISSIONS).mkdir()
            (Path(tmp) / name).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
            hub.upload_files(Path(tmp), hub.parse_ref(self.ref).repo_id, [name],
                             message=f"Submission {data['id']}")


def _decrypted_by_spot_check(result: dict[str, Any]) -> bool:
    spot = result.get("spot_check")
    return isinstance(spot, dict) and bool(spot.get("decrypted"))


def _check_shape(data: dict[str, Any], ref: str) -> None:
    """The fields every reader of a challenge uses, refused in one sentence when malformed:
    anyone can sign a challenge.json with their own key, and one without a benchmark was a
    KeyError traceback in ``leaderboard``; an id of HTML went into the Space's card."""
    bench = data.get("benchmark")
    problems = {
        "id": isinstance(data.get("id"), str) and _NAME.fullmatch(data["id"]) is not None,
        "metric": data.get("metric") in METRICS,
        "benchmark": isinstance(bench, dict) and isinstance(bench.get("id"), str)
        and _BENCHMARK_ID.fullmatch(bench["id"]) is not None
        and isinstance(bench.get("n_samples"), int) and not isinstance(bench["n_samples"], bool)
        and bench["n_samples"] > 0 and isinstance(bench.get("version"), str | int)
        and _FINGERPRINT.fullmatch(str(bench.get("inputs_sha256"))) is not None,
        "identity": isinstance(data.get("identity"), dict),
        "created_at": isinstance(data.get("created_at", ""), str),
    }
    bad = [name for name, ok in problems.items() if not ok]
    if bad:
        raise ChallengeError(f"{ref}: challenge.json has a malformed or missing {bad[0]!r}; it "
                             "is not a challenge this tool made.")


def _is_key(text: Any) -> bool:
    return isinstance(text, str) and _KEY.fullmatch(text) is not None


def submitter_key(submission: dict[str, Any]) -> str | None:
    """The submitter's public key when the submission is signed by the key it names, else
    None (unsigned, or a signature that does not check: altered or forged)."""
    key = submission.get("submitter_key")
    if not _is_key(key):
        return None
    body = {k: v for k, v in submission.items() if k != "_file"}
    return key if signed_by(body, key) else None


def _day(submission: dict[str, Any]) -> Any:
    return datetime.fromisoformat(str(submission["submitted_at"])).astimezone(UTC).date()


def _well_formed(data: dict[str, Any]) -> bool:
    try:
        datetime.fromisoformat(str(data.get("submitted_at"))).astimezone(UTC)
    except ValueError:
        return False
    return (data["_file"].stem == data.get("id") and isinstance(data.get("id"), str)
            and _ID.fullmatch(data["id"]) is not None
            and isinstance(data.get("submitter"), str) and _NAME.fullmatch(data["submitter"])
            is not None and isinstance(data.get("model"), str)
            and 0 < len(data["model"]) <= MAX_MODEL_REF
            and _FINGERPRINT.fullmatch(str(data.get("model_fingerprint"))) is not None)


def check_settings(metric: str, policy: str, quota: str, budget: str | None = None,
                   ) -> tuple[Policy, PerDay, PerDay | None]:
    if metric not in METRICS:
        raise ChallengeError(f"Unknown metric {metric!r}; choose from {', '.join(METRICS)}.")
    parsed = Policy.parse(policy)
    if parsed.kind == "ladder-auto" and metric != "accuracy":
        raise ChallengeError("ladder:auto needs a per-sample score: use it with accuracy, or "
                             "ladder:STEP for another metric.")
    return (parsed, PerDay.parse(quota),
            None if budget in (None, "none") else PerDay.parse(str(budget), "budget"))


def init_challenge(benchmark_ref: str, metric: str, policy: str, quota: str, identity: Identity,
                   out: Path, challenge_id: str | None = None,
                   budget: str | None = DEFAULT_BUDGET) -> Challenge:
    """Write a new challenge folder; the benchmark ref and the hash's salt stay in the
    identity's private notes (the desk needs them, nobody else may see them). An id the
    identity already used is refused."""
    from ..hub.references import resolve_benchmark
    from ..hub.remote import save_card
    from .cards import challenge_card

    out = Path(out).expanduser()
    if (out / CHALLENGE).is_file() or (out.exists() and any(out.iterdir())):
        raise ChallengeError(f"{out} is not empty; choose a new folder for the challenge.")
    challenge_id = check_name(challenge_id or out.name, "Challenge id")
    parsed_policy, parsed_quota, parsed_budget = check_settings(metric, policy, quota, budget)
    benchmark = resolve_benchmark(benchmark_ref)
    salt = secrets.token_bytes(16)
    digest = benchmark_digest(benchmark, salt)
    notes.claim(identity, challenge_id)
    notes.write(identity, challenge_id, notes.CHALLENGE_NOTE, {
        "benchmark_ref": benchmark_ref, "salt": salt.hex(), "inputs_sha256": digest})
    data = identity.sign_document({
        "format": FORMAT, "schema_version": 1, "id": challenge_id,
        "benchmark": {"id": benchmark.benchmark_id, "version": benchmark.version,
                      "n_samples": benchmark.n_samples, "inputs_sha256": digest},
        "metric": metric, "policy": str(parsed_policy), "quota": str(parsed_quota),
        "budget": None if parsed_budget is None else str(parsed_budget),
        "identity": identity.public(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    })
    for folder in (SUBMISSIONS, RESULTS, TRANSCRIPTS):
        (out / folder).mkdir(parents=True, exist_ok=True)
    write_json(out / CHALLENGE, data)
    save_card(out / CARD, "dataset", *challenge_card(data))
    return Challenge(out, data, str(out))
