"""What a cheap attacker gets from a release policy: the boosting attack of Blum & Hardt
(arXiv 1502.04585, section 5), simulated in plaintext so an organiser can choose a policy.

The hidden labels are n fair coin flips. The attacker submits k random label vectors, keeps
those the board says scored above 0.5 (under a Ladder: those it released above 0.5), and
finally submits their per-sample majority vote. Every vector is a coin flip, so its accuracy on
new data is 0.5; the board's best released score minus 0.5 is what the policy let the attacker
inflate. The Ladder state is the challenge's (names are free, so the attacker is every
submitter at once); the desk uses the same :class:`~.policy.Policy` code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ChallengeError
from .policy import RELEASED, Leader, Policy

RAW = "raw"
TRUE_ACCURACY = 0.5  # of any function of random labels, on new data
DEFAULT_POLICIES = f"{RAW},round:2,ladder:0.01,ladder:auto"


@dataclass(frozen=True)
class Outcome:
    policy: str
    board: float  # mean over trials of the attacker's best released score
    board_max: float  # the largest over trials
    fresh: float  # mean accuracy of the final submission on new labels (the truth: 0.5)
    kept: float  # mean number of vectors the feedback told the attacker to keep

    def to_dict(self) -> dict[str, float | str]:
        return {"policy": self.policy, "board": round(self.board, 4),
                "board_max": round(self.board_max, 4), "fresh": round(self.fresh, 4),
                "inflation": round(self.board - TRUE_ACCURACY, 4), "kept": round(self.kept, 1)}


def parse_policies(text: str) -> list[tuple[str, Policy | None]]:
    """``raw`` (every raw score published, the baseline) or any challenge policy."""
    found = [(t.strip(), None if t.strip() == RAW else Policy.parse(t))
             for t in text.split(",") if t.strip()]
    if not found:
        raise ChallengeError(f"Give at least one policy, e.g. {DEFAULT_POLICIES}.")
    return found


def _attack(n: int, k: int, policy: Policy | None, rng: np.random.Generator,
            ) -> tuple[float, float, int]:
    """One attack: (best released score, fresh accuracy of the final vote, vectors kept)."""
    hidden = rng.integers(0, 2, n)
    leader: Leader | None = None
    best = float("-inf")
    kept: list[np.ndarray] = []

    def submit(labels: np.ndarray) -> float | None:
        nonlocal leader, best
        correct = (labels == hidden).astype(np.int8)
        raw = float(correct.mean())
        if policy is None:
            released: float | None = raw
        else:
            decision = policy.release(raw, leader, n, correct)
            released = decision.released
            if decision.decision == RELEASED and released is not None:
                leader = Leader(released, correct)
        if released is not None:
            best = max(best, released)
        return released

    for _ in range(k - 1):  # the last evaluation is the final vote's
        labels = rng.integers(0, 2, n)
        released = submit(labels)
        if released is not None and released > 0.5:
            kept.append(labels)
    vote = (np.mean(kept, axis=0) > 0.5).astype(int) if kept else rng.integers(0, 2, n)
    submit(vote)
    fresh = float(np.mean(vote == rng.integers(0, 2, n)))
    return best, fresh, len(kept)


def simulate(n: int, submissions: int, policies: list[tuple[str, Policy | None]],
             trials: int = 20, seed: int = 0) -> list[Outcome]:
    if n < 2 or submissions < 2 or trials < 1:
        raise ChallengeError("The attack needs n >= 2 hidden samples, at least 2 submissions "
                             "and 1 trial.")
    outcomes = []
    for name, policy in policies:
        rng = np.random.default_rng(seed)  # the same hidden sets for every policy
        runs = np.array([_attack(n, submissions, policy, rng) for _ in range(trials)])
        outcomes.append(Outcome(name, float(runs[:, 0].mean()), float(runs[:, 0].max()),
                                float(runs[:, 1].mean()), float(runs[:, 2].mean())))
    return outcomes


def outcome_text(n: int, submissions: int, trials: int, outcomes: list[Outcome]) -> str:
    lines = [f"Boosting attack, {trials} trial(s): n = {n} hidden samples, {submissions} "
             "evaluations of random label vectors, then their majority vote (true accuracy 0.5)",
             f"{'policy':<14}{'board (mean)':>14}{'board (max)':>13}{'fresh':>8}{'inflation':>11}"]
    for o in outcomes:
        lines.append(f"{o.policy:<14}{o.board:>14.4f}{o.board_max:>13.4f}{o.fresh:>8.3f}"
                     f"{o.board - TRUE_ACCURACY:>+11.4f}")
    lines.append("inflation: the board's mean minus the true 0.5 ('fresh': the final vote "
                 "measured on new labels). A budget of B evaluations a day makes the attack take "
                 "submissions / B days.")
    return "\n".join(lines)
