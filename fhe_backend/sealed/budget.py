"""The privacy budget a server keeps per auditor key: the epsilon each key has spent on noisy
sealed runs (``run --dp-epsilon EPS --dp-budget EPS/day``) in the current UTC day.

Runs compose (basic composition): a key that ran k noisy runs today has spent the sum of their
epsilons, and a run that would take it over the day's budget is refused, in one sentence that
says when the budget resets (the next UTC midnight). A run is charged before it starts, whether
or not it finishes: a charge refunded on failure would let a crash-and-retry loop spend nothing.

One JSON file (``FHE_AUDIT_DP_BUDGET``, default ``dp-budget.json`` in ``FHE_AUDIT_HOME``) holds
today's spending per key; past days are dropped on each charge, so the file holds at most one
entry per key that ran today. Concurrent servers on one file are serialized by ``flock`` on a
lock file beside it (the data file itself is replaced on each write, so a lock on it would lock
a file that a waiting writer no longer sees), and the file is written whole then renamed
(:mod:`~fhe_backend.formats.atomic`). A file that does not parse is refused, never reset: a reset
would refill every key's budget; so is a symbolic link, a pipe, or a file over :data:`MAX_BYTES`.

What this does not stop: the key is the encrypted benchmark's key fingerprint, and an auditor
that makes a new keyset gets a fresh budget, unless the server admits only keys it knows (one
registered key per auditor). Deleting the file refills every budget too; it is the server's.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ..errors import BudgetError, PrivacyError
from ..formats.atomic import write_bytes

VERSION = 1
LOCK_SUFFIX = ".lock"
# Budgets are compared with this slack: ten charges of 0.1 fit in a budget of 1.
SLACK = 1e-9
MAX_KEY_ID = 128
# Today's spending of ~100,000 keys; more is not a file this tool wrote.
MAX_BYTES = 16 * 2 ** 20
_BUDGET = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?:/\s*day\s*)?", re.I)


def parse_budget(text: str) -> float:
    """Epsilon per UTC day from ``"2/day"`` or ``"2"``; one sentence for anything else."""
    match = _BUDGET.fullmatch(str(text))
    value = float(match.group(1)) if match else math.nan
    if not (value > 0 and math.isfinite(value)):
        raise PrivacyError(f"A privacy budget reads like '2/day' (a positive epsilon per UTC "
                           f"day), not {text!r}.")
    return value


def _g(value: float) -> str:
    """A sum of charges without its float dust (0.9999999999999999 reads 1)."""
    return f"{round(value, 9):g}"


def _next_midnight(day: str) -> str:
    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    return (start + timedelta(days=1)).isoformat()


class DPBudget:
    """Epsilon spent per auditor key per UTC day, in one file shared by a server's runs."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def _read(self) -> dict[str, dict[str, float]]:
        # A regular file only, read within a bound: each write replaces the path itself, so a
        # symbolic link (two servers sharing one budget through links) would be split into two
        # budgets by the first charge, and a link to a device or a pipe would never end.
        not_regular = (f"The privacy budget file {self.path} is a symbolic link, not a regular "
                       f"file, or larger than {MAX_BYTES:,} bytes; no noisy run is allowed "
                       "until it is one (point FHE_AUDIT_DP_BUDGET at the file itself).")
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise BudgetError(not_regular) from None
            raise BudgetError(f"The privacy budget file {self.path} cannot be read "
                              f"({exc.strerror}); no noisy run is allowed until it can.") from exc
        with open(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_BYTES:
                raise BudgetError(not_regular)
            raw = handle.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            raise BudgetError(not_regular)
        try:
            data = json.loads(raw)
            days = data["days"]
            ok = (data.get("version") == VERSION and isinstance(days, dict) and all(
                isinstance(day, str) and isinstance(spent, dict) and all(
                    isinstance(k, str) and isinstance(v, int | float) and math.isfinite(v)
                    and v >= 0 for k, v in spent.items()) for day, spent in days.items()))
            for day in days:
                datetime.fromisoformat(day)
        except (ValueError, TypeError, KeyError, AttributeError):
            ok = False
        if not ok:
            raise BudgetError(f"The privacy budget file {self.path} is not one this tool wrote; "
                              "it is refused rather than reset (a reset would refill every "
                              "key's budget): repair or remove it by hand.")
        return {day: {k: float(v) for k, v in spent.items()} for day, spent in days.items()}

    def _write(self, days: dict[str, dict[str, float]]) -> None:
        text = json.dumps({"version": VERSION, "days": days}, indent=1, sort_keys=True)
        write_bytes(self.path, text.encode())

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(self.path.name + LOCK_SUFFIX)
        # O_NOFOLLOW: a planted symbolic link must not make us create a file elsewhere.
        with open(os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644), "rb") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released on close, however the process ends
            yield

    def spent(self, key_id: str, now: datetime | None = None) -> float:
        """Epsilon ``key_id`` has spent in the UTC day of ``now``."""
        day = (now or datetime.now(UTC)).astimezone(UTC).date().isoformat()
        with self._locked():
            return self._read().get(day, {}).get(key_id, 0.0)

    def check(self, key_id: str, epsilon: float, per_day: float,
              now: datetime | None = None) -> None:
        """Refuse now, in the charge's sentence, a run the key cannot pay for today (before the
        server spends minutes on its batches); nothing is charged."""
        spent = self.spent(key_id, now)
        if spent + epsilon > per_day + SLACK:
            day = (now or datetime.now(UTC)).astimezone(UTC).date().isoformat()
            raise BudgetError(self._refusal(key_id, spent, epsilon, per_day, day))

    def _refusal(self, key_id: str, spent: float, epsilon: float, per_day: float,
                 day: str) -> str:
        left = max(per_day - spent, 0.0)
        return (f"Auditor key {key_id[:16]} has spent epsilon {_g(spent)} of its {_g(per_day)} "
                f"for today (UTC), {_g(left)} left, so a run at epsilon {_g(epsilon)} is "
                f"refused; the budget resets at {_next_midnight(day)}.")

    def charge(self, key_id: str, epsilon: float, per_day: float,
               now: datetime | None = None) -> float:
        """Add ``epsilon`` to what ``key_id`` has spent today, or refuse in one sentence if that
        would exceed ``per_day``; returns the epsilon left today."""
        if not key_id or len(key_id) > MAX_KEY_ID:
            raise PrivacyError(f"An auditor key id has 1 to {MAX_KEY_ID} characters.")
        if not (epsilon > 0 and per_day > 0):
            raise PrivacyError("Epsilon and the daily budget must be positive.")
        day = (now or datetime.now(UTC)).astimezone(UTC).date().isoformat()
        with self._locked():
            days = self._read()
            today = days.get(day, {})
            spent = today.get(key_id, 0.0)
            if spent + epsilon > per_day + SLACK:
                raise BudgetError(self._refusal(key_id, spent, epsilon, per_day, day))
            today[key_id] = spent + epsilon
            # Past days are dropped (only today's spending counts); a later day, left by a
            # clock set back, is kept: dropping it would refill those budgets.
            self._write({d: s for d, s in {**days, day: today}.items() if d >= day})
        return per_day - today[key_id]
