"""Artifact validation: manifests, hashes, versions, zip members, Concrete configuration."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from support import copy_tree

from fhe_backend.errors import ArtifactError, IntegrityError, VersionError
from fhe_backend.formats.artifacts import (
    MANIFEST,
    EncryptedBenchmark,
    ModelPackage,
    model_fingerprint,
)
from fhe_backend.formats.hashing import sha256_file
from fhe_backend.untrusted.circuit import load_configuration
from fhe_backend.untrusted.safezip import check_zip, read_member


def rewrite_zip(path: Path, extra: dict[str, bytes] | None = None, drop: str | None = None,
                symlink: str | None = None) -> None:
    """Rebuild a zip with members added, removed or turned into a symbolic link."""
    with zipfile.ZipFile(path) as src:
        members = {n: src.read(n) for n in src.namelist() if n != drop}
    members.update(extra or {})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            if name == symlink:
                info.external_attr = (0o120777 << 16)
            dst.writestr(info, data, zipfile.ZIP_DEFLATED)


def resign(package: Path) -> None:
    """Update the manifest's hashes as a forger would, so that only the zip check can object."""
    manifest = json.loads((package / MANIFEST).read_text())
    manifest["files"] = {n: sha256_file(package / n) for n in ("client.zip", "server.zip")}
    manifest["fingerprint"] = model_fingerprint(package)
    (package / MANIFEST).write_text(json.dumps(manifest))


@pytest.fixture
def package_copy(tmp_path, fast_package) -> Path:
    return copy_tree(fast_package.path, tmp_path / "pkg")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"extra": {"../evil.txt": b"x"}}, "unsafe path"),
        ({"extra": {"/etc/evil": b"x"}}, "unsafe path"),
        ({"extra": {"sharedlib.so": b"\x7fELF"}}, "only MLIR server packages"),
        ({"extra": {"notes.txt": b"hello"}}, "unexpected member"),
        ({"drop": "circuit.mlir"}, "lacks circuit.mlir"),
        ({"symlink": "is_simulated"}, "symbolic link"),
        ({"extra": {"versions.json.bak": b"0" * (10 * 1024 * 1024)}}, "unexpected member"),
    ],
)
def test_hostile_server_zip_is_refused(package_copy, change, message):
    rewrite_zip(package_copy / "server.zip", **change)
    resign(package_copy)
    with pytest.raises(ArtifactError, match=message):
        ModelPackage.load(package_copy)


def test_zip_bomb_is_refused(tmp_path, fast_package):
    bomb = tmp_path / "server.zip"
    with zipfile.ZipFile(fast_package.server_zip) as src, zipfile.ZipFile(
            bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, data + (b" " * 50_000_000 if name == "circuit.mlir" else b""))
    with pytest.raises(ArtifactError, match="zip bomb"):
        check_zip(bomb)


def test_version_mismatch_names_both_versions(package_copy):
    manifest = json.loads((package_copy / MANIFEST).read_text())
    with zipfile.ZipFile(package_copy / "client.zip") as zf:
        versions = json.loads(zf.read("versions.json"))
    versions["concrete-ml"] = "1.8.0"
    rewrite_zip(package_copy / "client.zip", extra={"versions.json": json.dumps(versions).encode()})
    resign(package_copy)
    with pytest.raises(VersionError, match=r"concrete-ml 1\.8\.0.*concrete-ml 1\.9\.0"):
        ModelPackage.load(package_copy)
    assert manifest["versions"]["concrete-ml"] == "1.9.0"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(format="something-else"), "is not a fhe-audit/model-package"),
        (lambda m: m.update(schema_version=99), "schema version 99"),
        (lambda m: m.pop("class_names"), "'class_names' is missing"),
        (lambda m: m.update(fingerprint="0" * 64), "fingerprint does not match"),
        (lambda m: m["input_schema"]["preprocessing"].append({"op": "exec", "column": "x"}),
         "Unknown preprocessing op"),
        (lambda m: m.update(output_kind="code"), "unknown output_kind"),
    ],
)
def test_malformed_manifest_is_refused(package_copy, edit, message):
    manifest = json.loads((package_copy / MANIFEST).read_text())
    edit(manifest)
    (package_copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=message):
        ModelPackage.load(package_copy)


def test_manifest_that_is_not_json(package_copy):
    (package_copy / MANIFEST).write_bytes(b"\x00\x01 not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        ModelPackage.load(package_copy)


def test_tampered_zip_fails_its_hash(package_copy):
    with open(package_copy / "client.zip", "ab") as handle:
        handle.write(b"\x00")
    with pytest.raises(IntegrityError, match=r"client\.zip does not match its manifest"):
        ModelPackage.load(package_copy)


def test_manifest_naming_a_file_outside_the_folder(tmp_path, audited):
    enc = copy_tree(audited.encrypted.path, tmp_path / "enc")
    manifest = json.loads((enc / MANIFEST).read_text())
    manifest["files"]["../../etc/passwd"] = "0" * 64
    (enc / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError):
        EncryptedBenchmark.load(enc)


def test_configuration_may_not_name_arbitrary_classes(fast_package):
    raw = read_member(fast_package.server_zip, "configuration.json")
    assert load_configuration(raw).p_error is not None
    evil = json.loads(raw)
    evil["approximate_rounding_config"] = {"py/object": "os.system", "command": "true"}
    with pytest.raises(ArtifactError, match=r"disallowed type 'os\.system'"):
        load_configuration(json.dumps(evil).encode())
    evil = json.loads(raw)
    evil["verbose"] = {"py/function": "builtins.eval"}
    with pytest.raises(ArtifactError, match="disallowed tag"):
        load_configuration(json.dumps(evil).encode())


@pytest.mark.parametrize("value", ["-1", "-99999999999", "253402300800", "9" * 25, "1.5",
                                   "1e9", "abc", "\u0663", "+12"])
def test_a_malformed_source_date_epoch_never_breaks_packaging(monkeypatch, value):
    """Out of range (year 10000, before year 1), signed, fractional or non-ASCII digits: the
    current time, as for any malformed setting (year 10000 raised ValueError, 10**25
    OverflowError, and '-1' or Arabic-Indic digits were taken as times)."""
    from datetime import datetime

    from fhe_backend.formats.artifacts import build_time_iso

    monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    assert datetime.fromisoformat(build_time_iso()).year >= 2025
    monkeypatch.setenv("SOURCE_DATE_EPOCH", " 12 ")  # the setting strips whitespace
    assert build_time_iso() == "1970-01-01T00:00:12+00:00"
