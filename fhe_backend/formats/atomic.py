"""Write then rename: a killed process leaves a file's old state or its new one, never half.

No fsync: it would cost more than evaluating a linear circuit. After an OS crash a file may be
missing or torn; manifests are checked when loaded, and a run's resume checks each output
against its recorded hash and redoes it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SUFFIX = ".tmp"  # beside the target (same file system, so the rename is atomic)


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path to write in full; it replaces ``path`` when the block succeeds and is
    removed when it fails."""
    tmp = path.with_name(path.name + SUFFIX)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes) -> None:
    with replacing(path) as tmp:
        tmp.write_bytes(data)
