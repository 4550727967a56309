"""The auditor's own benchmarks, registered once by id on the auditor's machine.

A registered id stands for a table file (CSV, Parquet, or a saved ``datasets`` folder) and how
to read it (label, id and sensitive columns), so that ``encrypt`` and a later ``decrypt`` read
the very same rows with the very same sample ids. The registry also keeps the table's SHA-256:
a table edited after registration is refused, since scoring a run against other labels than
the encrypted rows had would give wrong metrics without any error.

It lives in ``~/.fhe-audit/benchmarks.json`` (``FHE_AUDIT_HOME`` moves the folder). It is local
and private, like the tables it points at: nothing in it is ever published.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .. import settings
from ..auditor.benchmarks import PlainBenchmark, TableColumns
from ..errors import ArtifactError, AuditError, MismatchError
from ..formats.artifacts import SCHEMA_VERSION, now_iso, read_json, write_json
from ..formats.hashing import sha256_file, sha256_files
from .zoo import benchmark_ids

HOME_ENV = settings.HOME.name
REGISTRY = "benchmarks.json"
REGISTRY_FORMAT = "fhe-audit/benchmark-registry"
# Ids stand beside file paths in --benchmark: no separators, no leading dot.
BENCHMARK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def home() -> Path:
    try:
        path = settings.home()
    except RuntimeError as exc:  # no HOME and no password entry to find it in
        raise AuditError(f"No home folder is known; set {HOME_ENV} to a folder.") from exc
    if path.exists() and not path.is_dir():
        raise AuditError(f"The audit home {path} is a file; set {HOME_ENV} to a folder.")
    return path


def registry_path() -> Path:
    return home() / REGISTRY


def entries() -> dict[str, dict[str, Any]]:
    """Registered id -> {path, label_column, id_column, sensitive_columns, sha256, n_samples,
    columns, description, registered_at}."""
    path = registry_path()
    if not path.is_file():
        return {}
    found = read_json(path, "The benchmark registry").get("benchmarks")
    if not isinstance(found, dict) or not all(isinstance(e, dict) for e in found.values()):
        raise ArtifactError(f"{path} is not a benchmark registry; move it away to start anew.")
    for benchmark_id, entry in found.items():
        wrong = [name for name, check in ENTRY_FIELDS.items() if not check(entry.get(name))]
        if wrong:
            raise ArtifactError(f"{path}: the entry {str(benchmark_id)[:100]!r} has a missing or "
                                f"malformed {', '.join(wrong)}; register it again.")
    return found


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


# What an entry must hold, as register() writes it; a hand-edited entry is refused by name.
ENTRY_FIELDS = {
    "path": lambda v: isinstance(v, str),
    "label_column": lambda v: isinstance(v, str),
    "id_column": lambda v: v is None or isinstance(v, str),
    "sensitive_columns": _strings,
    "sha256": lambda v: isinstance(v, str),
    "n_samples": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
    "columns": _strings,
}


def registered_ids() -> list[str]:
    return sorted(entries())


def table_sha256(path: Path) -> str:
    """A file's SHA-256, or for a saved dataset one digest over its files in name order."""
    if path.is_dir():
        return sha256_files(sorted(p for p in path.rglob("*") if p.is_file()))
    return sha256_file(path)


def register(path: Path, benchmark_id: str, columns: TableColumns | None = None,
             description: str = "") -> dict[str, Any]:
    """Check a table reads as a benchmark and record it under ``benchmark_id`` (replacing an
    earlier registration of that id); returns the entry."""
    if not BENCHMARK_ID.fullmatch(benchmark_id):
        raise AuditError(f"Benchmark id {benchmark_id!r} must be letters, digits, '.', '_' or "
                         "'-', starting with a letter or digit.")
    if benchmark_id in benchmark_ids():
        raise AuditError(f"{benchmark_id!r} is the id of a zoo benchmark; choose another id.")
    path = Path(path).expanduser().resolve()
    columns = columns or TableColumns()
    bench = PlainBenchmark.from_table(path, columns, benchmark_id=benchmark_id,
                                      description=description)
    entry = {"path": str(path), **columns.to_dict(), "sha256": table_sha256(path),
             "n_samples": bench.n_samples, "columns": [str(c) for c in bench.frame.columns],
             "description": description, "registered_at": now_iso()}
    known = entries()
    known[benchmark_id] = entry
    home().mkdir(parents=True, exist_ok=True)
    write_json(registry_path(), {"format": REGISTRY_FORMAT, "schema_version": SCHEMA_VERSION,
                                 "benchmarks": known})
    return {"id": benchmark_id, **entry}


def load(benchmark_id: str) -> PlainBenchmark:
    """The registered table as a benchmark, refused if it changed since registration."""
    entry = entries()[benchmark_id]
    path = Path(str(entry.get("path")))
    if not path.exists():
        raise ArtifactError(f"Registered benchmark {benchmark_id!r} points at {path}, which no "
                            "longer exists; register it again.")
    if table_sha256(path) != entry.get("sha256"):
        raise MismatchError(f"{path} changed since it was registered as {benchmark_id!r}; "
                            "register it again (a run is scored against the rows it encrypted).")
    return PlainBenchmark.from_table(path, TableColumns.from_dict(entry),
                                     benchmark_id=benchmark_id,
                                     description=str(entry.get("description", "")))
