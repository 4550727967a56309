"""Which rows an audit of N samples takes from a benchmark: one rule for every path.

The first N rows of a file are whatever order it was written in (breast-cancer-test's first 20
rows hold 18 malignant of 20; the whole set 64 of 171), so a limited audit draws a seeded,
stratified random subsample by default: every stratum (a label, or a label x group when groups
are audited) gets its share of N by largest remainders, within one sample of proportional, and
its rows are drawn at random without replacement. ``first`` keeps the file's first N rows.

The per-sample audit (``audit``, ``encrypt``, the Space), the sealed audit's batches and the
importance audit's subsample all draw here, and the result records how (``sample``: method,
seed, n, of, strata), so the same seed gives the same rows and a reader knows what was
measured. The decrypting side never redraws: the ledger names every ciphertext's sample id.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import SchemaError

if TYPE_CHECKING:  # the CLI's parser reads METHODS: --help stays free of numpy and pandas
    import numpy as np

    from .benchmarks import PlainBenchmark

STRATIFIED = "stratified"
FIRST = "first"
ALL = "all"  # recorded when no limit applies: every row, in file order
METHODS = {STRATIFIED: "a seeded random subsample, stratified by label (and by group when "
                       "fairness is audited), each stratum within one sample of proportional",
           FIRST: "the first N rows, in file order"}
DEFAULT_METHOD = STRATIFIED


def draw(benchmark: PlainBenchmark, limit: int | None, *, method: str = DEFAULT_METHOD,
         seed: int = 0, by: Sequence[str] = ()) -> PlainBenchmark:
    """``limit`` rows of ``benchmark`` (all when None), stratified by the label column and the
    columns ``by``; the rows keep their file order, and ``sample`` on the result says how they
    were drawn."""
    import numpy as np

    if method not in METHODS:
        raise SchemaError(f"Unknown sample method {method!r}; choose from "
                          f"{', '.join(METHODS)}.")
    total = len(benchmark.frame)
    if limit is not None and limit < 1:
        raise SchemaError("The sample limit must be at least 1.")
    if limit is None or limit >= total:
        return _with(benchmark, np.arange(total), {"method": ALL, "seed": None, "n": total,
                                                   "of": total})
    strata = [benchmark.label_column, *[c for c in by if c != benchmark.label_column]]
    missing = [c for c in strata if c not in benchmark.frame.columns]
    if missing:
        raise SchemaError(f"Benchmark {benchmark.benchmark_id!r} has no column {missing[0]!r}.")
    if method == FIRST:
        positions = np.arange(limit)
        record: dict[str, Any] = {"method": FIRST, "seed": None, "n": limit, "of": total}
    else:
        keys = benchmark.frame[strata].astype(str).agg("\x1f".join, axis=1).to_numpy()
        positions = stratified_positions(keys, limit, np.random.default_rng(seed))
        record = {"method": STRATIFIED, "seed": seed, "n": limit, "of": total,
                  "strata": strata}
    return _with(benchmark, positions, record)


def stratified_positions(keys: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` row positions, sorted, with each distinct key's share of ``n`` allotted by largest
    remainders (ties broken at random) and drawn at random without replacement."""
    import numpy as np

    values, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    quotas = n * counts / counts.sum()
    allotted = np.floor(quotas).astype(int)
    left = n - int(allotted.sum())
    # Largest fractional part first; a random key breaks ties so no stratum is favoured by name.
    order = np.lexsort((rng.random(len(values)), -(quotas - allotted)))
    allotted[order[:left]] += 1
    chosen = [rng.choice(np.flatnonzero(inverse == k), size=size, replace=False)
              for k, size in enumerate(allotted) if size]
    return np.sort(np.concatenate(chosen)) if chosen else np.arange(0)


def _with(benchmark: PlainBenchmark, positions: np.ndarray,
          record: dict[str, Any]) -> PlainBenchmark:
    frame = benchmark.frame.iloc[positions].reset_index(drop=True)
    return dataclasses.replace(benchmark, frame=frame, sample=record)


def strata_for(benchmark: PlainBenchmark, audits: Sequence[str],
               group_column: str | None = None) -> list[str]:
    """The group columns a draw stratifies by besides the label: the sealed audit's group
    column, or every sensitive column when fairness is audited."""
    if group_column:
        return [group_column]
    return list(benchmark.sensitive_columns) if "fairness" in audits else []
