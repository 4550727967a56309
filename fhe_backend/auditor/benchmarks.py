"""The auditor's plaintext benchmarks: a Parquet table plus a small JSON description.

A benchmark is the auditor's secret: inputs, labels, sensitive attributes. It never leaves the
auditor; only its encryption does. Layout of a benchmark folder::

    benchmark.json   {"id", "version", "description", "source", "license", "id_column",
                      "label_column", "sensitive_columns", "fits_models", "class_names"}
    data.parquet     one row per sample

An auditor's own table (a CSV or Parquet file, or a folder written by ``datasets``'
``Dataset.save_to_disk``) becomes the same :class:`PlainBenchmark` with
:meth:`PlainBenchmark.from_table`: columns are matched by name, so their order does not matter.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ArtifactError, SchemaError
from ..formats.artifacts import read_json
from ..formats.pages import PageError, declared_file_bytes
from ..formats.schema import InputSchema

META = "benchmark.json"
DATA = "data.parquet"
TABLE_SUFFIXES = {".csv": "CSV", ".parquet": "Parquet", ".pq": "Parquet"}
# Files written by datasets' save_to_disk: one split, or several (a DatasetDict).
DATASET_MARKERS = ("state.json", "dataset_dict.json")
GENERATED_ID_COLUMN = "sample_id"
# Column names quoted back in errors: word-like or numeric, short. Anything else may be the
# first line of a file that is not a table at all (a symlink to a secret), so it is not echoed.
SHOWN_NAME = re.compile(r"[\w .+-]{1,40}")
TABLE_VERSION = "1"  # a table has no version of its own; the registry pins its content instead


@dataclass(frozen=True)
class TableColumns:
    """How to read an auditor's own table: the label column, the id column (None: ids are
    generated as row-0, row-1, … in file order) and the sensitive attributes."""

    label_column: str = "label"
    id_column: str | None = None
    sensitive_columns: tuple[str, ...] = ()

    @classmethod
    def parse(cls, label_column: str | None = None, id_column: str | None = None,
              sensitive_columns: str | Sequence[str] | None = None) -> TableColumns:
        """From text fields as the CLI and the app take them: blanks mean the defaults, and
        the sensitive columns may be one comma-separated string."""
        names = (sensitive_columns.split(",") if isinstance(sensitive_columns, str)
                 else sensitive_columns or ())
        return cls(label_column=(label_column or "").strip() or "label",
                   id_column=(id_column or "").strip() or None,
                   sensitive_columns=tuple(n.strip() for n in names if n.strip()))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "sensitive_columns": list(self.sensitive_columns)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TableColumns:
        return cls.parse(data.get("label_column"), data.get("id_column"),
                         [str(c) for c in data.get("sensitive_columns") or []])


def is_table(path: Path) -> bool:
    """A CSV or Parquet file, or a folder written by ``datasets``' ``save_to_disk``."""
    if path.is_dir():
        return any((path / marker).is_file() for marker in DATASET_MARKERS)
    return path.is_file() and path.suffix.lower() in TABLE_SUFFIXES


def read_table(path: Path, text_columns: Sequence[str] = ()) -> pd.DataFrame:
    """The rows of a table file; ``text_columns`` (ids, labels) are read from a CSV as text, so
    that an id like 007 or a label like 1.0 keeps its exact spelling."""
    if path.is_dir():
        return _read_dataset(path)
    kind = TABLE_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ArtifactError(f"{path.name} is not a .csv or .parquet file; save the table as one.")
    try:
        if kind == "CSV":
            frame = pd.read_csv(path, dtype=dict.fromkeys(text_columns, str))
        else:
            frame = _read_parquet(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArtifactError(f"{path} is not a readable {kind} file ({reason}).") from exc
    return frame


# Uncompressed bytes a Parquet table may declare: a benchmark is rows of a few numbers each
# (breast-cancer-test, 171 x 31: 60 KB), and a 17 KB upload of zstd zeros declaring 512 MiB
# took the Space to 1.5 GB before its columns were even checked.
MAX_TABLE_BYTES = 256 * 1024 * 1024


def _read_parquet(path: Path) -> pd.DataFrame:
    """A Parquet table, refused from its footer and page headers (before anything is
    decompressed) when it declares more than MAX_TABLE_BYTES."""
    try:
        declared = declared_file_bytes(path)
    except PageError as exc:
        raise ArtifactError(f"{path} is not a readable Parquet file ({exc}).") from exc
    if declared > MAX_TABLE_BYTES:
        raise ArtifactError(f"{path.name} declares {declared:,} bytes once decompressed, over "
                            f"the {MAX_TABLE_BYTES:,} a benchmark table may take; it is refused "
                            "before decompression.")
    return pd.read_parquet(path)


def _read_dataset(path: Path) -> pd.DataFrame:
    import datasets  # heavy; only for saved datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path} is not a readable saved dataset ({exc}).") from exc
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded)
        if len(splits) != 1:
            raise SchemaError(f"{path} holds the splits {', '.join(splits)}; pass the folder of "
                              f"one of them ({path / splits[0]}).")
        loaded = loaded[splits[0]]
    return loaded.to_pandas()


