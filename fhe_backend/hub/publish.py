"""Publishing artifacts to the Hub: build exactly the folder that is uploaded, never a secret.

Each command builds one folder (kept with ``--out``; ``--dry-run`` stops there) and uploads it
as is with ``create_repo(exist_ok=True)`` + ``upload_folder``::

    publish-model      model repo    README.md  manifest.json  client.zip  server.zip
    publish-benchmark  dataset repo  README.md  manifest.json  ciphertexts.parquet
                                     evaluation_keys.bin
    publish-run        dataset repo  README.md  transcript.json  outputs.parquet  [metrics.json]

Files keep their local names, so a downloaded snapshot is a local artifact folder as is (no
re-arrangement, the manifest's hashes apply unchanged) and the card's ``configs:`` points
``datasets`` at the Parquet file. Only these whitelisted files are copied.

Nothing secret or plaintext is published. The source folder is refused if it holds part of an
auditor's key directory (``keyset.json``, Concrete's ``cache`` folder, ``secretKey_*`` files) or
a plaintext benchmark (``benchmark.json``, ``data.parquet``). The built folder is loaded as its
format, and every byte of it (zip members and Parquet cells included) is scanned for a Concrete
secret key before anything leaves the machine.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..auditor.benchmarks import DATA, META
from ..auditor.keydirs import KEYSET, refuse_inside_key_dir
from ..errors import PublishError
from ..formats.artifacts import (
    OUTPUTS,
    REPRESENTATION_PREFIX,
    SEALED_ZIPS,
    TRANSCRIPT,
    EncryptedBenchmark,
    ModelPackage,
    RunResult,
    read_json,
)
from ..formats.hashing import sha256_file
from ..untrusted.safezip import members
from . import remote as hub
from .cards import METRICS, Card, benchmark_card, model_card, run_card
from .references import resolve_encrypted, resolve_model
from .zoo import benchmark_ids, benchmarks_dir

CARD = "README.md"
KEY_CACHE_DIR = "cache"
SECRET_KEY_FILE = re.compile(r"secretKey_\d+")  # file names in Concrete's keyset cache

# Concrete stores a secret key as one little-endian 64-bit word per key bit. Real LWE/GLWE keys
# have >= 512 bits; a run of 256 words that are all 0 or 1, with a balanced mix of both, does
# not occur in ciphertexts, evaluation keys or compressed data.
KEY_WORDS = 256
# The same bits written out as a JSON/CSV list of 0s and 1s.
_BIT_LIST = re.compile(rb"(?:[01]\s*,\s*){255,}[01]")
TEXT_SNIFF_BYTES = 8000


@dataclass
class Published:
    repo: str
    repo_type: str
    ref: str
    dry_run: bool
    folder: str | None  # the kept folder (--out), else None
    files: dict[str, str]  # name -> SHA-256 of exactly what was (or would be) uploaded
    url: str | None  # commit URL after an upload

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# The three commands


def publish_model(model_ref: str, repo_id: str, *, private: bool = False,
                  dry_run: bool = False, out: Path | None = None) -> Published:
    ref = hub.repo_ref(repo_id, "model")
    package = _source(model_ref, resolve_model)
    layers = [name for name in package.manifest.files if name.startswith(REPRESENTATION_PREFIX)]
    files = {name: package.path / name for name in (*hub.MODEL_FILES, *SEALED_ZIPS, *layers)
             if name in hub.MODEL_FILES or name in package.manifest.files}
    return _publish(files, model_card(package.manifest, ref), ref, ModelPackage.load,
                    private=private, dry_run=dry_run, out=out,
                    message=f"Model package {package.model_id} ({package.fingerprint[:12]})")


def publish_benchmark(encrypted_ref: str, repo_id: str, *, private: bool = False,
                      dry_run: bool = False, out: Path | None = None) -> Published:
    ref = hub.repo_ref(repo_id, "dataset")
    encrypted = _source(encrypted_ref, resolve_encrypted)
    m = encrypted.manifest
    files = {name: encrypted.path / name for name in hub.BENCHMARK_FILES}
    return _publish(files, benchmark_card(m, ref, _licence(m.benchmark_id)), ref,
                    EncryptedBenchmark.load, private=private, dry_run=dry_run, out=out,
                    message=f"Encrypted benchmark {m.benchmark_id} for {m.model_id}")


def publish_run(run_dir: Path, repo_id: str, *, metrics: Path | None = None,
                private: bool = False, dry_run: bool = False,
                out: Path | None = None) -> Published:
    ref = hub.repo_ref(repo_id, "dataset")
    run = _source(str(run_dir), lambda path: RunResult.load(Path(path)))
    run.outputs()  # refuse outputs that do not hash to the transcript
    t = run.transcript
    files = {TRANSCRIPT: run.path / TRANSCRIPT, OUTPUTS: run.path / OUTPUTS}
    decrypted = None
    if metrics is not None:
        decrypted = _check_metrics(Path(metrics), run)
        files[METRICS] = Path(metrics)
    return _publish(files, run_card(t, _licence(t.benchmark_id), decrypted), ref,
                    RunResult.load, private=private, dry_run=dry_run, out=out,
                    message=f"FHE run of {t.model_id} on {t.benchmark_id}")


def _source(ref: str, resolve: Callable[[str], Any]) -> Any:
    """Resolve an artifact, refusing a source folder that holds secrets or plaintext."""
    local = Path(ref).expanduser()
    if not hub.is_hub_ref(ref) and local.is_dir():
        refuse_secrets(local)  # before loading, so a key or plaintext folder gets the right error
    artifact = resolve(ref)
    refuse_secrets(artifact.path)
    return artifact


def _licence(benchmark_id: str) -> str:
    """The plaintext benchmark's licence, which its encryption and outputs inherit."""
    if benchmark_id not in benchmark_ids():
        return ""
    return str(read_json(benchmarks_dir() / benchmark_id / META, "Benchmark").get("license", ""))


