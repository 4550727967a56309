"""Shared fixtures: the committed zoo, and one real FHE audit of the fast model reused by many
tests (keys, encrypted benchmark and run of the whole breast-cancer test set), and per test
module the Space launched in-process and a headless Chromium. Helpers live in support.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from support import CHROMIUM, CHROMIUM_ARGS, FAST_BENCHMARK, FAST_MODEL, launched_space

from fhe_backend.auditor.benchmarks import PlainBenchmark
from fhe_backend.auditor.client import Auditor
from fhe_backend.formats.artifacts import EncryptedBenchmark, ModelPackage, RunResult
from fhe_backend.hub.references import resolve_benchmark, resolve_model
from fhe_backend.server.run import FHEServer


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


def pytest_unconfigure(config: pytest.Config) -> None:
    """Without this, Concrete's atexit hook would end pytest with status 0 once any test ran a
    circuit: a failing suite would pass CI."""
    from fhe_backend.__main__ import drop_concrete_exit_hook

    drop_concrete_exit_hook()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    """The Space launched in-process for one test module: its Blocks and local URL."""
    with launched_space(tmp_path_factory, FAST_MODEL) as launched:
        yield launched


@pytest.fixture(scope="module")
def client(app: tuple[Any, str]) -> Iterator[Any]:
    """A ``gradio_client`` on that Space: one client is one browser session (closing one
    takes a second: a module shares it)."""
    from contextlib import closing

    from gradio_client import Client

    with closing(Client(app[1], verbose=False)) as connected:
        yield connected


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Space launched in-process for one test module, serving the zoo; its local URL."""
    with launched_space(tmp_path_factory, FAST_MODEL) as (_, local_url):
        yield local_url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright, one per test module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
