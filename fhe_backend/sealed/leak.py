"""What a sealed audit's decrypted counts tell the key holder, emulated in clear (no FHE).

The count function's output for a batch is a function of the batch's predictions and codes
only: ``SealedLayout.counts`` computes it exactly as the circuit does, so the figures here are
what the decryption of a run would give, on the model's own predictions. Today's runs open one
total per run (the per-batch figures are what the earlier design, which opened every batch's
counts, gave away; they stay here as the reason for the change).

Two auditors are emulated:

- **honest but curious**: it encrypts as ``SealedAuditor.encrypt`` does (a random shuffle, every
  row valid, padding masked) but keeps its shuffle. In a batch, the rows of one (group, true
  label) cell whose decrypted count is 0 or the cell's size all have a known prediction; every
  other row of the cell could be any of them. The share of rows pinned this way is the leak.
  From one total per (group, label) cell instead of one per batch, only a cell predicted all
  alike is pinned.
- **malicious**: the codes are encrypted by the auditor and nothing can check them, so it puts
  one real row in each counter and masks the rest (code 0). Each batch (or each run, when only
  one total per run is decrypted) then reveals ``n_counters`` predictions exactly.

Noise drawn outside the auditor's control is the only bound on the second: with discrete
Laplace noise of scale ``1/epsilon`` on every count cell (sensitivity 1: one row moves one cell
by one), no test on the outputs guesses a row's prediction (even prior) with a success rate
above ``1 / (1 + exp(-epsilon))``, however the codes were chosen, and over several runs the
epsilons add up (hence a budget per auditor key).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .circuit import SealedLayout


def batch_counts(layout: SealedLayout, predictions: np.ndarray, codes: np.ndarray,
                 ) -> np.ndarray:
    """The counts of each batch, shape (n_batches, n_groups, 2), as ``count`` computes them."""
    if len(predictions) != len(codes) or len(codes) % layout.batch_size:
        raise ValueError("predictions and codes must fill whole batches")
    return np.stack([layout.cells(c) for c in layout.counts(predictions, codes)])


def pinned_rows(layout: SealedLayout, counts: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Per position, whether the counts pin the row's prediction: its batch's cell has count 0
    or as many positives as rows (an auditor that knows each position's code)."""
    B = layout.batch_size
    codes = np.asarray(codes).reshape(-1, B)
    pinned = np.zeros(codes.shape, dtype=bool)
    for b in range(len(codes)):
        for cell in range(1, layout.n_counters + 1):
            rows = codes[b] == cell
            k = counts[b].reshape(-1)[cell - 1]
            pinned[b, rows] = k in (0, int(rows.sum()))
    return pinned.reshape(-1)