def _check_metrics(path: Path, run: RunResult) -> dict[str, Any]:
    """Decrypted metrics as ``decrypt --json`` prints them, and of this very run."""
    data = read_json(path, f"Metrics file {path}")
    if not isinstance(data.get("metrics"), dict):
        raise PublishError(f"{path} has no 'metrics' object; pass what `decrypt --json` prints.")
    claimed = (data.get("transcript") or {}).get("outputs_sha256")
    if claimed and claimed != run.transcript.outputs_sha256:
        raise PublishError(f"{path} holds the metrics of another run (outputs hash "
                           f"{str(claimed)[:12]}…, not {run.transcript.outputs_sha256[:12]}…).")
    return data


# --------------------------------------------------------------------------------------------
# Building and uploading


def _publish(files: dict[str, Path], card: Card, ref: str, load: Callable[[Path], Any], *,
             private: bool, dry_run: bool, out: Path | None, message: str) -> Published:
    if dry_run and out is None:
        raise PublishError("--dry-run needs --out DIR: the folder that would be uploaded.")
    target = hub.parse_ref(ref)
    url = None
    with _staging(out) as folder:
        for name, path in files.items():
            shutil.copyfile(path, folder / name)  # follows the Hub cache's symlinks
        hub.save_card(folder / CARD, target.repo_type, card.metadata, card.body)
        load(folder)
        check_publishable(folder, {*files, CARD})
        hashes = {p.name: sha256_file(p) for p in sorted(folder.iterdir())}
        if not dry_run:
            url = hub.upload_folder(folder, target.repo_id, target.repo_type, private=private,
                                    message=message)
    return Published(target.repo_id, target.repo_type, ref, dry_run,
                     str(out) if out is not None else None, hashes, url)


