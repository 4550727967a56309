"""The embedded zoo in ``assets/`` and resolution of model and benchmark references.

A reference is a zoo id (``breast-cancer-logreg``), a path to a folder, or for models and
encrypted benchmarks a Hub reference (``hf://OWNER/NAME``, ``hf://datasets/OWNER/NAME``, see
:mod:`fhe_backend.hub`). A plaintext benchmark may also be an id the auditor registered (see
:mod:`fhe_backend.registry`) or the auditor's own CSV, Parquet or saved ``datasets`` table.
``FHE_AUDIT_ASSETS`` points at another assets folder (tests, a Space with its own zoo).
"""

from __future__ import annotations

import os
from pathlib import Path

from .artifacts import EncryptedBenchmark, ModelPackage
from .benchmarks import PlainBenchmark, TableColumns, is_table
from .errors import AuditError, NotFoundError

REPO_ROOT = Path(__file__).resolve().parent.parent


def assets_dir() -> Path:
    return Path(os.environ.get("FHE_AUDIT_ASSETS", REPO_ROOT / "assets"))


def models_dir() -> Path:
    return assets_dir() / "models"


def benchmarks_dir() -> Path:
    return assets_dir() / "benchmarks"


def model_ids() -> list[str]:
    root = models_dir()
    return sorted(p.name for p in root.iterdir() if (p / "manifest.json").is_file()) if (
        root.is_dir()) else []


def benchmark_ids() -> list[str]:
    root = benchmarks_dir()
    return sorted(p.name for p in root.iterdir() if (p / "benchmark.json").is_file()) if (
        root.is_dir()) else []


def _resolve(ref: str, root: Path, ids: list[str], kind: str, also: str = "") -> Path:
    """``also`` names the other kinds of reference that were tried, for the error."""
    if ref in ids:
        return root / ref
    path = Path(ref).expanduser()
    if path.is_dir():
        return path
    known = ", ".join(ids) or "none"
    raise NotFoundError(f"No {kind} {ref!r}: not a zoo id ({known}){also} nor an existing folder.")


def resolve_model(ref: str) -> ModelPackage:
    from . import hub  # light: the Hub client itself is imported only for hf:// refs

    if hub.is_hub_ref(ref):
        return hub.resolve_model_ref(ref)
    return ModelPackage.load(_resolve(ref, models_dir(), model_ids(), "model"))


def resolve_encrypted(ref: str) -> EncryptedBenchmark:
    """An encrypted benchmark from a folder or a Hub dataset repo."""
    from . import hub

    if hub.is_hub_ref(ref):
        return hub.resolve_encrypted_ref(ref)
    return EncryptedBenchmark.load(Path(ref))


def resolve_benchmark(ref: str, columns: TableColumns | None = None) -> PlainBenchmark:
    """A zoo id, an id the auditor registered, a table file or folder read with ``columns``
    (default: label column ``label``, generated ids), or a benchmark folder, in that order."""
    from . import registry  # it imports this module

    zoo, registered = benchmark_ids(), registry.registered_ids()
    if ref not in zoo and ref not in registered and is_table(Path(ref).expanduser()):
        return PlainBenchmark.from_table(Path(ref).expanduser(), columns)
    if ref not in zoo and ref in registered:
        bench = registry.load(ref)
    else:
        also = f", a registered id ({', '.join(registered) or 'none'}), a CSV or Parquet file"
        bench = PlainBenchmark.load(_resolve(ref, benchmarks_dir(), zoo, "benchmark", also))
    if columns is not None:
        raise AuditError(f"Benchmark {ref!r} names its own label, id and sensitive columns; "
                         "column options apply only to a CSV, Parquet or datasets file.")
    return bench


def list_models() -> list[ModelPackage]:
    return [ModelPackage.load(models_dir() / i) for i in model_ids()]


def list_benchmarks() -> list[PlainBenchmark]:
    return [PlainBenchmark.load(benchmarks_dir() / i) for i in benchmark_ids()]


def benchmarks_for(model_id: str) -> list[str]:
    return [b.benchmark_id for b in list_benchmarks() if model_id in b.fits_models]


def model_by_fingerprint(fingerprint: str) -> ModelPackage:
    for package in list_models():
        if package.fingerprint == fingerprint:
            return package
    raise NotFoundError(
        f"No zoo model has fingerprint {fingerprint[:12]}…; pass the model package with --model."
    )
