"""Model and benchmark references turned into artifacts, the one place every role resolves them.

A reference is a zoo id (``breast-cancer-logreg``, see :mod:`fhe_backend.hub.zoo`), a path to a
folder, or for models and encrypted benchmarks a Hub reference (``hf://OWNER/NAME``,
``hf://datasets/OWNER/NAME``, see :mod:`fhe_backend.hub.remote`). A plaintext benchmark may also be
an id the auditor registered (see :mod:`fhe_backend.hub.registry`) or the auditor's own CSV,
Parquet or saved ``datasets`` table.
"""

from __future__ import annotations

from pathlib import Path

from ..auditor.benchmarks import PlainBenchmark, TableColumns, is_table
from ..errors import AuditError, NotFoundError
from ..formats.artifacts import EncryptedBenchmark, ModelPackage
from . import registry, zoo
from . import remote as hub


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
    if hub.is_hub_ref(ref):
        return hub.resolve_model_ref(ref)
    return ModelPackage.load(_resolve(ref, zoo.models_dir(), zoo.model_ids(), "model"))


def resolve_encrypted(ref: str) -> EncryptedBenchmark:
    """An encrypted benchmark from a folder or a Hub dataset repo."""
    if hub.is_hub_ref(ref):
        return hub.resolve_encrypted_ref(ref)
    return EncryptedBenchmark.load(Path(ref))


def resolve_benchmark(ref: str, columns: TableColumns | None = None) -> PlainBenchmark:
    """A zoo id, an id the auditor registered, a table file or folder read with ``columns``
    (default: label column ``label``, generated ids), or a benchmark folder, in that order."""
    ids, registered = zoo.benchmark_ids(), registry.registered_ids()
    if ref not in ids and ref not in registered and is_table(Path(ref).expanduser()):
        return PlainBenchmark.from_table(Path(ref).expanduser(), columns)
    if ref not in ids and ref in registered:
        bench = registry.load(ref)
    else:
        also = f", a registered id ({', '.join(registered) or 'none'}), a CSV or Parquet file"
        bench = PlainBenchmark.load(_resolve(ref, zoo.benchmarks_dir(), ids, "benchmark", also))
    if columns is not None:
        raise AuditError(f"Benchmark {ref!r} names its own label, id and sensitive columns; "
                         "column options apply only to a CSV, Parquet or datasets file.")
    return bench


def model_by_fingerprint(fingerprint: str) -> ModelPackage:
    for package in zoo.list_models():
        if package.fingerprint == fingerprint:
            return package
    raise NotFoundError(
        f"No zoo model has fingerprint {fingerprint[:12]}…; pass the model package with --model."
    )
