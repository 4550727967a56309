"""Where the auditor's secrets live on disk, and keeping them private.

A key directory holds, per circuit, Concrete's keyset cache (the secret key, unencrypted), the
record of its keygen and the auditor's ledgers (which ciphertext is which sample or probe, with
plaintext probe rows)::

    KEYS/.fhe-audit-keys                           marks the whole folder as secret
    KEYS/<fingerprint[:16]>[-sealed]/keyset.json   model, keyset id, hash of the secret keyset
    KEYS/<...>/evaluation_keys.bin                 public half, copied into benchmarks
    KEYS/<...>/cache/                              Concrete's keyset cache: SECRET, unencrypted
    KEYS/<...>/ledgers/                            which ciphertext is which sample or probe

Whatever the umask, its folders are 0700 and its files 0600, set after every write, Concrete's
included. Nothing public (an encrypted benchmark, a run, a published folder) may be written
inside one: a later ``publish`` or copy of that folder would carry the secrets along.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import AuditError, MismatchError, NotFoundError
from ..formats.artifacts import EVALUATION_KEYS, now_iso, read_json, write_json
from ..formats.hashing import sha256_bytes

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


def refuse_inside_key_dir(path: Path, what: str, keys_root: Path | None = None) -> None:
    """Refuse to write a public folder (``what``) inside an auditor's key directory, or (given
    the directory ``keys_root`` its keys go to) around it: ``encrypt --keys enc/keys --out
    enc`` put the secret keyset inside the benchmark it called free of secrets."""
    keys = key_dir_holding(path)
    if keys is not None:
        raise AuditError(f"Refusing to write {what} into {path}: it is inside the key "
                         f"directory {keys}, whose secrets must never be published; choose a "
                         "folder outside it.")
    if keys_root is not None:
        folder, root = Path(path).resolve(), Path(keys_root).resolve()
        if root == folder or folder in root.parents:
            raise AuditError(f"Refusing to write {what} into {path}: the key directory {keys_root} "
                             "is inside it, and its secrets must never be published; keep the "
                             "keys outside the folder.")


class KeyDirectory:
    """One circuit's keys in an auditor's key directory: Concrete's client (it holds the secret
    key), the keygen record, and the check that the cached keyset is the one recorded. The
    per-sample and the sealed auditor each hold one, for their own circuit.

    ``specs`` gives the ``concrete.fhe.ClientSpecs`` to make keys with; it is called once, on
    first use, so a caller can refuse a package before any key or folder exists. ``record``
    is written into ``keyset.json`` beside what every keyset records; ``missing`` is the
    sentence for a directory without keys.
    """

    def __init__(self, root: Path, name: str, specs: Callable[[], Any], record: dict[str, Any],
                 missing: str):
        self.root = Path(root)
        self.dir = self.root / name
        self._specs = specs
        self._record = record
        self._missing = missing
        self._fhe_client: Any = None
        self._checked = False

    @property
    def client(self) -> Any:
        """Concrete's client, bound to this circuit's keyset cache."""
        if self._fhe_client is None:
            from concrete import fhe

            specs = self._specs()
            make_private_dir(self.dir)
            self._fhe_client = fhe.Client(specs, keyset_cache_directory=str(self.dir / "cache"))
        return self._fhe_client

    def has_keys(self) -> bool:
        return (self.dir / KEYSET).is_file()

    def keygen(self) -> bytes:
        """Create (or reuse) the keys; returns the serialized evaluation keys."""
        if self.has_keys():
            return self.evaluation_keys()
        self.client.keygen(force=False)
        evaluation_keys = self.client.evaluation_keys.serialize()
        (self.dir / EVALUATION_KEYS).write_bytes(evaluation_keys)
        write_json(self.dir / KEYSET, {
            **self._record,
            "key_fingerprint": sha256_bytes(evaluation_keys),
            # Public name of this keyset. The evaluation keys cannot serve: a circuit without
            # bootstrapping (linear models) has empty evaluation keys, the same for every keyset.
            "keyset_id": uuid.uuid4().hex,
            # Private: detects a keyset cache that was replaced. Never leaves the key directory.
            "keyset_sha256": sha256_bytes(self.client.keys.serialize()),
            "created_at": now_iso(),
        })
        self.secure()
        return evaluation_keys

    def evaluation_keys(self) -> bytes:
        return (self.dir / EVALUATION_KEYS).read_bytes()

    def record(self) -> dict[str, Any]:
        """What keygen recorded (``keyset_id``, ...); refused when there are no keys."""
        if not self.has_keys():
            raise NotFoundError(self._missing)
        return read_json(self.dir / KEYSET, "Key directory")

    @property
    def keyset_id(self) -> str:
        return str(self.record()["keyset_id"])

    def load_secret_keys(self) -> None:
        """Load the cached keyset, and make sure it is the one recorded at keygen.

        Concrete would silently generate a fresh keyset if its cache were gone; decrypting with
        that would give noise, so the keyset is compared with the hash recorded at keygen.
        """
        if self._checked:
            return
        expected = self.record()["keyset_sha256"]
        self.client.keygen(force=False)
        if sha256_bytes(self.client.keys.serialize()) != expected:
            raise MismatchError(f"The secret keys in {self.dir} are not the ones recorded at "
                                "keygen; the key directory is incomplete or was altered.")
        self.secure()  # loading may have written Concrete's cache
        self._checked = True

    def secure(self) -> None:
        """0700 folders and 0600 files, Concrete's keyset cache included, whatever the umask."""
        mark_key_dir(self.root)
        secure_tree(self.dir)