@dataclass
class PlainBenchmark:
    path: Path
    benchmark_id: str
    version: str
    frame: pd.DataFrame
    id_column: str = "sample_id"
    label_column: str = "label"
    sensitive_columns: list[str] = field(default_factory=list)
    fits_models: list[str] = field(default_factory=list)
    description: str = ""
    source: str = ""
    license: str = ""
    # How these rows were drawn from a larger benchmark (see ``auditor/subsample.py``); empty
    # for a benchmark as loaded.
    sample: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> PlainBenchmark:
        path = Path(path)
        what = f"Benchmark {path}"
        meta = read_json(path / META, what)
        try:
            frame = _read_parquet(path / DATA)
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{what}: {DATA} is not readable ({exc}).") from exc
        bench = cls(
            path=path,
            benchmark_id=str(meta.get("id", path.name)),
            version=str(meta.get("version", "1")),
            frame=frame,
            id_column=str(meta.get("id_column", "sample_id")),
            label_column=str(meta.get("label_column", "label")),
            sensitive_columns=[str(c) for c in meta.get("sensitive_columns", [])],
            fits_models=[str(m) for m in meta.get("fits_models", [])],
            description=str(meta.get("description", "")),
            source=str(meta.get("source", "")),
            license=str(meta.get("license", "")),
        )
        bench.check()
        return bench

    @classmethod
    def from_table(cls, path: Path, columns: TableColumns | None = None, *,
                   benchmark_id: str | None = None, description: str = "") -> PlainBenchmark:
        """An auditor's own CSV, Parquet or saved ``datasets`` table as a benchmark."""
        path = Path(path)
        columns = columns or TableColumns()
        frame = read_table(path, [c for c in (columns.label_column, columns.id_column) if c])
        if frame.empty:
            raise SchemaError(f"{path.name} holds no rows.")
        if columns.id_column is None:
            if GENERATED_ID_COLUMN in frame.columns:
                raise SchemaError(
                    f"{path.name} already has a column {GENERATED_ID_COLUMN!r}; declare it as "
                    "the id column or rename it."
                )
            frame.insert(0, GENERATED_ID_COLUMN, [f"row-{i}" for i in range(len(frame))])
        bench = cls(
            path=path,
            benchmark_id=benchmark_id or path.stem,
            version=TABLE_VERSION,
            frame=frame,
            id_column=columns.id_column or GENERATED_ID_COLUMN,
            label_column=columns.label_column,
            sensitive_columns=list(columns.sensitive_columns),
            description=description,
            source=str(path),
        )
        bench.check()
        return bench

    def check(self) -> None:
        for column in (self.id_column, self.label_column, *self.sensitive_columns):
            if column not in self.frame.columns:
                # Naming what is there shows a typo, or a CSV whose first row is data.
                raise SchemaError(f"Benchmark {self.benchmark_id!r} has no column {column!r} "
                                  f"(its columns: {self._columns_shown()}).")
        ids = self.frame[self.id_column].astype(str)
        if ids.duplicated().any():
            dup = ids[ids.duplicated()].iloc[0]
            raise SchemaError(f"Benchmark {self.benchmark_id!r} repeats sample id {dup!r}.")

    def check_inputs(self, schema: InputSchema, class_names: list[str]) -> None:
        """Refuse, before anything is encrypted, data the model cannot take: missing, extra,
        non-numeric or empty values, unknown categories, unknown labels; one sentence each,
        naming the column (and the rows, counted from 0 after the header)."""
        if not set(schema.column_names) & set(self.frame.columns):
            raise SchemaError(
                f"Benchmark {self.benchmark_id!r} has none of the model's columns (its columns: "
                f"{self._columns_shown()}); a CSV must start with a line naming its columns, in "
                "any order."
            )
        schema.validate_frame(self.frame)
        known = {*schema.column_names, self.id_column, self.label_column, *self.sensitive_columns}
        extra = [str(c) for c in self.frame.columns if c not in known]
        if extra:
            raise SchemaError(
                f"Benchmark {self.benchmark_id!r} has column(s) the model does not take: "
                f"{', '.join(extra)}; drop them, or declare them as sensitive columns."
            )
        self.labels(class_names)

    def _columns_shown(self, limit: int = 4) -> str:
        """The first column names, to show a typo or a CSV whose first line is data; a name
        that does not look like one (e.g. the first line of some other file) is not quoted."""
        names = [str(c) for c in self.frame.columns if c != self.id_column]
        shown = [n if SHOWN_NAME.fullmatch(n) else "(not shown: not a column name)"
                 for n in names[:limit]]
        return ", ".join(shown) + (", …" if len(names) > limit else "")

    @property
    def n_samples(self) -> int:
        return len(self.frame)

    def head(self, limit: int | None) -> PlainBenchmark:
        """The first ``limit`` samples (the whole benchmark when ``limit`` is None)."""
        if limit is None or limit >= len(self.frame):
            return self
        if limit < 1:
            raise SchemaError("The sample limit must be at least 1.")
        frame = self.frame.iloc[:limit].reset_index(drop=True)
        return PlainBenchmark(**{**self.__dict__, "frame": frame})

    def rows_sha256(self, ids: Sequence[str]) -> str:
        """SHA-256 of the rows with these sample ids, every column, in id order: what binds an
        encryption to the exact table (labels and sensitive attributes included) it came from."""
        wanted = sorted(set(ids))
        index = self.frame[self.id_column].astype(str)
        rows = self.frame[index.isin(wanted)]
        if len(rows) != len(wanted):
            raise SchemaError(
                f"Benchmark {self.benchmark_id!r} lacks {len(wanted) - len(rows)} of the "
                f"{len(wanted)} samples that were encrypted: it is not the benchmark this run was "
                "encrypted from."
            )
        rows = rows.iloc[np.argsort(index[rows.index].to_numpy(), kind="stable")]
        rows = rows[sorted(rows.columns, key=str)]
        canonical = rows.to_json(orient="split", index=False, double_precision=15,
                                 date_format="iso")
        return hashlib.sha256(b"fhe-audit/table-rows/v1\n" + canonical.encode()).hexdigest()

    def sample_ids(self) -> list[str]:
        return self.frame[self.id_column].astype(str).tolist()

    def labels(self, class_names: list[str]) -> np.ndarray:
        """Class indices of the labels; refuses labels outside the model's classes."""
        labels = self.frame[self.label_column].astype(str)
        known = {name: i for i, name in enumerate(class_names)}
        unknown = labels[~labels.isin(list(known))]
        if len(unknown):
            rows = ", ".join(str(i) for i in unknown.index[:5])
            raise SchemaError(
                f"Column {self.label_column!r} has labels outside the model's classes "
                f"({', '.join(sorted(set(unknown))[:3])}) in rows {rows}."
            )
        return labels.map(known).to_numpy(dtype=np.int64)


def benchmark_from_upload(path: str | Path, label_column: str | None = "label",
                          id_column: str | None = None,
                          sensitive_columns: str | Sequence[str] | None = None,
                          ) -> PlainBenchmark:
    """For the app: an uploaded CSV or Parquet file as a benchmark. Blank fields mean the
    defaults (label column ``label``, generated ids); sensitive columns may be comma-separated.
    Check it against a model with :meth:`PlainBenchmark.check_inputs` before encrypting."""
    columns = TableColumns.parse(label_column, id_column, sensitive_columns)
    return PlainBenchmark.from_table(Path(path), columns)
