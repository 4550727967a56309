"""Where the auditor's secrets live on disk, and keeping them private.

A key directory holds Concrete's keyset cache (the secret key, unencrypted) and the auditor's
ledgers (which ciphertext is which sample or probe, with plaintext probe rows). Whatever the
umask, its folders are 0700 and its files 0600, set after every write, Concrete's included.
Nothing public (an encrypted benchmark, a run, a published folder) may be written inside one:
a later ``publish`` or copy of that folder would carry the secrets along.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import AuditError

# Written at the root of every key directory, so that any folder below it can tell.
KEY_MARKER = ".fhe-audit-keys"
KEYSET = "keyset.json"
DIR_MODE = 0o700
FILE_MODE = 0o600


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) with the key directory's mode."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    path.chmod(DIR_MODE)


def mark_key_dir(root: Path) -> None:
    """Create the key directory's root, private and marked as such. Only the root's own mode
    changes: whatever else a user keeps beside the keys is left as it is."""
    make_private_dir(root)
    marker = root / KEY_MARKER
    if not marker.is_file():
        marker.write_text("An fhe-audit key directory: secret, never publish or copy it.\n",
                          encoding="utf-8")
    marker.chmod(FILE_MODE)


def secure_tree(root: Path) -> None:
    """Folders 0700 and files 0600 under ``root`` (symbolic links are left alone)."""
    root = Path(root)
    if not root.is_dir():
        return
    root.chmod(DIR_MODE)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            path = Path(folder) / name
            if not path.is_symlink():
                path.chmod(DIR_MODE)
        for name in files:
            path = Path(folder) / name
            if not path.is_symlink():
                path.chmod(FILE_MODE)


def key_dir_holding(path: Path) -> Path | None:
    """The key directory that ``path`` is in (or is), if any."""
    path = Path(path).resolve()
    for folder in (path, *path.parents):
        if (folder / KEY_MARKER).is_file():
            return folder
        if (folder / KEYSET).is_file():  # a model's sub-folder, from before the marker
            return folder.parent
    return None


def refuse_inside_key_dir(path: Path, what: str) -> None:
    """Refuse to write a public folder (``what``) inside an auditor's key directory."""
    keys = key_dir_holding(path)
    if keys is not None:
        raise AuditError(f"Refusing to write {what} into {path}: it is inside the key "
                         f"directory {keys}, whose secrets must never be published; choose a "
                         "folder outside it.")
