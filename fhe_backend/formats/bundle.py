"""Several serialized Concrete values carried as one ciphertext blob.

A sealed audit circuit takes several encrypted arguments (inputs, labels with mask and group),
while every artifact, journal and executor moves one blob per unit of work. The blob is a magic
prefix, the number of values and each value's length-prefixed bytes; a plain serialized value
never starts with the magic, so the two kinds cannot be confused.
"""

from __future__ import annotations

import struct

from ..errors import CiphertextError

MAGIC = b"FHEAUDIT-BUNDLE1"
MAX_VALUES = 16


def pack_values(values: list[bytes]) -> bytes:
    parts = [MAGIC, struct.pack("<I", len(values))]
    for value in values:
        parts += [struct.pack("<Q", len(value)), value]
    return b"".join(parts)


def is_bundle(blob: bytes) -> bool:
    return blob.startswith(MAGIC)


def unpack_values(blob: bytes) -> list[bytes]:
    """The values of a bundle; a malformed one is refused in one sentence."""
    view = memoryview(blob)[len(MAGIC):]
    try:
        (count,) = struct.unpack_from("<I", view)
        if count > MAX_VALUES:
            raise CiphertextError(f"the ciphertext bundle claims {count} values.")
        offset, values = 4, []
        for _ in range(count):
            (size,) = struct.unpack_from("<Q", view, offset)
            offset += 8
            if offset + size > len(view):
                raise CiphertextError("the ciphertext bundle is truncated.")
            values.append(bytes(view[offset:offset + size]))
            offset += size
    except struct.error as exc:
        raise CiphertextError("the ciphertext bundle is truncated.") from exc
    if offset != len(view):
        raise CiphertextError("the ciphertext bundle has trailing bytes.")
    return values


def arguments(blob: bytes) -> list[bytes]:
    """The serialized arguments a ciphertext blob holds: a bundle's values, or itself."""
    return unpack_values(blob) if is_bundle(blob) else [blob]
