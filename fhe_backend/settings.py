"""Every ``FHE_AUDIT_*`` environment variable: its name, default and meaning, read here only.

Each is read when used (not at import), so a test or a Space can set one at any time. An unset
or empty variable means its default; a number that is not a positive integer is ignored too,
so a typo in a Space's settings cannot remove a limit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    meaning: str

    def text(self) -> str:
        return os.environ.get(self.name, "").strip() or self.default

    def positive_float(self) -> float:
        try:
            value = float(self.text())
        except ValueError:
            return float(self.default)
        return value if value > 0 else float(self.default)

    def positive_int(self) -> int:
        try:
            value = int(self.text())
        except ValueError:
            return int(self.default)
        return value if value >= 1 else int(self.default)


ASSETS = Setting(
    "FHE_AUDIT_ASSETS", "",
    "The embedded zoo's folder (models/, benchmarks/, data/, registry.json). Default: the "
    "repository's assets/ in a source checkout, else the copy inside the installed package.")
HOME = Setting(
    "FHE_AUDIT_HOME", "~/.fhe-audit",
    "The auditor's private folder: the registry of the auditor's own benchmarks.")
SCHEDULER = Setting(
    "FHE_AUDIT_SCHEDULER", "",
    "A Dask scheduler (tcp://HOST:PORT) the Space's server tab runs samples on. Default: a "
    "local run.")
MAX_SAMPLES = Setting(
    "FHE_AUDIT_MAX_SAMPLES", "200",
    "Most real-FHE queries (benchmark samples and bias probes) of one Space job.")
MAX_QUERIES = Setting(
    "FHE_AUDIT_MAX_QUERIES", "10000",
    "Most queries of one Space request in any mode, simulation included.")
MAX_SEALED_BATCHES = Setting(
    "FHE_AUDIT_MAX_SEALED_BATCHES", "2",
    "Most batches of one sealed Space audit (a batch is 16 samples in the zoo; sealed keys are "
    "large and their PBS wide, so real FHE takes minutes per batch).")
QUEUE_SIZE = Setting(
    "FHE_AUDIT_QUEUE_SIZE", "16",
    "Space jobs allowed to wait; more are refused with \"queue full\".")

COMPILE_TIMEOUT = Setting(
    "FHE_AUDIT_COMPILE_TIMEOUT", "600",
    "Seconds a sandboxed compile of a package's circuit may take before it is stopped.")
SANDBOX_MEMORY = Setting(
    "FHE_AUDIT_SANDBOX_MEMORY", "8192",
    "MiB of private writable memory (RLIMIT_DATA) a sandbox child (compiling or evaluating an "
    "untrusted circuit) may take; past it the child fails and its sample or package is refused. "
    "A child compiling any zoo circuit takes 0.6 GB, plus twice the evaluation keys it loads "
    "(the zoo's largest: 1.2 GB).")
SANDBOX_CPU = Setting(
    "FHE_AUDIT_SANDBOX_CPU", "3600",
    "CPU seconds a sandbox child may spend on one request (a compile, loading keys, one sample "
    "or sealed batch) before the kernel stops it.")
DEBUG = Setting(
    "FHE_AUDIT_DEBUG", "",
    "Any value: sandbox children keep their stderr (Concrete's messages) instead of discarding it.")

DP_BUDGET = Setting(
    "FHE_AUDIT_DP_BUDGET", "",
    "The file in which a server that adds noise to sealed runs (run --dp-epsilon) keeps the "
    "epsilon each auditor key has spent per UTC day. Default: dp-budget.json in the "
    "FHE_AUDIT_HOME folder.")

# The reproducible-builds standard (reproducible-builds.org), not a name of ours: `make assets`
# sets it to the last commit's time, so two builds of the zoo write byte-identical manifests.
SOURCE_DATE_EPOCH = Setting(
    "SOURCE_DATE_EPOCH", "",
    "Seconds since 1970: the `created_at` written into model manifests instead of the current "
    "time (reproducible builds).")

SETTINGS = (ASSETS, HOME, SCHEDULER, MAX_SAMPLES, MAX_QUERIES, MAX_SEALED_BATCHES, QUEUE_SIZE,
            COMPILE_TIMEOUT, SANDBOX_MEMORY, SANDBOX_CPU, DEBUG, DP_BUDGET, SOURCE_DATE_EPOCH)
STANDARD = (SOURCE_DATE_EPOCH,)  # settings whose names others defined


def home() -> Path:
    return Path(HOME.text()).expanduser()


def scheduler() -> str | None:
    return SCHEDULER.text() or None


def dp_budget_path() -> Path:
    return Path(DP_BUDGET.text()).expanduser() if DP_BUDGET.text() else home() / "dp-budget.json"
