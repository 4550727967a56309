"""The auditor's plaintext benchmarks: a Parquet table plus a small JSON description.

A benchmark is the auditor's secret: inputs, labels, sensitive attributes. It never leaves the
auditor; only its encryption does. Layout of a benchmark folder::

    benchmark.json   {"id", "version", "description", "source", "license", "id_column",
                      "label_column", "sensitive_columns", "fits_models", "class_names"}
    data.parquet     one row per sample
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .artifacts import read_json
from .errors import ArtifactError, SchemaError

META = "benchmark.json"
DATA = "data.parquet"


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

    @classmethod
    def load(cls, path: Path) -> PlainBenchmark:
        path = Path(path)
        what = f"Benchmark {path}"
        meta = read_json(path / META, what)
        try:
            frame = pd.read_parquet(path / DATA)
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

    def check(self) -> None:
        for column in (self.id_column, self.label_column, *self.sensitive_columns):
            if column not in self.frame.columns:
                raise SchemaError(f"Benchmark {self.benchmark_id!r} has no column {column!r}.")
        ids = self.frame[self.id_column].astype(str)
        if ids.duplicated().any():
            dup = ids[ids.duplicated()].iloc[0]
            raise SchemaError(f"Benchmark {self.benchmark_id!r} repeats sample id {dup!r}.")

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
