"""The desk on a challenge that lives on the Hub: a local mirror, then an upload of the results.

The auditor's desk needs local folders (resumable work folders, atomic writes), so for
``hf://datasets/OWNER/NAME`` it works in ``$FHE_AUDIT_HOME/challenges/OWNER--NAME`` (default
``~/.fhe-audit``): the repo's public files are copied in (never overwriting a result already
there), the desk runs there, and the new results and transcripts are added to the repo in one
commit that leaves everything else (submissions arriving meanwhile) alone.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..hub import remote as hub
from ..hub.registry import home
from .store import CARD, CHALLENGE, RESULTS, SUBMISSIONS, TRANSCRIPTS, Challenge


def mirror_dir(ref: str) -> Path:
    return home() / "challenges" / hub.parse_ref(ref).repo_id.replace("/", "--")


def pull(remote: Challenge) -> Challenge:
    """The local mirror of a Hub challenge, brought up to date with the downloaded snapshot."""
    mirror = mirror_dir(remote.ref)
    mirror.mkdir(parents=True, exist_ok=True)
    # The mirror's own challenge, before the repo's is copied over it (checked after the copy,
    # the key compared the repo's file with itself).
    if (mirror / CHALLENGE).is_file() and Challenge.open(str(mirror)).public_key != (
            remote.public_key):
        raise hub.HubError(f"The mirror {mirror} belongs to another challenge; move it away.")
    for name in (CHALLENGE, CARD):
        if (remote.path / name).is_file():
            shutil.copyfile(remote.path / name, mirror / name)
    for folder in (SUBMISSIONS, RESULTS, TRANSCRIPTS):
        (mirror / folder).mkdir(exist_ok=True)
        for path in (remote.path / folder).glob("*.json"):
            if not (mirror / folder / path.name).exists():
                shutil.copyfile(path, mirror / folder / path.name)
    return Challenge.open(str(mirror))


def push(mirror: Challenge, remote: Challenge) -> str | None:
    """Add the mirror's results (and transcripts) that the Hub repo lacks, in one commit; an
    upload that failed is retried by the next desk run."""
    missing = sorted(set(mirror.results()) - set(remote.results()))
    paths = [str(p.relative_to(mirror.path)) for sub_id in missing
             for p in (mirror.result_path(sub_id), mirror.transcript_path(sub_id)) if p.is_file()]
    if not paths:
        return None
    return hub.upload_files(mirror.path, hub.parse_ref(remote.ref).repo_id, paths,
                            message=f"Results of {len(missing)} submission(s)")
