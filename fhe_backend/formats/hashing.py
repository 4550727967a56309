"""SHA-256 helpers shared by every artifact format.

Files are hashed as bytes. Ciphertext collections are hashed by *content* (sample ids and
ciphertext bytes in order, length-prefixed) rather than as Parquet files, so that a transcript's
hash does not depend on the Parquet writer's version or metadata, only on what was computed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_files(paths: Iterable[Path]) -> str:
    """One digest over several files' bytes in order (the model fingerprint)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def content_hash(rows: Iterable[tuple[str, bytes]]) -> str:
    """Canonical digest of an ordered (sample_id, ciphertext) sequence."""
    digest = hashlib.sha256(b"fhe-audit/ciphertexts/v1\n")
    for sample_id, blob in rows:
        encoded = sample_id.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "big") + encoded)
        digest.update(len(blob).to_bytes(8, "big"))
        digest.update(blob)
    return digest.hexdigest()
