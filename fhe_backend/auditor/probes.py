"""Query plans: the rows an auditor encrypts, real samples and probes alike.

Every audit beyond plain accuracy asks the model about inputs the auditor made up: a sample with
its ``sex`` swapped, a feature occluded, a column permuted, a synthetic point for a surrogate.
To the server they are all just ciphertexts: the auditor shuffles them and names each with a
random id, and only the auditor's private ledger (in its key directory) says which row is what.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import AuditError
from ..formats.schema import InputSchema
from .benchmarks import PlainBenchmark


@dataclass(frozen=True)
class Query:
    """One encrypted row: the benchmark sample it derives from and how it was changed."""

    source: str
    probe: dict[str, Any] | None = None  # None for the real, unchanged sample

    def to_list(self) -> list[Any]:
        return [self.source, self.probe]


@dataclass
class QueryPlan:
    """Raw input rows (benchmark columns) and their queries, in the same order."""

    frame: pd.DataFrame
    queries: list[Query] = field(default_factory=list)
    # What the audits need to know about how the plan was drawn (e.g. the importance
    # subsample and its stopping rule); kept in the auditor's ledger beside the queries.
    notes: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.queries)

    def extend(self, frame: pd.DataFrame, queries: list[Query]) -> None:
        self.frame = pd.concat([self.frame, frame], ignore_index=True)
        self.queries.extend(queries)

    def shuffled(self) -> tuple[QueryPlan, list[str]]:
        """A secret random order and opaque ids, so the server cannot tell probes apart."""
        order = list(range(len(self.queries)))
        secrets.SystemRandom().shuffle(order)
        ids = [secrets.token_hex(8) for _ in order]
        plan = QueryPlan(self.frame.iloc[order].reset_index(drop=True),
                         [self.queries[i] for i in order], self.notes)
        return plan, ids

    def count(self, kind: str | None) -> int:
        return sum(1 for q in self.queries if (q.probe or {}).get("kind") == kind)


def real_plan(benchmark: PlainBenchmark) -> QueryPlan:
    return QueryPlan(benchmark.frame.reset_index(drop=True),
                     [Query(s) for s in benchmark.sample_ids()])


def counterfactual_rows(
    benchmark: PlainBenchmark, schema: InputSchema, attribute: str
) -> tuple[pd.DataFrame, list[Query]]:
    """For each sample, one copy per other category of ``attribute`` (e.g. sex swapped)."""
    column = next((c for c in schema.columns if c.name == attribute), None)
    values = benchmark.frame[attribute].astype(str)
    categories = list(column.categories) if column and column.categories else sorted(set(values))
    frames, queries = [], []
    for value in categories:
        rows = benchmark.frame[values != value].copy()
        rows[attribute] = value
        frames.append(rows)
        ids = benchmark.frame.loc[rows.index, benchmark.id_column].astype(str)
        queries += [Query(s, {"kind": "counterfactual", "attribute": attribute,
                              "value": value}) for s in ids]
    return pd.concat(frames, ignore_index=True), queries


def baseline(frame: pd.DataFrame, columns: list[str]) -> dict[str, Any]:
    """The auditor's baseline per column: the median of numbers, the most frequent category."""
    out: dict[str, Any] = {}
    for column in columns:
        values = frame[column]
        numeric = pd.to_numeric(values, errors="coerce")
        out[column] = (float(numeric.median()) if numeric.notna().all()
                       else values.astype(str).mode().iloc[0])
    return out


def occlusion_rows(
    benchmark: PlainBenchmark, columns: list[str], base: dict[str, Any]
) -> tuple[pd.DataFrame, list[Query]]:
    """For each sample and column, a copy with that column set to the baseline."""
    frames, queries = [], []
    ids = benchmark.sample_ids()
    for column in columns:
        rows = benchmark.frame.copy()
        rows[column] = base[column]
        frames.append(rows)
        queries += [Query(s, {"kind": "occlusion", "feature": column}) for s in ids]
    return pd.concat(frames, ignore_index=True), queries


def permutation_rows(
    benchmark: PlainBenchmark, columns: list[str], repeats: int, seed: int
) -> tuple[pd.DataFrame, list[Query]]:
    """For each column and repeat, the benchmark with that column shuffled."""
    rng = np.random.default_rng(seed)
    frames, queries = [], []
    ids = benchmark.sample_ids()
    for column in columns:
        for repeat in range(repeats):
            rows = benchmark.frame.copy()
            rows[column] = rows[column].to_numpy()[rng.permutation(len(rows))]
            frames.append(rows)
            queries += [Query(s, {"kind": "permutation", "feature": column, "repeat": repeat})
                        for s in ids]
    return pd.concat(frames, ignore_index=True), queries


def synthetic_rows(
    benchmark: PlainBenchmark, schema: InputSchema, n: int, seed: int
) -> tuple[pd.DataFrame, list[Query]]:
    """Points for surrogate models: each column drawn independently from the auditor's data,
    so the probes cover input combinations the benchmark itself lacks."""
    rng = np.random.default_rng(seed)
    frame = benchmark.frame
    rows = pd.DataFrame({c: frame[c].to_numpy()[rng.integers(0, len(frame), n)]
                         for c in schema.column_names})
    for column in frame.columns:
        if column not in rows:
            rows[column] = frame[column].iloc[0]
    ids = [f"synthetic-{i}" for i in range(n)]
    rows[benchmark.id_column] = ids
    rows = rows[frame.columns]
    # The probe's inputs go in the (private) ledger: a synthetic point has no benchmark row.
    records = json.loads(rows[schema.column_names].to_json(orient="records"))
    return rows, [Query(s, {"kind": "synthetic", "row": r}) for s, r in zip(ids, records,
                                                                            strict=True)]


def check_budget(n_queries: int, budget: int | None) -> None:
    if budget is not None and n_queries > budget:
        raise AuditError(
            f"These audits need {n_queries} FHE queries, over the budget of {budget}; "
            "lower the sample count, pick fewer audits or raise the budget."
        )
