"""Hostile artifacts as a publisher could make them: members edited, hashes made consistent."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from fhe_backend.formats.artifacts import (
    CIPHERTEXT_SCHEMA,
    CIPHERTEXTS,
    EVALUATION_KEYS,
    MANIFEST,
    OUTPUTS,
    REPRESENTATION_PREFIX,
    TRANSCRIPT,
    model_fingerprint,
)
from fhe_backend.formats.hashing import content_hash, sha256_file
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
                    sealed_client_specs: dict | None = None,
                    processing: dict | None = None) -> Path:
    """A copy of ``source`` with its circuit, its (sealed) client specs or its
    serialized_processing.json replaced, re-signed."""
    shutil.copytree(source, dest)
    if processing is not None:
        edit_member(dest / "client.zip", "serialized_processing.json",
                    json.dumps(processing).encode("utf-8"))
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


def sparse_evaluation_keys(encrypted: Path, size: int) -> None:
    """Evaluation keys of ``size`` bytes of zeros that take no disk (a sparse file)."""
    path = encrypted / EVALUATION_KEYS
    path.unlink()
    with open(path, "wb") as handle:
        handle.truncate(size)
    manifest = json.loads((encrypted / MANIFEST).read_text())
    manifest["files"][EVALUATION_KEYS] = sha256_file(path)
    (encrypted / MANIFEST).write_text(json.dumps(manifest))


def zeros_parquet(path: Path, sample_ids: list[str], cell_bytes: int) -> str:
    """A ciphertexts/outputs Parquet file whose every cell is ``cell_bytes`` zeros, one row group
    per row, zstd: 64 MiB of zeros compress to ~2 KB. Returns the content hash of its rows."""
    blob = bytes(cell_bytes)
    with pq.ParquetWriter(path, CIPHERTEXT_SCHEMA, compression="zstd",
                          use_dictionary=False) as writer:
        for sample_id in sample_ids:
            writer.write_table(pa.table({"sample_id": [sample_id], "ciphertext": [blob]},
                                        schema=CIPHERTEXT_SCHEMA))
    return content_hash((sample_id, blob) for sample_id in sample_ids)


def bomb_ciphertexts(encrypted: Path, cell_bytes: int) -> None:
    """An encrypted benchmark whose ciphertexts are a compression bomb, with the inputs hash
    and the file hash recomputed as its publisher can."""
    ids = pq.read_table(encrypted / CIPHERTEXTS).column("sample_id").to_pylist()
    manifest = json.loads((encrypted / MANIFEST).read_text())
    manifest["inputs_sha256"] = zeros_parquet(encrypted / CIPHERTEXTS, ids, cell_bytes)
    manifest["files"][CIPHERTEXTS] = sha256_file(encrypted / CIPHERTEXTS)
    (encrypted / MANIFEST).write_text(json.dumps(manifest))


def bomb_outputs(run: Path, cell_bytes: int) -> None:
    """A run whose outputs are a compression bomb, its transcript's hashes (all outputs, each
    sample's) recomputed as the server that wrote it can."""
    transcript = json.loads((run / TRANSCRIPT).read_text())
    ids = [s["sample_id"] for s in transcript["samples"]]
    transcript["outputs_sha256"] = zeros_parquet(run / OUTPUTS, ids, cell_bytes)
    digest = hashlib.sha256(bytes(cell_bytes)).hexdigest()
    for sample in transcript["samples"]:
        sample["output_sha256"] = digest
    (run / TRANSCRIPT).write_text(json.dumps(transcript))


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append(value & 0x7F | (0x80 if value >> 7 else 0))
        value >>= 7
        if not value:
            return bytes(out)


def understate_footer(path: Path, declared: int) -> None:
    """Make a Parquet footer declare ``declared`` uncompressed bytes for every ciphertext
    column chunk, whatever its pages hold: the footer is the writer's word, and Arrow
    allocates what the page headers say."""
    data = path.read_bytes()
    size = int.from_bytes(data[-8:-4], "little")
    footer = data[-8 - size:-8]
    meta = pq.ParquetFile(path).metadata
    for honest in {meta.row_group(g).column(1).total_uncompressed_size
                   for g in range(meta.num_row_groups)}:
        # Thrift compact i64: a zigzag varint (non-negative n is 2n).
        assert _varint(2 * honest) in footer
        footer = footer.replace(_varint(2 * honest), _varint(2 * declared))
    path.write_bytes(data[:-8 - size] + footer + len(footer).to_bytes(4, "little") + b"PAR1")


def nest_page_header(path: Path) -> None:
    """Overwrite the first ciphertext page's header (and what follows, within its column chunk)
    with a field holding a list of lists of lists…: each level is one byte of Thrift."""
    chunk = pq.ParquetFile(path).metadata.row_group(0).column(1)
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    length = chunk.total_compressed_size
    data = bytearray(path.read_bytes())
    data[start:start + length] = (b"\x19" * length)[:length]  # field 1: a list of one list
    path.write_bytes(bytes(data))


def bool_map_page_header(length: int = 32) -> bytes:
    """A page header whose first field is a map of 2^62 bool pairs (Thrift compact): each
    entry should cost a byte; read as fields' bools, they cost none."""
    return (b"\x1b" + _varint(2**62) + b"\x11" + bytes(length))[:max(length, 11)]


def many_groups_table(frame, dest: Path, column: str = "group") -> Path:
    """A CSV of ``frame`` (a benchmark's rows) with a sensitive column holding one group per
    row (an id declared sensitive): fairness would compare every pair of its groups."""
    frame = frame.copy()
    frame[column] = [f"g{i}" for i in range(len(frame))]
    frame.to_csv(dest, index=False)
    return dest


def self_signed_challenge(folder: Path, identity, **fields) -> Path:
    """A challenge.json anyone can make: signed by their own identity, with ``fields`` over a
    well-formed base (a field given as None is left out)."""
    base = {"format": "fhe-audit/challenge", "schema_version": 1, "id": "ch",
            "metric": "accuracy", "policy": "ladder:0.01", "quota": "3/day", "budget": None,
            "benchmark": {"id": "b", "version": 1, "n_samples": 3, "inputs_sha256": "0" * 64},
            "identity": identity.public(), "created_at": "2026-12-06T00:00:00+00:00"}
    data = {k: v for k, v in {**base, **fields}.items() if v is not None}
    folder.mkdir(parents=True)
    (folder / "challenge.json").write_text(json.dumps(identity.sign_document(data)))
    return folder


def parquet_table_bomb(path: Path, mib: int) -> Path:
    """A benchmark-looking Parquet table (label, blob) of a few KB whose pages decompress to
    ``mib`` MiB of zeros, written one 1 MiB row group at a time."""
    blob = bytes(2**20)
    schema = pa.schema([("label", pa.string()), ("blob", pa.binary())])
    with pq.ParquetWriter(path, schema, compression="zstd", use_dictionary=False) as writer:
        for _ in range(mib):
            writer.write_table(pa.table({"label": ["benign"], "blob": [blob]}, schema=schema))
    return path