@contextmanager
def _staging(out: Path | None) -> Iterator[Path]:
    """A fresh folder to build in; on success it becomes ``out`` (if given), else it is removed,
    so a refused or failed build never leaves a folder that looks publishable."""
    if out is not None and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PublishError(f"{out} is not empty; choose a new folder for --out.")
    if out is not None:
        refuse_inside_key_dir(out, "a folder to publish")
    parent = None
    if out is not None:
        parent = out.parent
        parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".fhe-audit-publish-", dir=parent))
    try:
        yield tmp
        if out is not None:
            if out.exists():
                out.rmdir()
            tmp.chmod(0o755)
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Refusing secrets and plaintext


def refuse_secrets(folder: Path) -> None:
    """Refuse a folder holding any part of a key directory or of a plaintext benchmark."""
    for path in sorted(Path(folder).rglob("*")):
        rel = path.relative_to(folder)
        if path.name == KEYSET or SECRET_KEY_FILE.fullmatch(path.name) or (
                path.name == KEY_CACHE_DIR and path.is_dir()):
            raise PublishError(f"Refusing to publish {folder}: {rel} belongs to an auditor's "
                               "secret key directory.")
        if path.name in (META, DATA):
            raise PublishError(f"Refusing to publish {folder}: {rel} is a plaintext benchmark "
                               "file.")


def check_publishable(folder: Path, allowed: set[str]) -> None:
    """The built folder holds exactly ``allowed`` files, none of them with a secret key."""
    refuse_secrets(folder)
    found = {str(p.relative_to(folder)) for p in folder.rglob("*")}
    if found != allowed:
        raise PublishError(f"Refusing to publish {folder}: it should hold exactly "
                           f"{', '.join(sorted(allowed))}, not {', '.join(sorted(found))}.")
    for name in sorted(allowed):
        for part, data in _contents(folder / name):
            if looks_like_secret_key(data):
                raise PublishError(f"Refusing to publish {name}: {part} contains what looks like "
                                   "a Concrete secret key.")


def _contents(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    """The file's bytes, then the decoded bytes it packs (zip members, Parquet binary cells)."""
    if path.stat().st_size:
        yield "the file", np.memmap(path, dtype=np.uint8, mode="r")
    if path.suffix == ".zip":  # a package's archives, checked again before any is read
        for member, data in members(path):
            yield f"member {member}", np.frombuffer(data, np.uint8)
    elif path.suffix == ".parquet":
        table = pq.read_table(path)
        for name, column in zip(table.column_names, table.itercolumns(), strict=True):
            if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
                for row, cell in enumerate(column.to_pylist()):
                    if cell:
                        yield f"column {name} row {row}", np.frombuffer(cell, np.uint8)


def looks_like_secret_key(data: np.ndarray) -> bool:
    """Whether bytes hold a Concrete secret key, as 64-bit words or as a written-out bit list."""
    if _has_bit_words(data):
        return True
    # Like git: no NUL byte near the start means text. The bit-list search is only worth its
    # cost there (seconds on large binary files such as evaluation keys).
    if 0 in data[:TEXT_SNIFF_BYTES]:
        return False
    return any(_balanced(m.group().count(b"1"), m.group().count(b"0"))
               for m in _BIT_LIST.finditer(data.tobytes()))


def _has_bit_words(data: np.ndarray) -> bool:
    for offset in range(8):  # the key may start at any byte of a file
        n = (len(data) - offset) // 8
        if n < KEY_WORDS:
            return False
        words = data[offset: offset + 8 * n].view("<u8")
        bits = words <= 1
        if np.count_nonzero(bits) < KEY_WORDS:
            continue
        ones = _window_sums(words == 1)
        if np.any((_window_sums(bits) == KEY_WORDS) & _balanced(ones, KEY_WORDS - ones)):
            return True
    return False


def _window_sums(mask: np.ndarray) -> np.ndarray:
    """Number of True values in every window of KEY_WORDS consecutive entries."""
    total = np.concatenate(([0], np.cumsum(mask, dtype=np.int64)))
    return total[KEY_WORDS:] - total[:-KEY_WORDS]


def _balanced(ones: Any, zeros: Any) -> Any:
    """A random key has about as many ones as zeros; padding and flags do not."""
    return (4 * ones >= ones + zeros) & (4 * zeros >= ones + zeros)
