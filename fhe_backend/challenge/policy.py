"""Release policies, quotas, budgets and confidence intervals.

The Ladder of Blum & Hardt (arXiv 1502.04585; reference code mrtzh/Ladder.jl) keeps ONE state
per challenge, whoever submits: the best score released so far (the leader). For a score where
higher is better:

``ladder:STEP``  a raw score is released only when it beats the leader's released score by more
                 than STEP, rounded to a multiple of STEP; otherwise the result says it was not
                 released, and gives no score at all.
``ladder:auto``  the parameter-free variant: released (as measured) only when a paired test says
                 it is better than the leader: the mean of the per-sample correctness
                 differences exceeds one standard error of those differences (accuracy only: the
                 test needs a per-sample score; a sealed run, whose per-sample correctness is
                 never decrypted, is compared with the unpaired standard error, which is larger
                 for positively correlated models: stricter, never looser).
``round:DIGITS`` every raw score rounded to DIGITS decimals: no protection against adaptive
                 resubmission beyond the rounding.

What the Ladder guarantees: a submission reveals only whether it beat the leader (and, when it
did, its rounded score), whoever submits it under whichever name; Blum & Hardt bound the
leaderboard's error after k submissions by O((log(k n) / n)^(1/3)), which is vacuous for a few
hundred hidden samples, so ``challenge attack-sim`` measures what a cheap attacker actually gains
at a given n. What it does not: a released score is not an unbiased estimate of the model's
accuracy on new data (the leader is the maximum of many), and the attacker's gain still grows
with the number of evaluations, which only the challenge's daily budget caps.

The raw score itself is never published: the result records a salted hash of it (see
:func:`commit_score`), so the auditor can later prove what was withheld.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from dataclasses import dataclass

import numpy as np

from ..errors import ChallengeError

SALT_BYTES = 16
# 95% two-sided normal quantile.
Z95 = 1.959963984540054
# ladder:auto has no step; the spot check's target change and the published interval's
# resolution then use this one (a change of one percentage point).
AUTO_RESOLUTION = 0.01
# ladder:auto releases the measured score at this many decimals (exact for n <= 10 000).
AUTO_DIGITS = 4

# Hidden-set evaluations a day, all submitters together: a boosting attacker's gain grows with
# the evaluations it gets (see challenge attack-sim), and names cost nothing.
DEFAULT_BUDGET = "100/day"

RELEASED = "released"
NOT_RELEASED = "not released: did not beat the leader"
ROUNDED = "rounded"

_POLICY = re.compile(r"(ladder):(auto|0?\.\d+|[01](?:\.\d+)?)|(round):(\d)")
_PER_DAY = re.compile(r"([1-9]\d{0,3})/day")


@dataclass(frozen=True)
class Leader:
    """The challenge's best released score, and (for ``ladder:auto``) the per-sample
    correctness (1 right, 0 wrong, benchmark order) of the submission that holds it."""
    score: float
    correct: np.ndarray | None = None


@dataclass(frozen=True)
class Decision:
    released: float | None  # None: nothing is published for this submission
    decision: str  # RELEASED, NOT_RELEASED or ROUNDED
    previous_best: float | None  # the leader's released score when it was decided
    margin: float | None  # what the raw score had to beat the leader by (None: no leader)


@dataclass(frozen=True)
class Policy:
    kind: str  # "ladder", "ladder-auto" or "round"
    value: float  # the step, or the number of digits (0 for ladder-auto)

    @classmethod
    def parse(cls, text: str) -> Policy:
        match = _POLICY.fullmatch(text.strip())
        if not match:
            raise ChallengeError(f"Unknown release policy {text!r}; use ladder:STEP (e.g. "
                                 "ladder:0.01), ladder:auto or round:DIGITS (e.g. round:2).")
        if match.group(1):
            if match.group(2) == "auto":
                return cls("ladder-auto", 0.0)
            step = float(match.group(2))
            if not 0 < step < 1:
                raise ChallengeError("The ladder step must be between 0 and 1 (e.g. 0.01).")
            return cls("ladder", step)
        return cls("round", float(match.group(4)))

    def __str__(self) -> str:
        if self.kind == "ladder-auto":
            return "ladder:auto"
        return f"ladder:{self.value:g}" if self.kind == "ladder" else f"round:{int(self.value)}"

    @property
    def resolution(self) -> float:
        """The smallest change of score a release can show: the ladder's step, the rounding's
        last digit, or AUTO_RESOLUTION for ladder:auto."""
        if self.kind == "ladder":
            return self.value
        return 10.0 ** -int(self.value) if self.kind == "round" else AUTO_RESOLUTION

    def release(self, raw: float, leader: Leader | None, n: int,
                correct: np.ndarray | None = None) -> Decision:
        """What to publish for ``raw`` (measured on ``n`` samples; ``correct``: its per-sample
        correctness, when known) given the challenge's current leader."""
        best = leader.score if leader else None
        if self.kind == "round":
            return Decision(round(raw, int(self.value)), ROUNDED, best, None)
        if self.kind == "ladder":
            margin, digits = self.value, _digits(self.value)
            released = round(round(raw / self.value) * self.value, digits)
        else:
            margin = None if leader is None else _standard_error(raw, leader, n, correct)
            released = round(raw, AUTO_DIGITS)
        if leader is not None and raw <= leader.score + (margin or 0.0):
            return Decision(None, NOT_RELEASED, best, margin)
        return Decision(released, RELEASED, best, margin)


def _standard_error(raw: float, leader: Leader, n: int, correct: np.ndarray | None) -> float:
    """One standard error of (new - leader): paired over the per-sample correctness differences
    when both are known (Ladder.jl's parameter-free ladder), unpaired otherwise."""
    if correct is not None and leader.correct is not None and len(correct) == len(leader.correct):
        diff = np.asarray(correct, float) - np.asarray(leader.correct, float)
        return float(np.std(diff, ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else 0.0
    p, q = min(max(raw, 0.0), 1.0), min(max(leader.score, 0.0), 1.0)
    return math.sqrt((p * (1 - p) + q * (1 - q)) / max(n, 1))


def _digits(step: float) -> int:
    """Decimals of a multiple of ``step`` (0.01 -> 2), so 0.97 does not print as 0.9700000001."""
    return max(0, -math.floor(math.log10(step))) + 2


@dataclass(frozen=True)
class PerDay:
    """A daily limit, N/day (UTC days): a submitter's quota of accepted submissions, or the
    challenge's budget of hidden-set evaluations."""
    per_day: int

    @classmethod
    def parse(cls, text: str, what: str = "quota") -> PerDay:
        match = _PER_DAY.fullmatch(text.strip())
        if not match:
            raise ChallengeError(f"Unknown {what} {text!r}; use N/day (e.g. 3/day).")
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


def published_interval(raw: float, n: int, resolution: float) -> list[float] | None:
    """The 95% Wilson interval of the RAW (withheld) proportion, its ends rounded outward to the
    release's resolution: the exact ends would give the raw count away (they are a function of
    it), and rounding outward only widens the interval, so it still covers at least 95%. Valid
    for one submission taken alone, not for the best of many (selection biases it upward)."""
    exact = wilson_interval(raw, n)
    if exact is None:
        return None
    digits = _digits(resolution)
    low = math.floor(round(exact[0] / resolution, 9)) * resolution
    high = math.ceil(round(exact[1] / resolution, 9)) * resolution
    return [round(max(0.0, low), digits), round(min(1.0, high), digits)]
