"""Publishing a challenge's public files to a Hub dataset repo.

Exactly ``challenge.json``, ``README.md`` and the JSON files of ``submissions/``, ``results/``
and ``transcripts/`` are uploaded: never ``work/`` (ciphertexts, outputs) nor anything of the
auditor's identity or key directory. The upload replaces the repo's files, so publish from the
auditor's folder after taking in the submissions made on the Hub.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..formats.hashing import sha256_file
from ..hub import remote as hub
from ..hub.publish import Published, PublishError, _staging
from .store import CARD, CHALLENGE, RESULTS, SUBMISSIONS, TRANSCRIPTS, Challenge


def publish_challenge(challenge_ref: str, repo_id: str, *, private: bool = False,
                      dry_run: bool = False, out: Path | None = None) -> Published:
    if dry_run and out is None:
        raise PublishError("--dry-run needs --out DIR: the folder that would be uploaded.")
    challenge = Challenge.open(challenge_ref)
    ref = hub.repo_ref(repo_id, "dataset")
    target = hub.parse_ref(ref)
    url = None
    with _staging(out) as folder:
        for name in (CHALLENGE, CARD):
            shutil.copyfile(challenge.path / name, folder / name)
        for sub in (SUBMISSIONS, RESULTS, TRANSCRIPTS):
            (folder / sub).mkdir()
            for path in sorted((challenge.path / sub).glob("*.json")):
                shutil.copyfile(path, folder / sub / path.name)
        Challenge.open(str(folder))  # the signed challenge.json still checks
        hashes = {str(p.relative_to(folder)): sha256_file(p)
                  for p in sorted(folder.rglob("*")) if p.is_file()}
        if not dry_run:
            url = hub.upload_folder(folder, target.repo_id, "dataset", private=private,
                                    message=f"Challenge {challenge.challenge_id}")
    return Published(target.repo_id, "dataset", ref, dry_run,
                     str(out) if out is not None else None, hashes, url)
