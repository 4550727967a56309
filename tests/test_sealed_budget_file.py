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


def test_a_resumed_run_is_charged_once_and_only_at_its_first_epsilon(tmp_path):
    """A run's journal records the epsilon it was charged at: resumed at the same epsilon it is
    not charged again; resumed at another (less noise than paid for) it is refused."""
    from fhe_backend.errors import PrivacyError
    from fhe_backend.server.privacy import PrivateCounts

    journal, file = tmp_path / "journal", tmp_path / "budget.json"
    journal.mkdir()
    PrivateCounts(0.1, per_day=1.0, budget_file=file).charge("k", 2, journal)
    PrivateCounts(0.1, per_day=1.0, budget_file=file).charge("k", 2, journal)  # resumed
    assert DPBudget(file).spent("k") == pytest.approx(0.1)
    with pytest.raises(PrivacyError, match="resume it with the epsilon it started with"):
        PrivateCounts(10.0, per_day=1.0, budget_file=file).charge("k", 2, journal)
    assert DPBudget(file).spent("k") == pytest.approx(0.1)
