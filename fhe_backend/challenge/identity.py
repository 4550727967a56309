"""Public identities: an Ed25519 key pair in a folder of its own, for the auditor (it signs the
challenge and its results) and, optionally, for a submitter (it signs their submissions).

Layout (created on first use)::

    ID/                 mode 0700
    ID/identity.json    {"format", "name", "public_key" (hex), "demo", "created_at"}
    ID/private_key.pem  mode 0600, PKCS#8, unencrypted: like the FHE secret keys, it never
                        leaves this folder (nothing in this package copies or publishes it)
    ID/challenges/      the auditor's private notes per challenge (benchmark ref, salts,
                        withheld raw scores), mode 0600 files

A *demo* identity (``demo: true``) signs only the bundled demo challenge; its private key is
committed with the demo so that ``make assets`` is reproducible, which is why its results say
"demo" everywhere they are shown and must never be trusted as a real auditor's.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ChallengeError
from ..formats import atomic
from ..formats.artifacts import now_iso, read_json

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

IDENTITY = "identity.json"
PRIVATE_KEY = "private_key.pem"
NOTES = "challenges"
FORMAT = "fhe-audit/identity"
SIGNATURE_BYTES = 64
PUBLIC_KEY_HEX = 64
# An Ed25519 PKCS#8 PEM is 119 bytes; anything much larger is not one, and is not read whole.
MAX_PRIVATE_KEY_BYTES = 4096


def canonical(data: dict[str, Any]) -> bytes:
    """The bytes that are signed: sorted keys, no spaces, ASCII; floats in Python's shortest
    round-trip form, so an edit of any value changes them."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def verify_signature(public_key_hex: str, message: bytes, signature_hex: str) -> bool:
    """True only when ``signature_hex`` is a valid Ed25519 signature of ``message``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex))
        key.verify(bytes.fromhex(signature_hex), message)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def write_private(path: Path, data: bytes) -> None:
    """Create or replace a 0600 file atomically (the mode is set before any byte is written)."""
    with atomic.replacing(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o600)


@dataclass
class Identity:
    path: Path
    name: str
    public_key: str  # 32 bytes, hex
    demo: bool = False

    @classmethod
    def open(cls, path: Path, *, create: bool = True, name: str | None = None,
             demo: bool = False) -> Identity:
        """Load the identity in ``path``, creating a new key pair there if it has none."""
        path = Path(path).expanduser()
        if (path / IDENTITY).is_file():
            return cls.load(path)
        if not create:
            raise ChallengeError(f"{path} holds no identity; create one with challenge init.")
        if path.exists() and any(path.iterdir()):
            raise ChallengeError(f"{path} is not empty and holds no identity; choose a new "
                                 "folder for the identity.")
        return cls._create(path, name or path.name, demo)

    @classmethod
    def load(cls, path: Path) -> Identity:
        data = read_json(path / IDENTITY, f"Identity {path}")
        if data.get("format") != FORMAT or len(str(data.get("public_key", ""))) != PUBLIC_KEY_HEX:
            raise ChallengeError(f"{path / IDENTITY} is not an fhe-audit identity.")
        key_file = path / PRIVATE_KEY
        if not key_file.is_file():
            raise ChallengeError(f"The identity in {path} has lost its private key.")
        if stat.S_IMODE(key_file.stat().st_mode) & 0o077:
            raise ChallengeError(f"{key_file} is readable by others; run chmod 600 on it.")
        # identity.json is a plain file anyone may edit: the key it names must be the private
        # key's own, or every signature it makes would name another (or no valid) key.
        if _public_hex(_private_key(key_file)) != str(data["public_key"]).lower():
            raise ChallengeError(f"{path / IDENTITY} names another public key than its private "
                                 "key's; restore the identity from a backup.")
        return cls(path, str(data.get("name", path.name)), str(data["public_key"]).lower(),
                   bool(data.get("demo", False)))

    @classmethod
    def _create(cls, path: Path, name: str, demo: bool) -> Identity:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path, 0o700)
        key = Ed25519PrivateKey.generate()
        write_private(path / PRIVATE_KEY, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        public = _public_hex(key)
        # identity.json last: a folder killed half-way has no identity and is refused as such.
        (path / IDENTITY).write_text(json.dumps({
            "format": FORMAT, "name": name, "public_key": public, "demo": demo,
            "created_at": now_iso()}, indent=2) + "\n", encoding="utf-8")
        return cls(path, name, public, demo)

    def public(self) -> dict[str, Any]:
        """What a challenge publishes about its auditor."""
        return {"name": self.name, "public_key": self.public_key, "demo": self.demo}

    def sign(self, message: bytes) -> str:
        return _private_key(self.path / PRIVATE_KEY).sign(message).hex()

    def sign_document(self, data: dict[str, Any]) -> dict[str, Any]:
        """``data`` plus a ``signature`` over its canonical bytes."""
        body = {k: v for k, v in data.items() if k != "signature"}
        return {**body, "signature": self.sign(canonical(body))}


def _public_hex(key: Ed25519PrivateKey) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw).hex()


def _private_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in ``path``; one sentence when it is anything else."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(_read_key_file(path), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ChallengeError(f"{path} is not an unencrypted PEM private key ({exc}).".replace(
            "\n", " ")) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ChallengeError(f"{path} is not an Ed25519 private key.")
    return key


def _read_key_file(path: Path) -> bytes:
    """The private key file's bytes: a regular file of this folder (a symbolic link could
    point anywhere, a 1 GiB file would be read whole), at most MAX_PRIVATE_KEY_BYTES."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise ChallengeError(f"{path} cannot be read as a private key file (a symbolic link, or "
                             f"{exc.strerror}).") from exc
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_PRIVATE_KEY_BYTES:
            raise ChallengeError(f"{path} is not a private key file (a regular file of at most "
                                 f"{MAX_PRIVATE_KEY_BYTES} bytes).")
        return handle.read(MAX_PRIVATE_KEY_BYTES + 1)


def key_fingerprint(public_key_hex: str) -> str:
    """SHA-256 of the raw public key, hex: what the leaderboard shows for a submitter's key."""
    import hashlib

    return hashlib.sha256(bytes.fromhex(public_key_hex)).hexdigest()


def signed_by(data: dict[str, Any], public_key_hex: str) -> bool:
    """True when ``data['signature']`` signs the rest of ``data`` with this key."""
    signature = data.get("signature")
    if not isinstance(signature, str) or len(signature) != 2 * SIGNATURE_BYTES:
        return False
    body = {k: v for k, v in data.items() if k != "signature"}
    try:
        message = canonical(body)
    except (TypeError, ValueError):
        return False
    return verify_signature(public_key_hex, message, signature)
