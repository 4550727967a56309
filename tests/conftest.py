"""Shared fixtures: the committed zoo, and one real FHE audit of the fast model reused by many
tests (keys, encrypted benchmark and run of the whole breast-cancer test set)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from fhe_backend.artifacts import EncryptedBenchmark, ModelPackage, RunResult
from fhe_backend.auditor import Auditor
from fhe_backend.benchmarks import PlainBenchmark
from fhe_backend.server import FHEServer
from fhe_backend.zoo import resolve_benchmark, resolve_model

FAST_MODEL = "breast-cancer-logreg"
FAST_BENCHMARK = "breast-cancer-test"


@dataclass
class Audited:
    package: ModelPackage
    benchmark: PlainBenchmark
    keys: Path
    encrypted: EncryptedBenchmark
    run: RunResult


@pytest.fixture(scope="session")
def fast_package() -> ModelPackage:
    return resolve_model(FAST_MODEL)


@pytest.fixture(scope="session")
def fast_benchmark() -> PlainBenchmark:
    return resolve_benchmark(FAST_BENCHMARK)


@pytest.fixture(scope="session")
def audited(tmp_path_factory, fast_package, fast_benchmark) -> Audited:
    """Keygen, encrypt and run the full breast-cancer test set in real FHE, once."""
    root = tmp_path_factory.mktemp("audited")
    keys = root / "keys"
    encrypted = Auditor(fast_package, keys).encrypt(fast_benchmark, root / "encrypted")
    run = FHEServer(fast_package).run(encrypted, root / "run")
    return Audited(fast_package, fast_benchmark, keys, encrypted, run)


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