def _codes(labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    return 1 + np.asarray(labels, dtype=np.int64) + 2 * np.asarray(groups, dtype=np.int64)


def honest_per_batch(layout: SealedLayout, predictions: np.ndarray, labels: np.ndarray,
                     groups: np.ndarray, rng: np.random.Generator) -> float:
    """Share of the rows pinned from per-batch counts, for one random shuffle (as encrypted)."""
    n, B = len(predictions), layout.batch_size
    order = rng.permutation(n)
    n_batches = max(1, math.ceil(n / B))
    padded = np.resize(order, n_batches * B)
    valid = np.arange(n_batches * B) < n
    codes = np.where(valid, _codes(labels, groups)[padded], 0)
    counts = batch_counts(layout, predictions[padded], codes)
    return float(np.mean(pinned_rows(layout, counts, codes)[valid]))


def honest_total(predictions: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> float:
    """Share of the rows pinned from one total per (group, true label) cell."""
    pinned = 0
    for cell in np.unique(_codes(labels, groups)):
        rows = _codes(labels, groups) == cell
        k = int(predictions[rows].sum())
        pinned += int(rows.sum()) if k in (0, int(rows.sum())) else 0
    return pinned / len(predictions)


def masked_attack(layout: SealedLayout, predictions: np.ndarray, rows_per_batch: int,
                  ) -> tuple[int, float]:
    """A malicious auditor's batches: ``rows_per_batch`` real rows (each in its own counter,
    at most ``n_counters``), every other position masked. Returns the batches used and the
    share of predictions read back exactly from the emulated counts."""
    if not 1 <= rows_per_batch <= layout.n_counters:
        raise ValueError(f"rows_per_batch must be 1-{layout.n_counters}")
    n, B = len(predictions), layout.batch_size
    n_batches = math.ceil(n / rows_per_batch)
    codes = np.zeros((n_batches, B), dtype=np.int64)
    position = np.zeros(n, dtype=np.int64)
    for row in range(n):
        b, slot = divmod(row, rows_per_batch)
        codes[b, slot] = 1 + slot  # counter ``slot``: any code the circuit counts will do
        position[row] = b * B + slot
    filled = np.zeros(n_batches * B, dtype=np.int64)
    filled[position] = predictions
    counts = batch_counts(layout, filled, codes.reshape(-1)).reshape(n_batches, -1)
    read = counts[position // B, position % B]  # slot s's counter is column s
    return n_batches, float(np.mean(read == predictions))


def dp_guess_bound(epsilon: float) -> float:
    """Highest success rate of any guess of one row's prediction (even prior) from outputs
    carrying discrete Laplace noise of scale 1/epsilon on every count cell."""
    return 1.0 / (1.0 + math.exp(-epsilon))


def discrete_laplace(rng: np.random.Generator, epsilon: float, size: Any) -> np.ndarray:
    """P(k) proportional to exp(-epsilon |k|): the difference of two geometric draws."""
    p = 1.0 - math.exp(-epsilon)
    return rng.geometric(p, size) - rng.geometric(p, size)


def noisy_figures(layout: SealedLayout, predictions: np.ndarray, labels: np.ndarray,
                  groups: np.ndarray, epsilon: float, rng: np.random.Generator,
                  trials: int) -> dict[str, Any]:
    """With noise on every cell of one total per run: the share of predictions the masked-row
    attack reads right (one run per ``n_counters`` rows, guessing class 1 when the noisy count
    is at least 1), and how far the noise moves the accuracy, against its Wilson half-width."""
    from ..audits.uncertainty import wilson

    n = len(predictions)
    reads = []
    for _ in range(trials):
        noisy = predictions + discrete_laplace(rng, epsilon, n)  # one cell per row and run
        reads.append(float(np.mean((noisy >= 1) == (predictions == 1))))
    # Only the cells that hold rows carry information (the auditor knows the others are empty).
    # A cell of true label 1 adds its positives to the correct rows, one of label 0 removes them.
    cells = np.unique(_codes(labels, groups)) - 1
    sign = np.where(cells % 2 == 1, 1, -1)
    correct = int(np.sum(predictions == labels))
    shifts = [abs(int(sign @ discrete_laplace(rng, epsilon, len(cells)))) / n
              for _ in range(max(trials, 200))]
    low, high = wilson(correct, n) or (0.0, 0.0)
    return {"epsilon": epsilon, "guess_bound": dp_guess_bound(epsilon),
            "masked_read": float(np.mean(reads)),
            "accuracy_shift_mean": float(np.mean(shifts)),
            "wilson_half_width": (high - low) / 2}


def leak_report(layout: SealedLayout, predictions: np.ndarray, labels: np.ndarray,
                groups: np.ndarray, *, trials: int = 20, seed: int = 0,
                epsilon: float = 1.0) -> dict[str, Any]:
    """The figures of the threat table for one benchmark (see the module docstring)."""
    predictions = np.asarray(predictions, dtype=np.int64)
    labels, groups = np.asarray(labels, dtype=np.int64), np.asarray(groups, dtype=np.int64)
    if not len(predictions):
        raise ValueError("no rows to emulate")
    rng = np.random.default_rng(seed)
    shares = [honest_per_batch(layout, predictions, labels, groups, rng) for _ in range(trials)]
    one_row = masked_attack(layout, predictions, 1)
    per_counter = masked_attack(layout, predictions, layout.n_counters)
    n = len(predictions)
    return {
        "n_samples": n, "batch_size": layout.batch_size,
        "n_batches": math.ceil(n / layout.batch_size),
        "n_groups": int(groups.max()) + 1, "n_counters": layout.n_counters,
        "accuracy": float(np.mean(predictions == labels)),
        "honest_per_batch": {"mean": float(np.mean(shares)), "min": float(np.min(shares)),
                             "max": float(np.max(shares)), "shuffles": trials},
        "honest_total": honest_total(predictions, labels, groups),
        "masked_one_row": {"batches": one_row[0], "read": one_row[1]},
        "masked_per_counter": {"batches": per_counter[0], "read": per_counter[1]},
        "dp": noisy_figures(layout, predictions, labels, groups, epsilon, rng, trials),
    }


def leak_table(r: dict[str, Any]) -> str:
    hb, one, four = r["honest_per_batch"], r["masked_one_row"], r["masked_per_counter"]
    dp = r["dp"]
    return "\n".join([
        f"{r['n_samples']} rows, accuracy {r['accuracy']:.3f}, {r['n_groups']} group(s), "
        f"batches of {r['batch_size']} ({r['n_batches']}), {r['n_counters']} counters",
        "| auditor | per-batch counts (today) | one total per run | + noise, epsilon "
        f"{r['dp']['epsilon']:g} per cell |",
        "|---|---|---|---|",
        f"| honest but curious (keeps its shuffle) | pins {hb['mean']:.0%} of predictions "
        f"({hb['min']:.0%}-{hb['max']:.0%} over {hb['shuffles']} shuffles) | pins "
        f"{r['honest_total']:.0%} | pins none; any guess <= {dp['guess_bound']:.0%} |",
        f"| malicious (chooses the codes) | reads {one['read']:.0%} with 1 real row per batch "
        f"({one['batches']} batches), {four['read']:.0%} with {r['n_counters']} per batch "
        f"({four['batches']} batches) | reads {four['read']:.0%} in {four['batches']} runs | "
        f"reads {dp['masked_read']:.0%} in {four['batches']} runs (bound "
        f"{dp['guess_bound']:.0%}); epsilons add up over runs |",
        f"| (noise on the accuracy) | none | none | moves it by {dp['accuracy_shift_mean']:.4f} "
        f"on average; Wilson half-width {dp['wilson_half_width']:.4f} |",
    ])
