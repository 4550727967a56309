"""Hostile artifacts as a publisher could make them: members edited, hashes made consistent."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

from fhe_backend.formats.artifacts import (
    EVALUATION_KEYS,
    MANIFEST,
    REPRESENTATION_PREFIX,
    model_fingerprint,
)
from fhe_backend.formats.hashing import sha256_file
from fhe_backend.sealed.circuit import SEALED_CLIENT, SEALED_ZIPS


def edit_member(zip_path: Path, name: str, data: bytes) -> None:
    """Replace one member of a zip, keeping the others as they are."""
    with zipfile.ZipFile(zip_path) as src:
        members = {n: src.read(n) for n in src.namelist()}
    members[name] = data
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as dst:
        for member, content in members.items():
            dst.writestr(member, content)


def resign_package(package: Path) -> None:
    """Recompute the manifest's hashes and fingerprint, as the publisher of a package can."""
    manifest = json.loads((package / MANIFEST).read_text())
    layers = sorted(p.name for p in package.glob(f"{REPRESENTATION_PREFIX}*-*.zip"))
    manifest["files"] = {n: sha256_file(package / n)
                         for n in ("client.zip", "server.zip", *SEALED_ZIPS, *layers)
                         if (package / n).is_file()}
    manifest["fingerprint"] = model_fingerprint(package)
    (package / MANIFEST).write_text(json.dumps(manifest))


def hostile_package(source: Path, dest: Path, *, mlir: str | None = None,
                    client_specs: dict | None = None,
                    sealed_client_specs: dict | None = None) -> Path:
    """A copy of ``source`` with its circuit or its (sealed) client specs replaced, re-signed."""
    shutil.copytree(source, dest)
    if mlir is not None:
        edit_member(dest / "server.zip", "circuit.mlir", mlir.encode("utf-8"))
    if client_specs is not None:
        edit_member(dest / "client.zip", "client.specs.json",
                    json.dumps(client_specs).encode("utf-8"))
    if sealed_client_specs is not None:
        edit_member(dest / SEALED_CLIENT, "client.specs.json",
                    json.dumps(sealed_client_specs).encode("utf-8"))
    resign_package(dest)
    return dest


def replace_evaluation_keys(encrypted: Path, raw: bytes) -> None:
    """Swap an encrypted benchmark's evaluation keys and fix its manifest, as a publisher can."""
    (encrypted / EVALUATION_KEYS).write_bytes(raw)
    manifest = json.loads((encrypted / MANIFEST).read_text())
    manifest["files"][EVALUATION_KEYS] = sha256_file(encrypted / EVALUATION_KEYS)
    (encrypted / MANIFEST).write_text(json.dumps(manifest))
