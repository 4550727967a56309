"""The three public artifact formats: model package, encrypted benchmark, run directory.

Each is a folder with a JSON manifest naming its format, schema version, the Concrete versions
that made it and the SHA-256 of every file. Loading validates all of that before any byte is
handed to Concrete. None of these folders ever holds a secret key or plaintext.

    model package        manifest.json  client.zip  server.zip
    encrypted benchmark  manifest.json  ciphertexts.parquet  evaluation_keys.bin
    run directory        transcript.json  outputs.parquet
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any, ClassVar, get_origin, get_type_hints

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import settings
from ..errors import ArtifactError, IntegrityError, MismatchError, VersionError
from ..untrusted.keyset import KEYS_FRAMING_BYTES, MAX_KEYS_BYTES
from ..untrusted.safezip import check_zip, read_member
from . import atomic
from .hashing import content_hash, sha256_bytes, sha256_file, sha256_files
from .pages import PageError, declared_uncompressed_bytes
from .schema import InputSchema

SCHEMA_VERSION = 1
MODEL_FORMAT = "fhe-audit/model-package"
BENCHMARK_FORMAT = "fhe-audit/encrypted-benchmark"
RUN_FORMAT = "fhe-audit/run"

MANIFEST = "manifest.json"
CIPHERTEXTS = "ciphertexts.parquet"
EVALUATION_KEYS = "evaluation_keys.bin"
TRANSCRIPT = "transcript.json"
OUTPUTS = "outputs.parquet"
PACKAGE_ZIPS = ("client.zip", "server.zip")
SEALED_ZIPS = ("sealed_client.zip", "sealed_server.zip")
# A published hidden layer (owner/package.py build_representations; formats/layers.py) is a
# circuit of its own, in two zips named after the layer; "-" separates the name's parts, so a
# layer name has none. Benchmarks and runs name its circuit "representation:<layer>".
REPRESENTATION_PREFIX = "representation-"
LAYER_NAME = re.compile(r"[A-Za-z0-9_.]{1,64}")


LAYER_CIRCUIT_PREFIX = "representation:"


def layer_of(circuit: str) -> str | None:
    """The layer a benchmark's or run's circuit name stands for, or None (the model's circuit,
    the sealed one, or a malformed name)."""
    if not circuit.startswith(LAYER_CIRCUIT_PREFIX):
        return None
    layer = circuit[len(LAYER_CIRCUIT_PREFIX):]
    return layer if LAYER_NAME.fullmatch(layer) else None


def representation_zips(layer: str) -> tuple[str, str]:
    """The client and server zips of the representation circuit of ``layer``."""
    return (f"{REPRESENTATION_PREFIX}{layer}-client.zip",
            f"{REPRESENTATION_PREFIX}{layer}-server.zip")

# Bounds for data from untrusted sources, before the circuit is known (untrusted/keyset.py
# holds the circuit's own, tighter ones). A 30-feature input ciphertext is ~1 KB, an output of
# a 10-class circuit ~160 KB, a sealed batch of the zoo's largest circuit ~54 MB.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_CIPHERTEXT_BYTES = 64 * 1024 * 1024
MAX_SAMPLES = 100_000

CIPHERTEXT_SCHEMA = pa.schema([("sample_id", pa.string()), ("ciphertext", pa.binary())])


def installed_versions() -> dict[str, str]:
    return {
        "concrete-ml": version("concrete-ml"),
        "concrete-python": version("concrete-python"),
        "python": platform.python_version(),
        "fhe-audit-schema": str(SCHEMA_VERSION),
    }


def check_versions(found: dict[str, str], what: str) -> None:
    """Concrete refuses artifacts of another concrete-ml/concrete-python: say so in one line."""
    mine = installed_versions()
    for package in ("concrete-ml", "concrete-python"):
        theirs = found.get(package)
        if theirs != mine[package]:
            raise VersionError(
                f"{what} was made with {package} {theirs}, but this install has "
                f"{package} {mine[package]}; both sides must use the same version."
            )


def check_concrete_zip(path: Path, what: str) -> None:
    """A client.zip/server.zip: safe members, and made by this install's Concrete versions."""
    check_zip(path)
    try:
        found = json.loads(read_member(path, "versions.json"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{what}: {path.name} has an unreadable versions.json.") from exc
    check_versions(found if isinstance(found, dict) else {}, f"{what} ({path.name})")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def build_time_iso() -> str:
    """When a package was built: $SOURCE_DATE_EPOCH when it holds a time (reproducible
    builds), else now. As the standard says, the value is ASCII digits (no sign, no fraction);
    anything else, or a time past year 9999, is ignored like any malformed setting."""
    text = settings.SOURCE_DATE_EPOCH.text()
    if not (text.isascii() and text.isdigit()):
        return now_iso()
    try:
        return datetime.fromtimestamp(int(text), UTC).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return now_iso()


def machine_info() -> dict[str, Any]:
    return {"platform": platform.platform(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "python": sys.version.split()[0]}


# --------------------------------------------------------------------------------------------
# JSON and Parquet I/O


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically, so a crash never leaves half a manifest."""
    atomic.write_bytes(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())


def read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise ArtifactError(f"{what} has no {path.name} (looked in {path.parent}).")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ArtifactError(f"{what}: {path.name} is too large to be a manifest.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{what}: {path.name} is not valid JSON ({exc}).") from exc
    except RecursionError as exc:
        raise ArtifactError(f"{what}: {path.name} is nested too deeply to be a manifest.") from exc
    except ValueError as exc:  # an integer over Python's 4,300-digit conversion limit
        raise ArtifactError(f"{what}: {path.name} holds a number too large to read.") from exc
    if not isinstance(data, dict):
        raise ArtifactError(f"{what}: {path.name} is not a JSON object.")
    return data


def write_ciphertexts(path: Path, rows: Iterable[tuple[str, bytes]]) -> None:
    """Write rows in row groups of 64, taken from ``rows`` as they come: a generator (a run's
    outputs read back one by one) is never held whole in memory."""
    with atomic.replacing(path) as tmp, pq.ParquetWriter(tmp, CIPHERTEXT_SCHEMA,
                                                        compression="zstd") as writer:
        group: list[tuple[str, bytes]] = []
        written = False
        for row in rows:
            group.append(row)
            if len(group) == _ROW_GROUP:
                writer.write_table(_ciphertext_table(group))
                group, written = [], True
        if group or not written:  # an empty file still has its schema
            writer.write_table(_ciphertext_table(group))


# Small row groups keep memory bounded when ciphertexts are hundreds of KB each.
_ROW_GROUP = 64


def _ciphertext_table(rows: list[tuple[str, bytes]]) -> pa.Table:
    return pa.table({"sample_id": [r[0] for r in rows], "ciphertext": [r[1] for r in rows]},
                    schema=CIPHERTEXT_SCHEMA)


def read_ciphertexts(path: Path, what: str, max_cell_bytes: int = MAX_CIPHERTEXT_BYTES,
                     max_rows: int = MAX_SAMPLES) -> list[tuple[str, bytes]]:
    """The (sample id, ciphertext) rows of a Parquet file someone else wrote.

    A few KB of zstd can hold gigabytes of zeros, so nothing is decompressed before the file's
    own metadata passes: the row count (at most ``max_rows``: the samples its manifest or
    transcript names), and each column chunk's uncompressed size against its rows times
    ``max_cell_bytes`` (callers that know the circuit pass its exact ciphertext size), both as
    the footer declares it and as its page headers do (Arrow allocates what those say; a footer
    can lie). Row groups are then read one at a time, dictionaries kept as such, and every
    value's length checked before any is copied out.
    """
    try:
        # Dictionary-encoded columns stay dictionaries: one value of a large dictionary
        # repeated on every row would otherwise be copied once per row.
        parquet = pq.ParquetFile(path, read_dictionary=["sample_id", "ciphertext"])
        groups = _check_parquet_metadata(parquet.metadata, path, what, max_cell_bytes,
                                         min(max_rows, MAX_SAMPLES))
        rows: list[tuple[str, bytes]] = []
        for group in groups:
            table = parquet.read_row_group(group, columns=["sample_id", "ciphertext"])
            rows += _checked_rows(table, path, what, max_cell_bytes)
    except (pa.ArrowException, OSError) as exc:
        raise ArtifactError(f"{what}: {path.name} is not a readable Parquet file ({exc}).") from exc
    if len({sample_id for sample_id, _ in rows}) != len(rows):
        raise ArtifactError(f"{what}: {path.name} lists a sample id twice.")
    return rows


# A sample id is a short name ("s00042", a hash at most); with Parquet's length prefixes.
_MAX_SAMPLE_ID_BYTES = 1024


def _check_parquet_metadata(meta: pq.FileMetaData, path: Path, what: str,
                            max_cell_bytes: int, max_rows: int) -> range:
    schema = meta.schema.to_arrow_schema()
    if schema.names[:2] != ["sample_id", "ciphertext"] or not (
        pa.types.is_string(schema.field("sample_id").type)
        and pa.types.is_binary(schema.field("ciphertext").type)
    ):
        raise ArtifactError(
            f"{what}: {path.name} must have columns sample_id (string) and ciphertext (binary)."
        )
    if meta.num_rows > max_rows:
        raise ArtifactError(f"{what}: {path.name} holds {meta.num_rows} rows, over the "
                            f"{max_rows} samples it may hold.")
    counted = 0
    with open(path, "rb") as stream:
        for group in range(meta.num_row_groups):
            info = meta.row_group(group)
            counted += info.num_rows
            for column, cell in ((0, _MAX_SAMPLE_ID_BYTES), (1, max_cell_bytes)):
                chunk = info.column(column)
                start = (chunk.dictionary_page_offset if chunk.has_dictionary_page
                         and chunk.dictionary_page_offset else chunk.data_page_offset)
                try:
                    declared = max(chunk.total_uncompressed_size, declared_uncompressed_bytes(
                        stream, start, chunk.total_compressed_size, info.num_rows + 2))
                except PageError as exc:
                    raise ArtifactError(f"{what}: {path.name} is not a readable Parquet file "
                                        f"({exc}).") from exc
                # Each value is prefixed by its 4-byte length; a page adds a few bytes more.
                if declared > info.num_rows * (cell + 4) + 4096 or (
                        chunk.num_values > info.num_rows):
                    raise ArtifactError(
                        f"{what}: {path.name} declares {declared:,} bytes for {info.num_rows} "
                        f"{chunk.path_in_schema} value(s), each at most {cell:,} bytes for "
                        "this circuit; it is refused before decompression.")
    if counted != meta.num_rows:
        raise ArtifactError(f"{what}: {path.name}'s row groups do not add up to its row count.")
    return range(meta.num_row_groups)


def _checked_rows(table: pa.Table, path: Path, what: str, max_cell_bytes: int,
                  ) -> list[tuple[str, bytes]]:
    for name, bound in (("sample_id", _MAX_SAMPLE_ID_BYTES), ("ciphertext", max_cell_bytes)):
        for chunk in table.column(name).chunks:
            values = chunk.dictionary if pa.types.is_dictionary(chunk.type) else chunk
            longest = pc.max(pc.binary_length(values)).as_py() if len(values) else None
            if longest is not None and longest > bound:
                raise ArtifactError(f"{what}: {path.name} holds a {name} of {longest:,} bytes, "
                                    f"over the {bound:,} it may take for this circuit.")
    ids = table.column("sample_id").to_pylist()
    blobs = table.column("ciphertext").to_pylist()
    if any(i is None for i in ids) or any(b is None for b in blobs):
        raise ArtifactError(f"{what}: {path.name} has empty sample ids or ciphertexts.")
    return list(zip(ids, blobs, strict=True))


def check_files(folder: Path, files: dict[str, str], what: str) -> None:
    """Every listed file exists and has the SHA-256 its manifest claims."""
    for name, expected in files.items():
        if "/" in name or "\\" in name or name.startswith("."):
            raise ArtifactError(f"{what}: manifest names an unsafe file {name!r}.")
        path = folder / name
        if not path.is_file():
            raise ArtifactError(f"{what} is missing {name}.")
        actual = sha256_file(path)
        if actual != expected:
            raise IntegrityError(
                f"{what}: {name} does not match its manifest (SHA-256 {actual[:12]}…, expected "
                f"{str(expected)[:12]}…); the file is corrupted or was tampered with."
            )


def _require(data: dict[str, Any], fmt: str, what: str) -> None:
    if data.get("format") != fmt:
        raise ArtifactError(f"{what} is not a {fmt} (format {data.get('format')!r}).")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise VersionError(
            f"{what} uses schema version {data.get('schema_version')!r}; this install reads "
            f"version {SCHEMA_VERSION}."
        )


def parse_fields(cls: type, data: dict[str, Any], what: str, **parsed: Any) -> Any:
    """Build a manifest dataclass from untrusted JSON, checking each field's type.

    Fields parsed by the caller come in ``parsed``; a required field that is missing or of the
    wrong type is an error; an optional one falls back to its default.
    """
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for item in fields(cls):
        if item.name in parsed:
            values[item.name] = parsed[item.name]
            continue
        kind = get_origin(hints[item.name]) or hints[item.name]
        accepted = (int, float) if kind is float else kind
        value = data.get(item.name)
        if isinstance(value, accepted) and not isinstance(value, bool):
            values[item.name] = float(value) if kind is float else value
        elif item.default is MISSING and item.default_factory is MISSING:
            raise ArtifactError(f"{what}: manifest field {item.name!r} is missing or malformed.")
    return cls(**values)


# --------------------------------------------------------------------------------------------
# Model package


@dataclass
class ModelManifest:
    model_id: str
    task: str
    class_names: list[str]
    output_kind: str  # "probabilities" (built-ins post-process) or "logits" (torch modules)
    input_schema: InputSchema
    compile_settings: dict[str, Any]
    versions: dict[str, str]
    files: dict[str, str]
    fingerprint: str
    metrics: dict[str, Any]
    circuit: dict[str, Any]
    description: str = ""
    dataset: str = ""
    license: str = ""
    measured: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    # The optional sealed audit circuit (fhe_backend/sealed/circuit.py): its layout and figures, or
    # {"refused": reason}; its zips are listed in ``files`` and covered by the fingerprint.
    sealed: dict[str, Any] = field(default_factory=dict)
    # Hidden layers the owner publishes (formats/layers.py): layer name ->
    # its width, PBS count and key sizes; each layer's two zips are listed in ``files`` and
    # covered by the fingerprint.
    representations: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_schema"] = self.input_schema.to_dict()
        return {"format": MODEL_FORMAT, "schema_version": SCHEMA_VERSION, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any], what: str) -> ModelManifest:
        _require(data, MODEL_FORMAT, what)
        manifest = parse_fields(cls, data, what, input_schema=InputSchema.from_dict(
            data.get("input_schema") if isinstance(data.get("input_schema"), dict) else {}))
        layers = manifest.representations
        if not all(isinstance(k, str) and LAYER_NAME.fullmatch(k) and isinstance(v, dict)
                   for k, v in layers.items()):
            raise ArtifactError(f"{what}: manifest field 'representations' is malformed.")
        stock = {"client.zip", "server.zip",
                 *(name for layer in layers for name in representation_zips(layer))}
        if set(manifest.files) not in (stock, stock | set(SEALED_ZIPS)):
            raise ArtifactError(f"{what}: manifest must list exactly client.zip and server.zip "
                                "(and, with a sealed circuit or published layers, their two "
                                "zips each).")
        manifest.class_names = [str(c) for c in manifest.class_names]
        if len(manifest.class_names) < 2:
            raise ArtifactError(f"{what}: a classifier needs at least two class names.")
        if manifest.output_kind not in ("probabilities", "logits"):
            raise ArtifactError(f"{what}: unknown output_kind {manifest.output_kind!r}.")
        manifest.measured = _measured(manifest.measured)
        return manifest


# The owner's measured figures that pages compute with: a number each, finite and not negative.
MEASURED_NUMBERS = ("fhe_s_per_sample", "keygen_s", "n_samples", "evaluation_keys_bytes",
                    "input_bytes_per_sample")


def _measured(measured: dict[str, Any]) -> dict[str, Any]:
    """The owner's ``measured`` figures without the malformed ones: a Hub package's manifest is
    anyone's JSON, and a string for ``keygen_s`` broke the Space's estimate and model card (a
    negative time estimated a run at -37 s); ``machine`` must be a mapping."""

    def fits(key: str, value: Any) -> bool:
        if key in MEASURED_NUMBERS:
            return (isinstance(value, int | float) and not isinstance(value, bool)
                    and math.isfinite(value) and value >= 0)
        if key == "machine":
            return isinstance(value, dict)
        return not (key == "measured_at" and not isinstance(value, str))

    return {key: value for key, value in measured.items() if fits(key, value)}


@dataclass
class ModelPackage:
    """A validated model package on disk (what the model owner publishes)."""

    path: Path
    manifest: ModelManifest
    # The function of server.zip that evaluates one item of an encrypted benchmark: None for a
    # one-function circuit (the sealed view names its module's ``count``).
    function: ClassVar[str | None] = None

    @property
    def client_zip(self) -> Path:
        return self.path / "client.zip"

    @property
    def server_zip(self) -> Path:
        return self.path / "server.zip"

    @property
    def fingerprint(self) -> str:
        return self.manifest.fingerprint

    @property
    def model_id(self) -> str:
        return self.manifest.model_id

    @property
    def semantics_sha256(self) -> str:
        return model_semantics(self.manifest)

    @classmethod
    def load(cls, path: Path) -> ModelPackage:
        path = Path(path)
        what = f"Model package {path}"
        if not path.is_dir():
            raise ArtifactError(f"{what} is not a directory.")
        manifest = ModelManifest.from_dict(read_json(path / MANIFEST, what), what)
        check_files(path, manifest.files, what)
        fingerprint = model_fingerprint(path)
        if fingerprint != manifest.fingerprint:
            raise IntegrityError(f"{what}: its fingerprint does not match client.zip + server.zip.")
        for name in manifest.files:
            check_concrete_zip(path / name, what)
        check_versions(manifest.versions, what)
        return cls(path=path, manifest=manifest)


def write_model_manifest(out_dir: Path, **fields: Any) -> ModelPackage:
    """Write the manifest of the client.zip + server.zip in ``out_dir`` (``fields`` describe
    the model; hashes, fingerprint, versions and time are added here) and load the package
    back, so that what was written is what any auditor's load accepts."""
    manifest = ModelManifest(
        task="classification",
        versions=installed_versions(),
        files={path.name: sha256_file(path) for path in _circuit_zips(out_dir)},
        fingerprint=model_fingerprint(out_dir),
        created_at=build_time_iso(),
        **fields,
    )
    write_json(out_dir / MANIFEST, manifest.to_dict())
    return ModelPackage.load(out_dir)


def model_fingerprint(path: Path) -> str:
    """SHA-256 over client.zip then server.zip (then the sealed circuit's zips, then each
    published layer's, when the package has them): names the exact compiled model and
    everything that may run on its inputs."""
    return sha256_files(_circuit_zips(path))


def _circuit_zips(path: Path) -> list[Path]:
    """Every circuit zip of the package in ``path``, in the fingerprint's order. Layers are
    found on disk, not in the manifest: a zip added beside the package changes the fingerprint."""
    optional = [path / name for name in SEALED_ZIPS if (path / name).is_file()]
    layers = sorted(path.glob(f"{REPRESENTATION_PREFIX}*-*.zip"))
    return [path / "client.zip", path / "server.zip", *optional, *layers]


def model_semantics(manifest: ModelManifest) -> str:
    """SHA-256 of the manifest fields that say what an output means: the task, the class names
    in order, the output kind and the input schema with its preprocessing.

    The fingerprint names the circuit; this names how its inputs are made and its outputs read.
    A copy of a package with its class names reversed keeps the fingerprint but not this, and
    every artifact made for the original (encrypted benchmark, run, auditor ledger) records it.
    """
    meaning = {"task": manifest.task, "class_names": list(manifest.class_names),
               "output_kind": manifest.output_kind,
               "input_schema": manifest.input_schema.to_dict()}
    canonical = json.dumps(meaning, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return sha256_bytes(b"fhe-audit/model-semantics/v1\n" + canonical.encode("ascii"))


# --------------------------------------------------------------------------------------------
# Encrypted benchmark


@dataclass
class BenchmarkManifest:
    benchmark_id: str
    benchmark_version: str
    model_id: str
    model_fingerprint: str
    key_fingerprint: str
    keyset_id: str
    inputs_sha256: str
    n_samples: int
    files: dict[str, str]
    versions: dict[str, str]
    created_at: str = ""
    # What the outputs mean (see model_semantics); empty in benchmarks made before it existed.
    model_semantics_sha256: str = ""
    # "model" (one sample per ciphertext), "sealed" (batches for the sealed audit circuit) or
    # "representation:<layer>" (one sample per ciphertext, for a published layer's circuit).
    circuit: str = "model"
    batch_size: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"format": BENCHMARK_FORMAT, "schema_version": SCHEMA_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], what: str) -> BenchmarkManifest:
        _require(data, BENCHMARK_FORMAT, what)
        # Benchmark versions may be written as numbers; they are compared as text.
        version_ = data.get("benchmark_version")
        parsed = {"benchmark_version": str(version_)} if isinstance(version_, str | int) else {}
        manifest = parse_fields(cls, data, what, **parsed)
        if set(manifest.files) != {CIPHERTEXTS, EVALUATION_KEYS}:
            raise ArtifactError(f"{what}: manifest must list {CIPHERTEXTS} and {EVALUATION_KEYS}.")
        if manifest.circuit not in ("model", "sealed") and layer_of(manifest.circuit) is None:
            raise ArtifactError(f"{what}: unknown circuit {manifest.circuit!r}.")
        return manifest


@dataclass
class EncryptedBenchmark:
    """A validated encrypted benchmark: ciphertexts + evaluation keys, no secret, no plaintext."""

    path: Path
    manifest: BenchmarkManifest

    @property
    def evaluation_keys_path(self) -> Path:
        return self.path / EVALUATION_KEYS

    @classmethod
    def load(cls, path: Path) -> EncryptedBenchmark:
        path = Path(path)
        what = f"Encrypted benchmark {path}"
        if not path.is_dir():
            raise ArtifactError(f"{what} is not a directory.")
        manifest = BenchmarkManifest.from_dict(read_json(path / MANIFEST, what), what)
        if (path / EVALUATION_KEYS).is_file() and (
            (path / EVALUATION_KEYS).stat().st_size > MAX_KEYS_BYTES + KEYS_FRAMING_BYTES
        ):
            raise ArtifactError(f"{what}: the evaluation keys exceed the size limit.")
        check_files(path, manifest.files, what)
        return cls(path=path, manifest=manifest)

    def ciphertexts(self, max_cell_bytes: int = MAX_CIPHERTEXT_BYTES) -> list[tuple[str, bytes]]:
        """The input ciphertexts; ``max_cell_bytes``: the circuit's input size, when known."""
        what = f"Encrypted benchmark {self.path}"
        rows = read_ciphertexts(self.path / CIPHERTEXTS, what, max_cell_bytes,
                                self.manifest.n_samples)
        if len(rows) != self.manifest.n_samples:
            raise ArtifactError(f"{what}: manifest says {self.manifest.n_samples} samples, "
                                f"the file holds {len(rows)}.")
        return rows

    def check_model(self, package: ModelPackage) -> None:
        if self.manifest.model_fingerprint != package.fingerprint:
            raise MismatchError(
                f"Benchmark {self.manifest.benchmark_id!r} was encrypted for model "
                f"{self.manifest.model_id!r} "
                f"(fingerprint {self.manifest.model_fingerprint[:12]}…), "
                f"not for {package.model_id!r} (fingerprint {package.fingerprint[:12]}…)."
            )
        recorded = self.manifest.model_semantics_sha256
        if recorded and recorded != package.semantics_sha256:
            raise MismatchError(
                f"Benchmark {self.manifest.benchmark_id!r} was encrypted for a model package "
                f"whose class names, output kind or input schema differ from those of "
                f"{package.model_id!r} in {package.path}: same circuit, other meaning."
            )

    def check_inputs(self, rows: list[tuple[str, bytes]]) -> None:
        """The ciphertexts are the ones the manifest's inputs hash names."""
        if content_hash(rows) != self.manifest.inputs_sha256:
            raise IntegrityError(
                f"Encrypted benchmark {self.path}: its ciphertexts do not hash to the manifest's "
                "inputs_sha256; they were altered or replaced."
            )


# --------------------------------------------------------------------------------------------
# Run directory


@dataclass
class SampleRecord:
    sample_id: str
    seconds: float
    output_sha256: str | None = None  # None when the sample failed
    error: str | None = None
    # Who evaluated the sample and when (UTC, ISO 8601); absent in transcripts written before.
    worker: str | None = None  # "local:PID" in-process, a Dask worker's address otherwise
    started_at: str | None = None
    finished_at: str | None = None


@dataclass
class Transcript:
    model_id: str
    model_fingerprint: str
    benchmark_id: str
    key_fingerprint: str
    keyset_id: str
    inputs_sha256: str
    evaluation_keys_sha256: str
    outputs_sha256: str
    mode: str
    n_samples: int
    n_failed: int
    total_s: float
    fhe_s_per_sample: float
    samples: list[SampleRecord]
    versions: dict[str, str]
    machine: dict[str, Any]
    started_at: str
    finished_at: str
    sources: dict[str, Any] = field(default_factory=dict)
    model_semantics_sha256: str = ""  # see model_semantics; empty in older transcripts
    circuit: str = "model"  # "sealed": the samples are batches, the output their total
    # A sealed run's one published output (see sealed/circuit.py): the module function that
    # made it, the hashes along the chain of additions, its hash, and the noise mechanism (never
    # the noise). The per-batch outputs are hashed in ``samples`` but never published.
    total: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"format": RUN_FORMAT, "schema_version": SCHEMA_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], what: str) -> Transcript:
        _require(data, RUN_FORMAT, what)
        samples = data.get("samples")
        try:
            records = [SampleRecord(**s) for s in samples] if isinstance(samples, list) else None
        except TypeError as exc:
            raise ArtifactError(f"{what}: malformed per-sample records.") from exc
        # Each record's fields are compared, hashed and sorted later: a list or a number where a
        # string belongs would end in a traceback there.
        if records is not None and not all(
                isinstance(r.sample_id, str) and isinstance(r.seconds, int | float)
                and all(isinstance(v, str | None) for v in (
                    r.output_sha256, r.error, r.worker, r.started_at, r.finished_at))
                for r in records):
            raise ArtifactError(f"{what}: malformed per-sample records.")
        if records is None:
            raise ArtifactError(f"{what}: manifest field 'samples' is missing or malformed.")
        return parse_fields(cls, data, what, samples=records)


