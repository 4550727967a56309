"""Checks on zip archives from untrusted sources, before anything is extracted.

Concrete's own loaders call ``shutil.unpack_archive`` on ``server.zip`` and ``client.zip``;
that follows ``..`` and absolute paths and has no size limit. Every zip we hand them has first
passed :func:`check_zip`: only the expected member names, no links, bounded count and sizes.
"""

from __future__ import annotations

import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import ArtifactError

# Concrete ML 1.9 writes these members (FHEModelDev.save(via_mlir=True)). A server.zip with
# anything else, notably a compiled shared library, is refused: MLIR is recompiled locally.
CLIENT_MEMBERS = frozenset({"client.specs.json", "serialized_processing.json", "versions.json"})
SERVER_MEMBERS = frozenset(
    {
        "circuit.mlir",
        "is_simulated",
        "configuration.json",
        "composition_rules.json",
        "client.specs.json",
        "versions.json",
    }
)
REQUIRED = {
    "client.zip": frozenset({"client.specs.json", "serialized_processing.json", "versions.json"}),
    "server.zip": frozenset({"circuit.mlir", "configuration.json", "client.specs.json",
                             "versions.json", "is_simulated"}),
}
ALLOWED = {"client.zip": CLIENT_MEMBERS, "server.zip": SERVER_MEMBERS}
# The sealed audit circuit's zips (fhe_backend/sealed/circuit.py writes these members). The
# sealed total's module may also carry what Concrete saves beside it: its composition rules
# (compared with ours, never used: untrusted/composition.py) and the simulation flag (unread).
REQUIRED["sealed_client.zip"] = ALLOWED["sealed_client.zip"] = frozenset(
    {"client.specs.json", "sealed.json", "versions.json"})
REQUIRED["sealed_server.zip"] = frozenset(
    {"circuit.mlir", "configuration.json", "client.specs.json", "versions.json"})
ALLOWED["sealed_server.zip"] = REQUIRED["sealed_server.zip"] | {"composition_rules.json",
                                                                "is_simulated"}

MAX_MEMBERS = 16
MAX_MEMBER_BYTES = 256 * 1024 * 1024
MAX_TOTAL_BYTES = 512 * 1024 * 1024
# A deflate bomb expands by ~1000x; honest JSON and MLIR compress by at most ~20x.
MAX_RATIO = 200


def check_zip(path: Path) -> None:
    """Refuse a client.zip/server.zip that is not exactly what Concrete ML 1.9 writes."""
    kind = path.name
    # A published layer's circuit is a Concrete ML save like the model's: the same members.
    role = kind.rsplit("-", 1)[-1] if kind.startswith("representation-") else kind
    if role not in ALLOWED:
        raise ArtifactError(f"{kind} is not one of the archives a package holds "
                            f"({', '.join(sorted(ALLOWED))}, representation-LAYER-*.zip).")
    allowed, required = ALLOWED[role], REQUIRED[role]
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArtifactError(f"{kind} is not a readable zip archive ({exc}).") from exc
    if len(infos) > MAX_MEMBERS:
        raise ArtifactError(f"{kind} has {len(infos)} members; at most {MAX_MEMBERS} are allowed.")
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        raise ArtifactError(f"{kind} lists a member twice.")
    total = 0
    for info in infos:
        name = info.filename
        if name.startswith(("/", "\\")) or ".." in Path(name).parts or "\\" in name:
            raise ArtifactError(f"{kind} has a member with an unsafe path: {name!r}.")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ArtifactError(f"{kind} has a symbolic link member: {name!r}.")
        if name not in allowed:
            hint = " (a compiled library: only MLIR server packages are accepted)" if (
                name.endswith((".so", ".dylib", ".dll")) or "/" in name) else ""
            raise ArtifactError(f"{kind} has an unexpected member {name!r}{hint}.")
        if info.file_size > MAX_MEMBER_BYTES:
            raise ArtifactError(f"{kind} member {name!r} is too large ({info.file_size} bytes).")
        if info.compress_size and info.file_size / info.compress_size > MAX_RATIO:
            raise ArtifactError(f"{kind} member {name!r} is compressed suspiciously (zip bomb?).")
        total += info.file_size
    if total > MAX_TOTAL_BYTES:
        raise ArtifactError(f"{kind} would expand to {total} bytes (limit {MAX_TOTAL_BYTES}).")
    missing = sorted(required - set(names))
    if missing:
        raise ArtifactError(f"{kind} lacks {', '.join(missing)}.")


def read_member(path: Path, name: str) -> bytes:
    """Read one member of an archive that already passed :func:`check_zip`."""
    with zipfile.ZipFile(path) as archive:
        return archive.read(name)


def read_optional(path: Path, name: str) -> bytes | None:
    """One member of an archive, or None if absent; checked again first, since it is read
    apart from the members a caller read together."""
    check_zip(path)
    with zipfile.ZipFile(path) as archive:
        return archive.read(name) if name in archive.namelist() else None


def members(path: Path) -> Iterator[tuple[str, bytes]]:
    """Every member of an archive, name and bytes, once the archive passed :func:`check_zip`."""
    check_zip(path)
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            yield info.filename, archive.read(info)
