"""Release policies, quotas and confidence intervals.

``ladder:STEP`` is the Ladder mechanism of Blum & Hardt (arXiv 1502.04585), for a score where
higher is better: a submitter's released score changes only when the new raw score beats their
best released score by more than STEP, and is then released rounded to a multiple of STEP;
otherwise the previous best is released again. An adaptive submitter learns at most one bit per
submission, and the leaderboard error stays small however many variations are tried.
``round:DIGITS`` releases every raw score rounded to DIGITS decimals (no adaptivity protection
beyond the rounding). The raw score itself is never published: the result records a salted
hash of it (see :func:`commit_score`), so the auditor can later prove what was withheld.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from dataclasses import dataclass

from ..errors import ChallengeError

SALT_BYTES = 16
# 95% two-sided normal quantile.
Z95 = 1.959963984540054

_POLICY = re.compile(r"(ladder):(0?\.\d+|[01](?:\.\d+)?)|(round):(\d)")
_QUOTA = re.compile(r"([1-9]\d{0,3})/day")


@dataclass(frozen=True)
class Decision:
    released: float
    decision: str  # "released", "previous best re-released", "rounded"
    previous_best: float | None


@dataclass(frozen=True)
class Policy:
    kind: str  # "ladder" or "round"
    value: float  # the step, or the number of digits

    @classmethod
    def parse(cls, text: str) -> Policy:
        match = _POLICY.fullmatch(text.strip())
        if not match:
            raise ChallengeError(f"Unknown release policy {text!r}; use ladder:STEP (e.g. "
                                 "ladder:0.01) or round:DIGITS (e.g. round:2).")
        if match.group(1):
            step = float(match.group(2))
            if not 0 < step < 1:
                raise ChallengeError("The ladder step must be between 0 and 1 (e.g. 0.01).")
            return cls("ladder", step)
        return cls("round", float(match.group(4)))

    def __str__(self) -> str:
        return f"ladder:{self.value:g}" if self.kind == "ladder" else f"round:{int(self.value)}"

    def release(self, raw: float, previous_best: float | None) -> Decision:
        """The score to release for ``raw`` given the submitter's best released score."""
        if self.kind == "round":
            return Decision(round(raw, int(self.value)), "rounded", previous_best)
        if previous_best is not None and raw <= previous_best + self.value:
            return Decision(previous_best, "previous best re-released", previous_best)
        released = round(round(raw / self.value) * self.value, _digits(self.value))
        return Decision(released, "released", previous_best)


def _digits(step: float) -> int:
    """Decimals of a multiple of ``step`` (0.01 -> 2), so 0.97 does not print as 0.9700000001."""
    return max(0, -math.floor(math.log10(step))) + 2


@dataclass(frozen=True)
class Quota:
    per_day: int

    @classmethod
    def parse(cls, text: str) -> Quota:
        match = _QUOTA.fullmatch(text.strip())
        if not match:
            raise ChallengeError(f"Unknown quota {text!r}; use N/day (e.g. 3/day).")
        return cls(int(match.group(1)))

    def __str__(self) -> str:
        return f"{self.per_day}/day"


def commit_score(raw: float, salt: bytes | None = None) -> tuple[str, str]:
    """A salted SHA-256 of the raw score: (hash, salt hex). Without the salt, the few hundred
    possible accuracies of a small benchmark cannot be tried one by one against the hash."""
    salt = salt or secrets.token_bytes(SALT_BYTES)
    digest = hashlib.sha256(b"fhe-audit/raw-score/v1\n" + salt + repr(float(raw)).encode())
    return digest.hexdigest(), salt.hex()


def wilson_interval(p: float, n: int, z: float = Z95) -> list[float] | None:
    """The Wilson score interval of a proportion ``p`` observed on ``n`` samples."""
    if n <= 0:
        return None
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]
