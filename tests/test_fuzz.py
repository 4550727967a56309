"""Property-based tests: mutated manifests, zips, Parquet files and CLI arguments never crash
the loaders with anything but the project's own one-sentence errors."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhe_backend.cli import build_parser
from fhe_backend.errors import AuditError
from fhe_backend.formats.artifacts import (
    CIPHERTEXTS,
    MANIFEST,
    EncryptedBenchmark,
    ModelPackage,
    read_ciphertexts,
)
from fhe_backend.untrusted.safezip import check_zip

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)


def mutate_bytes(data: bytes, draw_positions: list[int], values: list[int]) -> bytes:
    out = bytearray(data)
    for pos, val in zip(draw_positions, values, strict=False):
        if out:
            out[pos % len(out)] = val
    return bytes(out)


@pytest.fixture(scope="module")
def workdir(fast_package, audited):
    root = Path(tempfile.mkdtemp(prefix="fuzz-"))
    yield root, fast_package.path, audited.encrypted.path
    shutil.rmtree(root, ignore_errors=True)


def fresh(src: Path, root: Path) -> Path:
    dst = Path(tempfile.mkdtemp(dir=root))
    shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst


@FUZZ
@given(key=st.sampled_from(["format", "schema_version", "model_id", "class_names", "output_kind",
                            "input_schema", "files", "fingerprint", "versions", "metrics"]),
       value=json_values)
def test_model_manifest_fields(workdir, key, value):
    root, package, _ = workdir
    folder = fresh(package, root)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest[key] = value
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with contextlib.suppress(AuditError):
        ModelPackage.load(folder)


@FUZZ
@given(data=st.binary(max_size=2048))
def test_random_manifest_bytes(workdir, data):
    root, _, encrypted = workdir
    folder = fresh(encrypted, root)
    (folder / MANIFEST).write_bytes(data)
    with pytest.raises(AuditError):
        EncryptedBenchmark.load(folder)


@FUZZ
@given(positions=st.lists(st.integers(min_value=0), min_size=1, max_size=8),
       values=st.lists(st.integers(min_value=0, max_value=255), min_size=1, max_size=8),
       which=st.sampled_from(["client.zip", "server.zip"]))
def test_mutated_zips(workdir, positions, values, which):
    root, package, _ = workdir
    src = package / which
    target = Path(tempfile.mkdtemp(dir=root)) / which
    target.write_bytes(mutate_bytes(src.read_bytes(), positions, values))
    with contextlib.suppress(AuditError):
        check_zip(target)


@FUZZ
@given(names=st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=5),
       payload=st.binary(max_size=64))
def test_random_zip_members(workdir, names, payload):
    root, _, _ = workdir
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in dict.fromkeys(names):
            try:
                archive.writestr(name, payload)
            except (ValueError, UnicodeEncodeError, IndexError):  # names zipfile cannot write
                continue
    target = Path(tempfile.mkdtemp(dir=root)) / "server.zip"
    target.write_bytes(buffer.getvalue())
    with pytest.raises(AuditError):
        check_zip(target)


@FUZZ
@given(positions=st.lists(st.integers(min_value=0), min_size=1, max_size=6),
       values=st.lists(st.integers(min_value=0, max_value=255), min_size=1, max_size=6))
def test_mutated_parquet(workdir, positions, values):
    root, _, encrypted = workdir
    target = Path(tempfile.mkdtemp(dir=root)) / CIPHERTEXTS
    target.write_bytes(mutate_bytes((encrypted / CIPHERTEXTS).read_bytes(), positions, values))
    with contextlib.suppress(AuditError):
        read_ciphertexts(target, "fuzz")


@FUZZ
@given(argv=st.lists(st.sampled_from(
    ["audit", "run", "verify", "--model", "--limit", "0", "-1", "x", "--json", "--fhe", "simulate",
     "bogus", "--keys", "", "--benchmark"]), max_size=6))
def test_cli_arguments_parse_or_exit_cleanly(argv):
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse's usage error: exit code 2 with a message
        assert exc.code in (0, 2)


def nested(depth: int, kind: str) -> str:
    """A JSON document ``depth`` levels deep, of lists or of objects."""
    if kind == "list":
        return "[" * depth + "]" * depth
    return '{"a": ' * depth + "1" + "}" * depth


@FUZZ
@given(depth=st.integers(min_value=1_000, max_value=200_000),
       kind=st.sampled_from(["list", "object"]), which=st.sampled_from(["model", "encrypted"]))
def test_deeply_nested_manifests(workdir, depth, kind, which):
    root, package, encrypted = workdir
    folder = fresh(package if which == "model" else encrypted, root)
    (folder / MANIFEST).write_text(nested(depth, kind))
    with pytest.raises(AuditError):
        (ModelPackage if which == "model" else EncryptedBenchmark).load(folder)


@FUZZ
@given(digits=st.integers(min_value=4_301, max_value=60_000),
       key=st.sampled_from(["schema_version", "n_samples", "huge"]),
       which=st.sampled_from(["model", "encrypted"]))
def test_huge_integers_in_manifests(workdir, digits, key, which):
    root, package, encrypted = workdir
    folder = fresh(package if which == "model" else encrypted, root)
    text = (folder / MANIFEST).read_text()
    (folder / MANIFEST).write_text(text.replace("{", '{"' + key + '": ' + "7" * digits + ", ",
                                                1))
    with pytest.raises(AuditError):
        (ModelPackage if which == "model" else EncryptedBenchmark).load(folder)
