"""What every audit kind implements, and what it is given: the interface of the registry.

A kind names the probes it encrypts beyond the real samples (``queries``), draws them
(``plan``), computes its result from the decrypted outputs (``evaluate``) and reads that result
in plain language (``summary`` for the CLI, ``markdown`` for the report); the Space's figure
and reading are its view in :mod:`fhe_backend.ui.bias_render`.

The registry is read by ``--help``, which must stay instant: kind modules import only the
standard library at their top, and what a kind computes with (pandas, scikit-learn, fairlearn)
inside the functions that compute.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import AuditError, SchemaError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ..auditor.benchmarks import PlainBenchmark
    from ..auditor.client import Decrypted
    from ..auditor.probes import Query, QueryPlan
    from ..formats.artifacts import ModelPackage

Rows = tuple["pd.DataFrame", list["Query"]]
Report = dict[str, Any]


@dataclass(frozen=True)
class Planning:
    """What a kind's ``plan`` sees: the benchmark, the model, the options it may use and, for
    a plan sized by a pilot, Concrete's simulator of the circuit (None: no pilot, an upper
    bound)."""

    benchmark: PlainBenchmark
    package: ModelPackage
    seed: int
    permutation_repeats: int
    synthetic_per_sample: int
    simulator: Callable[[QueryPlan], Decrypted] | None
    notes: dict[str, Any] = field(default_factory=dict)  # kept in the plan, then the ledger


@dataclass(frozen=True)
class Outputs:
    """What a kind's ``evaluate`` sees: every decrypted output, the real samples' answers and
    labels, and the benchmark's rows by sample id (the auditor's plaintext)."""

    decrypted: Decrypted
    real: Decrypted
    y_true: np.ndarray
    rows: pd.DataFrame
    benchmark: PlainBenchmark
    package: ModelPackage
    seed: int
    # Published layer -> its decrypted activations (``scores``: one row per real sample), for
    # the kinds that read them (``AuditKind.layers``).
    activations: dict[str, Decrypted] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditKind:
    """One audit: its name (the CLI's ``--audits`` and the JSON key of its result), a title
    and a one-line description for people, and what it does."""

    name: str
    title: str
    description: str
    # Probe kind -> what those probes are (a row of the cost table); empty when the real
    # samples suffice.
    queries: dict[str, str] = field(default_factory=dict)
    needs_sensitive: bool = False  # reads the benchmark's sensitive attributes
    # Measured on every audit, whatever is chosen (accuracy): not a choice in the Space.
    always: bool = False
    # A behaviour audit is inconclusive below MIN_SAMPLES real samples.
    behaviour: bool = True
    # Its queries go to the package's published layers, not to the model's circuit: the real
    # samples are encrypted once more per layer, for that layer's circuit and keys.
    layers: bool = False
    plan: Callable[[Planning], list[Rows]] | None = None
    evaluate: Callable[[Outputs], Any] | None = None
    summary: Callable[[Report], list[str]] | None = None  # CLI lines, indented
    markdown: Callable[[Report], list[str]] | None = None  # report lines


# Groups a sensitive attribute may have. The fairness summaries' simultaneous intervals take
# every pair of groups (574 groups: 96 s for one attribute on 2 shared cores; 10,000, hours),
# and groups this many are too small to read anyway: such a column must be binned first.
MAX_GROUPS = 50


def sensitive_attributes(benchmark: PlainBenchmark) -> list[str]:
    """The benchmark's sensitive columns, refused (before any query runs) when there are none
    or one has more than MAX_GROUPS distinct values (a missing value is a group of its own)."""
    if not benchmark.sensitive_columns:
        raise AuditError(f"Benchmark {benchmark.benchmark_id!r} has no sensitive attributes; "
                         "fairness and counterfactual audits need some.")
    for column in benchmark.sensitive_columns:
        found = int(benchmark.frame[column].nunique(dropna=False))
        if found > MAX_GROUPS:
            raise AuditError(f"Sensitive attribute {column!r} of benchmark "
                             f"{benchmark.benchmark_id!r} has {found} groups, more than "
                             f"{MAX_GROUPS}; bin it into fewer groups first.")
    return benchmark.sensitive_columns


def labels_for(benchmark: PlainBenchmark, package: ModelPackage, ids: list[str]) -> np.ndarray:
    """Class indices of the benchmark's labels, in the order of ``ids``."""
    labels = benchmark.labels(package.manifest.class_names)
    index = {sample_id: i for i, sample_id in enumerate(benchmark.sample_ids())}
    missing = [s for s in ids if s not in index]
    if missing:
        raise SchemaError(
            f"Benchmark {benchmark.benchmark_id!r} has no sample(s) {', '.join(missing[:3])}: "
            "it is not the benchmark this run was encrypted from."
        )
    return labels[[index[s] for s in ids]]
