"""The server's side of differentially private counts: noise on a sealed run's total.

A model owner who serves a private model (its weights are not public, so nobody else can run
the circuit on the auditor's batches) draws the noise of :mod:`fhe_backend.sealed.dp` for each
count cell and adds it under FHE with the sealed module's ``noise`` function before the total
leaves the server, after charging epsilon to the auditor's key in the server's budget
(:mod:`fhe_backend.sealed.budget`). The transcript records the mechanism and epsilon, never the
noise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import settings
from ..errors import PrivacyError
from ..formats import atomic
from ..sealed import dp
from ..sealed.budget import DPBudget

CHARGED = "dp-charged.json"  # in the run's journal: a resumed run is not charged twice


@dataclass(frozen=True)
class PrivateCounts:
    """``epsilon`` per run; ``per_day``: the budget per auditor key and UTC day (None keeps no
    budget: every run spends epsilon again); ``budget_file``: where the server keeps it
    (default: ``FHE_AUDIT_DP_BUDGET``)."""

    epsilon: float
    per_day: float | None = None
    budget_file: Path | None = None

    @property
    def budget(self) -> DPBudget:
        return DPBudget(self.budget_file or settings.dp_budget_path())

    def check(self, key_id: str) -> None:
        """Refuse a bad epsilon, or a run the key's budget cannot pay for today, before any
        work (the charge itself is made when the noise is drawn)."""
        dp.check_epsilon(self.epsilon)
        if self.per_day is not None:
            self.budget.check(key_id, self.epsilon, self.per_day)

    def charge(self, key_id: str, n_cells: int, journal: Path) -> tuple[list[int], dict[str, Any]]:
        """Charge the budget (once per run, even when resumed), then draw the noise: the clear
        argument of ``noise`` (each cell's noise shifted by ``NOISE_OFFSET``) and the
        transcript's description of the mechanism."""
        marker = Path(journal) / CHARGED
        if self.per_day is not None:
            if not marker.is_file():
                self.budget.charge(key_id, self.epsilon, self.per_day)
                atomic.write_bytes(marker, json.dumps({"epsilon": self.epsilon}).encode())
            elif _charged(marker) != self.epsilon:
                # The charge was for the first attempt's epsilon: a resume at a larger one
                # would draw less noise than the budget paid for.
                raise PrivacyError(f"This run was charged at another epsilon than "
                                   f"{self.epsilon:g}; resume it with the epsilon it started "
                                   "with, or run into a new folder.")
        clear = [int(z) + dp.NOISE_OFFSET for z in dp.draw(self.epsilon, n_cells)]
        return clear, dp.describe(self.epsilon)


def _charged(marker: Path) -> float | None:
    """The epsilon a run's first attempt was charged at (None: unreadable)."""
    try:
        value = json.loads(marker.read_bytes()).get("epsilon")
    except (ValueError, AttributeError, OSError):
        return None
    return value if isinstance(value, float | int) else None
