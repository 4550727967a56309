"""Helpers the test modules share (fixtures live in conftest.py): the zoo's fast model, the
Space launched in-process, the system Chromium, an offline Hub cache, a server run in its own
process, and the search for secret key bytes in published files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fhe_backend.hub.publish import looks_like_secret_key

REPO = Path(__file__).resolve().parent.parent
FAST_MODEL = "breast-cancer-logreg"
FAST_BENCHMARK = "breast-cancer-test"

# Playwright's own browser download cannot run here: Debian's Chromium, headless.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
TIMEOUT_MS = 120_000

WINDOW = 64
Blobs = list[tuple[str, bytes]]


@contextmanager
def launched_space(tmp_path_factory: pytest.TempPathFactory, model: str,
                   ) -> Iterator[tuple[Any, str]]:
    """The Space built and launched in-process (Gradio's own test pattern); skips when the zoo
    lacks ``model``. Yields the Blocks and its local URL."""
    from fhe_backend.hub.zoo import model_ids
    from fhe_backend.ui import build_demo, launch_options

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


def lay_out(cache: Path, repo_type: str, repo_id: str, folder: Path, sha: str,
            refs: tuple[str, ...] = ("main",)) -> Path:
    """Put ``folder`` into the Hub cache as commit ``sha`` of a repo, as a download would."""
    storage = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snapshot = storage / "snapshots" / sha
    shutil.copytree(folder, snapshot)
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    for ref in refs:
        (storage / "refs" / ref).write_text(sha)  # read back without strip(): no newline
    return snapshot


# Runs a command and prints its exit status and the peak resident memory of its whole tree
# (RUSAGE_CHILDREN: the largest of every process it waited for, sandbox children included).
_PEAK = ("import resource, subprocess, sys\n"
         "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
         "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def peak_memory(*argv: object, timeout: float = 600) -> tuple[int, str, int]:
    """Exit status, stderr and peak RSS in MiB of ``python -m fhe_backend ARGV`` (or of
    ``python ARGV`` when ARGV starts with ``-c``), measured in a fresh helper process."""
    command = [sys.executable, *(["-m", "fhe_backend"] if argv[0] != "-c" else []),
               *map(str, argv)]
    proc = subprocess.run([sys.executable, "-c", _PEAK, *command], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO)})
    code, kib = proc.stdout.split()[-2:]
    return int(code), proc.stderr, int(kib) // 1024


def start_run(encrypted: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "fhe_backend", "run", "--model", FAST_MODEL, "--encrypted",
         str(encrypted), "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


@dataclass
class Secrets:
    """Windows of the secret key files, and how a blob of bytes holds any of them."""

    files: list[Path] = field(default_factory=list)
    windows: list[bytes] = field(default_factory=list)
    hex_windows: list[bytes] = field(default_factory=list)

    def add_key_dir(self, keys: Path) -> None:
        """Every 64-byte window at a multiple of 64 of the cache's files: a copy at any
        alignment holds them all. Windows of one repeated word say nothing (zeros are
        everywhere) and are left out."""
        found = sorted(p for p in keys.glob("*/cache/**/*") if p.is_file())
        assert found, f"{keys} holds no keyset cache: the search would prove nothing"
        self.files += found
        for path in found:
            blob = path.read_bytes()
            for start in range(0, len(blob) - WINDOW + 1, WINDOW):
                window = blob[start:start + WINDOW]
                if len({window[i:i + 8] for i in range(0, WINDOW, 8)}) > 1:
                    self.windows.append(window)
                    self.hex_windows.append(window.hex().encode())

    def leak(self, blob: bytes) -> str | None:
        """How ``blob`` holds secret material, if it does."""
        if any(w in blob for w in self.windows):
            return "a 64-byte window of a secret key file"
        lower = blob.lower()
        if any(w in lower for w in self.hex_windows):
            return "a 64-byte window of a secret key file, in hex"
        if looks_like_secret_key(np.frombuffer(blob, np.uint8)):
            return "what the publish command's detector takes for a Concrete secret key"
        return None


def file_blobs(folder: Path) -> Blobs:
    """Every file's bytes, and the cells of Parquet binary columns (pages may be compressed)."""
    blobs = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        blobs.append((str(path), path.read_bytes()))
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            for name, column in zip(table.column_names, table.itercolumns(), strict=True):
                if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
                    cells = b"\n".join(c for c in column.to_pylist() if c)
                    blobs.append((f"{path} column {name}", cells))
    return blobs
