"""Runs made by another server, and which of them count.

A submitter may have their submission run by a server of their choosing: the signed submission
names that server's public key (``runner_key``), and the server publishes its run of
``work/<id>/encrypted`` in ``runs/<id>/`` with ``run-signature.json``, an Ed25519 signature over
the submission id, the challenge's fingerprint and the SHA-256 of the run's transcript (which
holds the outputs' hashes). Only such a run counts (the desk then spot-checks it, and a run that
fails the check voids the submission: its own runner's fault). Any other file in ``runs/<id>/``
(anyone may write there on a shared or Hub challenge) is ignored and the desk runs the
submission itself: a planted ``{"format": "garbage"}`` used to get a rival a signed ``void``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ArtifactError, ChallengeError
from ..formats.artifacts import TRANSCRIPT, read_json, write_json
from ..formats.hashing import sha256_file
from .identity import Identity, signed_by
from .store import Challenge, submitter_key

SIGNATURE = "run-signature.json"
FORMAT = "fhe-audit/run-signature"


def runner_key(submission: dict[str, Any]) -> str | None:
    """The runner key a submission names, when the submission's own signature checks (an
    unsigned submission names nobody: anyone could have written it)."""
    key = submission.get("runner_key")
    return key if submitter_key(submission) and isinstance(key, str) else None


def sign_run(challenge: Challenge, submission_id: str, identity: Identity,
             run_dir: Path | None = None) -> dict[str, Any]:
    """Sign the run in ``run_dir`` (default ``runs/<id>/``) as the server ``identity``."""
    run_dir = run_dir or challenge.external_run(submission_id)
    if not (run_dir / TRANSCRIPT).is_file():
        raise ChallengeError(f"{run_dir} holds no run (no {TRANSCRIPT}).")
    document = identity.sign_document({
        "format": FORMAT, "submission_id": submission_id,
        "challenge_sha256": challenge.fingerprint, "runner_key": identity.public_key,
        "transcript_sha256": sha256_file(run_dir / TRANSCRIPT)})
    write_json(run_dir / SIGNATURE, document)
    return document


def counted_run(challenge: Challenge, submission: dict[str, Any]) -> Path | None:
    """``runs/<id>/`` when it holds a run signed by the runner the signed submission names,
    for this submission of this challenge; None otherwise (the desk then runs it itself)."""
    key = runner_key(submission)
    folder = challenge.external_run(str(submission["id"]))
    if key is None or not (folder / SIGNATURE).is_file() or not (folder / TRANSCRIPT).is_file():
        return None
    try:
        document = read_json(folder / SIGNATURE, "Run signature")
    except ArtifactError:
        return None
    if not (signed_by(document, key) and document.get("format") == FORMAT
            and document.get("submission_id") == submission["id"]
            and document.get("challenge_sha256") == challenge.fingerprint
            and document.get("transcript_sha256") == sha256_file(folder / TRANSCRIPT)):
        return None
    return folder
