"""The server's privacy budget file, planted or mangled: a symbolic link (the first charge would
replace the link by a file and split one budget in two), a pipe or device (a read that never
ends), a file larger than any this tool writes: each refused in one sentence, nothing charged."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

from fhe_backend.errors import BudgetError
from fhe_backend.sealed import budget as budget_module
from fhe_backend.sealed.budget import DPBudget

NOON = datetime(2026, 12, 6, 12, tzinfo=UTC)


def test_a_budget_file_that_is_a_symbolic_link_is_refused(tmp_path):
    shared = DPBudget(tmp_path / "shared.json")
    shared.charge("k", 1.0, 2.0, now=NOON)
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "shared.json")
    with pytest.raises(BudgetError, match="symbolic link"):
        DPBudget(link).charge("k", 1.0, 2.0, now=NOON)
    assert link.is_symlink() and shared.spent("k", now=NOON) == 1.0


def test_a_pipe_or_an_oversized_budget_file_is_refused(tmp_path, monkeypatch):
    pipe = tmp_path / "pipe.json"
    os.mkfifo(pipe)  # opening it for reading would wait for a writer forever
    with pytest.raises(BudgetError, match="not a regular file"):
        DPBudget(pipe).check("k", 1.0, 2.0, now=NOON)
    monkeypatch.setattr(budget_module, "MAX_BYTES", 64)
    big = tmp_path / "big.json"
    big.write_bytes(b'{"version": 1, "days": {}}' + b" " * 64)
    with pytest.raises(BudgetError, match="larger than 64 bytes"):
        DPBudget(big).charge("k", 1.0, 2.0, now=NOON)
