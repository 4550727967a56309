"""The auditor's ledger: which ciphertext of an encrypted benchmark is which sample or probe.

It lives in the key directory (``ledgers/<inputs_sha256>.jsonl``), is written by the auditor
and read back only by it, and grows with the plan (a full bias audit of a 1,000-sample benchmark
is tens of thousands of queries), so it is JSON lines rather than a bounded manifest: a header
line, then one line per query ``[sample_id, source, probe]``. It is still validated line by
line, since a key directory can be copied around or edited.

The header binds the ledger to what gives the outputs their meaning: the plaintext rows that
were encrypted (``table_sha256``, see :meth:`PlainBenchmark.rows_sha256`) and the model's
class names, output kind and input schema (``model_semantics_sha256``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ArtifactError
from ..formats import atomic
from ..formats.artifacts import MAX_SAMPLES, read_json
from .probes import Query

LEDGER_FORMAT = "fhe-audit/auditor-ledger"
LEDGER_VERSION = 1
SUFFIX = ".jsonl"
LEGACY_SUFFIX = ".json"  # one JSON object, written before the ledger was JSON lines
MAX_LINE_BYTES = 1024 * 1024  # a probe row of a few hundred columns is a few KB


@dataclass
class Ledger:
    benchmark_id: str
    queries: dict[str, Query]
    table_sha256: str = ""  # empty in legacy ledgers: nothing to check against
    model_semantics_sha256: str = ""
    notes: dict[str, Any] = field(default_factory=dict)  # e.g. how importance was subsampled

    def write(self, path: Path) -> None:
        """Atomically, one line per query."""
        header = {"format": LEDGER_FORMAT, "version": LEDGER_VERSION,
                  "benchmark_id": self.benchmark_id, "table_sha256": self.table_sha256,
                  "model_semantics_sha256": self.model_semantics_sha256,
                  "n_queries": len(self.queries), "notes": self.notes}
        with atomic.replacing(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(header) + "\n")
            for sample_id, query in self.queries.items():
                handle.write(json.dumps([sample_id, *query.to_list()]) + "\n")

    @classmethod
    def read(cls, path: Path) -> Ledger:
        if path.suffix == LEGACY_SUFFIX:
            data = read_json(path, "Auditor ledger")
            rows = data.get("queries")
            if not isinstance(rows, dict):
                raise ArtifactError(f"Auditor ledger {path.name} has no queries.")
            return cls(str(data.get("benchmark_id", "")), {
                str(s): _query(v, path, n) for n, (s, v) in enumerate(rows.items(), 1)})
        what = f"Auditor ledger {path.name}"
        with open(path, "rb") as handle:
            header = _line(handle.readline(), what, 1)
            if not isinstance(header, dict) or header.get("format") != LEDGER_FORMAT:
                raise ArtifactError(f"{what} is not an auditor ledger.")
            count = header.get("n_queries")
            if not isinstance(count, int) or not 0 <= count <= MAX_SAMPLES:
                raise ArtifactError(f"{what}: its header has no valid query count.")
            queries: dict[str, Query] = {}
            for number, raw in enumerate(handle, 2):
                row = _line(raw, what, number)
                if not (isinstance(row, list) and len(row) == 3 and isinstance(row[0], str)):
                    raise ArtifactError(f"{what}: line {number} is not [sample_id, source, "
                                        "probe].")
                if row[0] in queries:
                    raise ArtifactError(f"{what}: line {number} repeats a sample id.")
                queries[row[0]] = _query(row[1:], path, number)
                if len(queries) > count:
                    break
        if len(queries) != count:
            raise ArtifactError(f"{what}: its header says {count} queries, it holds "
                                f"{len(queries)}; the ledger is truncated or was edited.")
        notes = header.get("notes")
        return cls(str(header.get("benchmark_id", "")), queries,
                   str(header.get("table_sha256") or ""),
                   str(header.get("model_semantics_sha256") or ""),
                   notes if isinstance(notes, dict) else {})


def _line(raw: bytes, what: str, number: int) -> Any:
    if len(raw) > MAX_LINE_BYTES:
        raise ArtifactError(f"{what}: line {number} is too long.")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise ArtifactError(f"{what}: line {number} is not valid JSON.") from exc


def _query(value: Any, path: Path, number: int) -> Query:
    if (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and (value[1] is None or isinstance(value[1], dict))):
        return Query(value[0], value[1])
    raise ArtifactError(f"Auditor ledger {path.name}: entry {number} is not [source, probe].")
