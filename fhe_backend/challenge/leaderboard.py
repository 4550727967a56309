"""Checking results and ranking them.

A result is *verified* only when its Ed25519 signature checks against the challenge's public
key, it names this challenge's fingerprint (the SHA-256 of its challenge.json: two challenges
with one id and one auditor never vouch for each other's results), and the transcript it names
(``transcripts/<id>.json``) has the SHA-256 the result records and the hashes the result quotes
(model fingerprint, inputs, evaluation keys, outputs). Anyone holding the encrypted benchmark
and the run can then re-execute the transcript with ``verify``. A verified result proves that
the auditor signed this score for this computation, not that the auditor is honest: the hidden
labels stay hidden.

The leaderboard has one entry per submitter (names compared case-folded): their best released
score, with the model and date that achieved it; verified entries rank first, then by score,
then the earliest received. Submissions the Ladder did not release (they did not beat the
leader) have no score and no entry; the board counts them. An entry carries the fingerprint of
the key that signed the submission (the desk checked it), or None for an unsigned submission.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ArtifactError
from ..formats.artifacts import read_json
from ..formats.hashing import sha256_file
from .identity import signed_by
from .policy import NOT_RELEASED
from .store import RESULT_FORMAT, Challenge, name_key

TRANSCRIPT_FIELDS = ("model_fingerprint", "inputs_sha256", "evaluation_keys_sha256",
                     "outputs_sha256", "keyset_id", "n_samples", "n_failed", "mode")
ENTRY_KEYS = ("rank", "submitter", "model", "model_fingerprint", "score", "interval", "mode",
              "date", "verified", "submitter_fingerprint")


def transcript_summary(transcript: dict[str, Any]) -> dict[str, Any]:
    """The transcript's hashes a result quotes."""
    return {k: transcript.get(k) for k in TRANSCRIPT_FIELDS}


@dataclass
class Check:
    verified: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"verified": self.verified, "reason": self.reason}


def verify_result(challenge: Challenge, result: dict[str, Any]) -> Check:
    result = {k: v for k, v in result.items() if k != "_file"}
    if result.get("format") != RESULT_FORMAT:
        return Check(False, "not a challenge result")
    if not signed_by(result, challenge.public_key):
        return Check(False, "the signature does not check against the challenge's key "
                            "(edited, or signed by another key)")
    if result.get("challenge_sha256") != challenge.fingerprint:
        return Check(False, f"the result is for another challenge (challenge "
                            f"{result.get('challenge')!r}, another challenge.json)")
    if result.get("transcript") is None:
        return Check(True, f"signed {result.get('decision')} decision (no run)")
    path = challenge.transcript_path(str(result.get("submission_id")))
    if not path.is_file():
        return Check(False, "the transcript it names is missing")
    if sha256_file(path) != result.get("transcript_sha256"):
        return Check(False, "the transcript's SHA-256 is not the one the result records")
    try:
        transcript = read_json(path, "Transcript")
    except ArtifactError as exc:
        return Check(False, str(exc))
    if transcript_summary(transcript) != result["transcript"]:
        return Check(False, "the result's hashes do not match its transcript")
    if transcript.get("model_fingerprint") != result.get("model_fingerprint"):
        return Check(False, "the transcript is of another model")
    if (transcript.get("circuit") == "sealed") != (result.get("mode") == "sealed"):
        return Check(False, "the result's mode is not the circuit its transcript ran")
    return Check(True, "signature and transcript hashes check")


def load_result(challenge: Challenge, file: str) -> dict[str, Any]:
    """A result file by path, or by its path inside the challenge (``results/ID.json``)."""
    path = Path(file).expanduser()
    if not path.is_file() and (challenge.path / file).is_file():
        path = challenge.path / file
    return read_json(path, "Challenge result")


def rows(challenge: Challenge) -> list[dict[str, Any]]:
    """The ranked entries, each with its result and check (``_result``, ``_check``)."""
    candidates: dict[str, list[tuple[Check, dict[str, Any]]]] = {}
    for result in challenge.results().values():
        if not _is_score(result.get("score")) or not isinstance(result.get("submitter"), str):
            continue  # not released, rejected or void (or a score that is not a number)
        candidates.setdefault(name_key(result["submitter"]), []).append(
            (verify_result(challenge, result), result))
    entries = []
    for theirs in candidates.values():
        # A verified result outranks any unverified one, whatever its score: a file anyone
        # dropped in results/ must not hide a submitter's real entry. Ties: the earliest.
        check, result = min(theirs, key=lambda c: (not c[0].verified, -c[1]["score"],
                                                   str(c[1].get("received_at"))))
        # An unverified result is any file someone wrote: its fields are shown only when they
        # have the shape the desk writes (one malformed file must not break the board).
        interval = result.get("interval")
        entries.append({
            "submitter": result["submitter"],
            "model": _text(result.get("model")),
            "model_fingerprint": _text(result.get("model_fingerprint")),
            "score": result["score"],
            "interval": interval if (isinstance(interval, list) and len(interval) == 2
                                     and all(map(_is_score, interval))) else None,
            "mode": _text(result.get("mode")),
            "date": _text(result.get("date")),
            "verified": check.verified,
            # SHA-256 of the key that signed the submission; None: an unsigned submission.
            "submitter_fingerprint": _text(result.get("submitter_fingerprint")),
            "_result": result, "_check": check})
    entries.sort(key=lambda e: (not e["verified"], -_number(e["score"]),
                                str(e["_result"].get("received_at"))))
    for rank, entry in enumerate(entries, 1):
        entry["rank"] = rank
    return entries


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else float("-inf")


def _is_score(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def leaderboard(challenge: Challenge) -> dict[str, Any]:
    """The ``leaderboard --json`` object (keys are a contract)."""
    held_back = sum(1 for r in challenge.signed_results() if r.get("decision") == NOT_RELEASED)
    return {"challenge": challenge.challenge_id, "benchmark": challenge.data["benchmark"]["id"],
            "metric": challenge.metric, "policy": str(challenge.policy),
            "budget": None if challenge.budget is None else str(challenge.budget),
            "not_released": held_back,
            "entries": [{k: e[k] for k in ENTRY_KEYS} for e in rows(challenge)]}


def leaderboard_text(board: dict[str, Any], demo: bool) -> str:
    lines = [f"Challenge {board['challenge']}: {board['metric']} on {board['benchmark']}, "
             f"policy {board['policy']}, budget {board['budget'] or 'unlimited'}"
             + (" (DEMO identity: signatures prove nothing)" if demo else "")]
    for e in board["entries"]:
        interval = (f" [{e['interval'][0]:.3f}, {e['interval'][1]:.3f}]" if e["interval"]
                    else "")
        key = (f"key {e['submitter_fingerprint'][:16]}" if e["submitter_fingerprint"]
               else "unsigned")
        lines.append(f"{e['rank']:>3}. {e['submitter']:<16} {e['score']:.4f}{interval}  "
                     f"{'verified' if e['verified'] else 'NOT VERIFIED'}  {e['mode']}  "
                     f"{e['model']}  {e['date']}  {key}")
    if board["not_released"]:
        lines.append(f"     {board['not_released']} submission(s) did not beat the leader by "
                     "the policy's margin: not released, no score.")
    lines.append("     Intervals: 95% for one submission alone; a leader, the best of many, is "
                 "biased upward.")
    return "\n".join(lines if board["entries"] else [*lines, "No scored results yet."])
