"""Shared fixtures: the committed zoo, and one real FHE audit of the fast model reused by many
tests (keys, encrypted benchmark and run of the whole breast-cancer test set)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from fhe_backend.artifacts import EncryptedBenchmark, ModelPackage, RunResult
from fhe_backend.auditor import Auditor
from fhe_backend.benchmarks import PlainBenchmark
from fhe_backend.references import resolve_benchmark, resolve_model
from fhe_backend.server import FHEServer

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


@contextmanager
def launched_space(tmp_path_factory: pytest.TempPathFactory, model: str,
                   ) -> Iterator[tuple[Any, str]]:
    """The Space built and launched in-process (Gradio's own test pattern); skips when the zoo
    lacks ``model``. Yields the Blocks and its local URL."""
    from fhe_backend.ui import build_demo, launch_options
    from fhe_backend.zoo import model_ids

    if model not in model_ids():
        pytest.skip(f"the zoo has no {model}: build it, or point FHE_AUDIT_ASSETS at a zoo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
        demo = build_demo()
        _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **launch_options())
        try:
            yield demo, url
        finally:
            demo.close()


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def pytest_unconfigure(config: pytest.Config) -> None:
    """Without this, Concrete's atexit hook would end pytest with status 0 once any test ran a
    circuit: a failing suite would pass CI."""
    from fhe_backend.__main__ import drop_concrete_exit_hook

    drop_concrete_exit_hook()
