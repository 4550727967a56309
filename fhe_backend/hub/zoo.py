"""The embedded zoo: the model packages and plaintext benchmarks committed in ``assets/``.

Only listing; turning a reference (zoo id, folder, Hub ref, registered id) into an artifact is
:mod:`fhe_backend.hub.references`. The folder is ``$FHE_AUDIT_ASSETS`` when set (tests, a Space with
its own zoo), else the repository's ``assets/`` in a source checkout, else the copy an installed
wheel carries inside the package (``pyproject.toml`` puts it there).
"""

from __future__ import annotations

from pathlib import Path

from .. import settings
from ..auditor.benchmarks import PlainBenchmark
from ..formats.artifacts import ModelPackage

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # fhe_backend/
REPO_ROOT = PACKAGE_DIR.parent
CHECKOUT_ASSETS = REPO_ROOT / "assets"
INSTALLED_ASSETS = PACKAGE_DIR / "assets"


def assets_dir() -> Path:
    if settings.ASSETS.text():
        return Path(settings.ASSETS.text()).expanduser()
    # The wheel's copy first: in an installed package REPO_ROOT is site-packages, where an
    # unrelated distribution may have put an "assets" folder.
    return INSTALLED_ASSETS if INSTALLED_ASSETS.is_dir() else CHECKOUT_ASSETS


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


def list_models() -> list[ModelPackage]:
    return [ModelPackage.load(models_dir() / i) for i in model_ids()]


def list_benchmarks() -> list[PlainBenchmark]:
    return [PlainBenchmark.load(benchmarks_dir() / i) for i in benchmark_ids()]


def benchmarks_for(model_id: str) -> list[str]:
    return [b.benchmark_id for b in list_benchmarks() if model_id in b.fits_models]