TOTAL_ID = "total"  # the id of a sealed run's one output row


@dataclass
class RunResult:
    """A finished run directory: encrypted outputs and their transcript."""

    path: Path
    transcript: Transcript

    @classmethod
    def load(cls, path: Path) -> RunResult:
        path = Path(path)
        what = f"Run {path}"
        if not path.is_dir():
            raise ArtifactError(f"{what} is not a directory.")
        transcript = Transcript.from_dict(read_json(path / TRANSCRIPT, what), what)
        if not (path / OUTPUTS).is_file():
            raise ArtifactError(f"{what} has no {OUTPUTS}: the run did not finish.")
        return cls(path=path, transcript=transcript)

    def outputs(self, check: bool = True, max_cell_bytes: int = MAX_CIPHERTEXT_BYTES,
                ) -> list[tuple[str, bytes]]:
        """The encrypted outputs; by default refuses them unless they agree with the transcript
        (see :meth:`problems`). ``max_cell_bytes``: the circuit's output size, when known."""
        rows = read_ciphertexts(self.path / OUTPUTS, f"Run {self.path}", max_cell_bytes,
                                1 if self.transcript.total else len(self.transcript.samples))
        if check:
            problems = self.problems(rows)
            if problems:
                raise IntegrityError(f"Run {self.path}: {problems[0]}")
        return rows

    def problems(self, rows: list[tuple[str, bytes]]) -> list[str]:
        """Where the transcript and ``rows`` (its outputs) disagree: the outputs hash, and each
        sample's record against its output, once each; empty when they agree."""
        t = self.transcript
        if content_hash(rows) != t.outputs_sha256:
            return [f"{OUTPUTS} does not match the outputs hash in its transcript; the outputs "
                    "are corrupted or were tampered with."]
        problems = []
        ids = [r.sample_id for r in t.samples]
        if len(set(ids)) != len(ids):
            problems.append(f"the transcript lists {len(ids) - len(set(ids))} sample(s) twice")
        failed = sum(1 for r in t.samples if r.error)
        if t.n_samples != len(ids) or t.n_failed != failed:
            problems.append(f"the transcript counts {t.n_samples} samples ({t.n_failed} failed) "
                            f"but records {len(ids)} ({failed} failed)")
        if t.total:  # a sealed run publishes its total only, never a batch's output
            published = [(s, sha256_bytes(b)) for s, b in rows]
            if published != [(TOTAL_ID, t.total.get("output_sha256"))]:
                problems.append(f"{OUTPUTS} is not the one total its transcript records")
            return problems
        expected = {r.sample_id: r.output_sha256 for r in t.samples if not r.error}
        found = {sample_id: sha256_bytes(blob) for sample_id, blob in rows}
        unknown = [s for s in found if s not in expected]
        missing = [s for s in expected if s not in found]
        wrong = [s for s in expected if s in found and found[s] != expected[s]]
        for ids_, text in ((unknown, "has outputs the transcript does not record"),
                           (missing, "lacks outputs the transcript records"),
                           (wrong, "has outputs whose hash is not the transcript's")):
            if ids_:
                problems.append(f"{OUTPUTS} {text}: {len(ids_)} sample(s), e.g. {ids_[0]!r}")
        return problems

    def coverage(self, expected_ids: list[str]) -> str | None:
        """Whether the run holds each of ``expected_ids`` (the samples of the benchmark it
        claims) exactly once and nothing else; one sentence naming the counts if not."""
        ids = [r.sample_id for r in self.transcript.samples]
        expected = set(expected_ids)
        seen = set(ids)
        unknown = len(seen - expected)
        missing = len(expected - seen)
        repeated = len(ids) - len(seen)
        if not (unknown or missing or repeated):
            return None
        parts = [f"{missing} missing"] if missing else []
        parts += [f"{unknown} not in the benchmark"] if unknown else []
        parts += [f"{repeated} repeated"] if repeated else []
        return (f"the run holds {len(ids)} sample records for an encrypted benchmark of "
                f"{len(expected)} samples ({', '.join(parts)}); it is incomplete or padded")

    def iter_samples(self) -> Iterator[SampleRecord]:
        return iter(self.transcript.samples)
