"""The auditor's private notes, one folder per challenge, inside the auditor's identity folder.

    ID/challenges/<challenge id>/challenge.json      benchmark reference, salt, inputs hash
    ID/challenges/<challenge id>/score-<sub>.json     a withheld raw score, its salt, and (for
                                                      ladder:auto) its per-sample correctness

A challenge id is claimed once per identity (:func:`claim` creates its folder or refuses): a
second ``challenge init --id race`` with the same identity used to overwrite the first one's
salt and benchmark reference. The folders are created 0700 and never followed when they are
symbolic links (someone who can write in the identity folder could otherwise point the notes,
and the chmod, at a folder of their choosing).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

from ..errors import ChallengeError
from ..formats.artifacts import read_json
from .identity import NOTES, Identity, write_private

CHALLENGE_NOTE = "challenge"


def _checked(path: Path) -> Path:
    """``path``, refused unless it is a real folder (never a symbolic link), made 0700."""
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise ChallengeError(f"{path} is not a plain folder (a symbolic link?); the auditor's "
                             "private notes are kept only in a real folder.")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)  # a real folder (checked above), so the chmod is on it
    return path


def _ensure(path: Path) -> Path:
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    return _checked(path)


def folder(identity: Identity, challenge_id: str) -> Path | None:
    """The challenge's notes folder, None when the identity has none."""
    path = identity.path / NOTES / challenge_id
    if not os.path.lexists(path):
        return None
    _checked(path.parent)
    return _checked(path)


def claim(identity: Identity, challenge_id: str) -> Path:
    """A new notes folder for ``challenge_id``; refused when the identity already has one."""
    root = _ensure(identity.path / NOTES)
    try:
        os.mkdir(root / challenge_id, 0o700)
    except FileExistsError:
        raise ChallengeError(f"The identity in {identity.path} already has a challenge "
                             f"{challenge_id!r}; choose another --id (its private notes would "
                             "be overwritten).") from None
    return _checked(root / challenge_id)


def forget(identity: Identity, challenge_id: str) -> None:
    """Remove a challenge's notes (the demo build, before it rebuilds its challenge)."""
    path = folder(identity, challenge_id)
    if path is not None:
        shutil.rmtree(path)


def write(identity: Identity, challenge_id: str, name: str, data: dict[str, Any]) -> None:
    path = folder(identity, challenge_id)
    if path is None:
        raise ChallengeError(f"The identity in {identity.path} has no notes for challenge "
                             f"{challenge_id}; run the desk with the identity that created it.")
    write_private(path / f"{name}.json", (json.dumps(data, indent=2) + "\n").encode("utf-8"))


def read(identity: Identity, challenge_id: str, name: str) -> dict[str, Any] | None:
    path = folder(identity, challenge_id)
    if path is None or not (path / f"{name}.json").is_file():
        return None
    return read_json(path / f"{name}.json", f"Identity {identity.path}")
