"""One total per run: the sealed counts of every batch added up under FHE (not wired in yet).

Today's sealed circuit returns the counts of each batch, and the key holder sums them after
decryption, so it sees every batch's counts (``leak.py``: an auditor that keeps its shuffle pins
about half the predictions from them). This module is the design that lets the decryption open
only the run's total, measured by ``bench --sealed-total``:

- one Concrete module, one keyset: ``count(q, code)`` is the sealed circuit's decision with one
  lookup per counter (unpacked: each counter is ``total_bits`` wide, so no packed field can
  overflow into its neighbour however many batches are added), and ``add(a, b)`` =
  ``fhe.refresh(a + b)``;
- composition wired count -> add (both inputs) and add -> add: a chain of additions of any
  length. The refresh (a bootstrap of each counter) is what lets ``add``'s output come back as
  its input: without it Concrete refuses the composition ("The noise of the node ... is
  contaminated by noise coming straight from the input").

The server would run ``count`` per batch, then ``add`` along the batches and publish only the
total (a published per-batch output could be decrypted by the key holder whatever the tool
refuses); the transcript would bind the chain and ``verify`` re-execute it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .circuit import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_GROUPS,
    Prepared,
    configuration,
    count_inputset,
    prepare,
)

# Width of each counter of the total: a run counts at most 2**10 - 1 = 1023 rows per (group,
# label) cell (adult-income-test has 1,000). breast-cancer-logreg, 10 bits: 10 PBS per sample in
# ``count`` and 40 per ``add``; 11 bits: the same count, 44 per add (one per bit and counter).
TOTAL_BITS = 10


@dataclass
class TotalModule:
    """The compiled module and what it costs."""

    module: Any
    prep: Prepared
    total_bits: int

    @property
    def max_total(self) -> int:
        return 2 ** self.total_bits - 1

    def figures(self) -> dict[str, Any]:
        stats = self.module.statistics
        count_pbs = int(self.module.count.statistics.get("programmable_bootstrap_count", 0))
        add_pbs = int(self.module.add.statistics.get("programmable_bootstrap_count", 0))
        B = self.prep.layout.batch_size
        return {
            "family": self.prep.family, "batch_size": B, "n_counters": self.prep.layout.n_counters,
            "total_bits": self.total_bits, "max_total": self.max_total,
            "count_pbs": count_pbs, "add_pbs": add_pbs,
            "pbs_per_sample": (count_pbs + add_pbs) / B,
            "size_of_bootstrap_keys": int(stats.get("size_of_bootstrap_keys", 0)),
            "size_of_keyswitch_keys": int(stats.get("size_of_keyswitch_keys", 0)),
        }

    def expected(self, q: np.ndarray, code: np.ndarray) -> np.ndarray:
        """The counters ``count`` computes for these rows, in numpy (from the same decision)."""
        layout = self.prep.layout
        ones = np.ones(len(q), dtype=np.int64)
        prediction = self.prep.decision.split(np.asarray(self.prep.decision.index(q, ones)))[0]
        return np.array([np.sum((prediction == 1) & (code == c + 1))
                         for c in range(layout.n_counters)], dtype=np.int64)


def chain(add: Callable[[Any, Any], Any], outputs: Sequence[Any]) -> Any:
    """The server's chain: ``add(...add(add(c1, c2), c3)..., cK)``; one batch is its own total."""
    total = outputs[0]
    for output in outputs[1:]:
        total = add(total, output)
    return total


def build_total(compiled: Any, calibration_X: np.ndarray, *,
                batch_size: int = DEFAULT_BATCH_SIZE, n_groups: int = DEFAULT_GROUPS,
                p_error: float | None = None, total_bits: int = TOTAL_BITS,
                simulate: bool = False) -> TotalModule:
    """Compile the count + add module of a fitted, compiled model (the owner's side, as
    :func:`fhe_backend.sealed.circuit.build_sealed`); ``simulate`` compiles Concrete's
    simulator of it instead."""
    from concrete import fhe

    prep = prepare(compiled, np.asarray(calibration_X), batch_size, n_groups, p_error)
    decision, n_counters = prep.decision, prep.layout.n_counters

    def counter(c: int) -> Callable[[np.ndarray], np.ndarray]:
        def hit(x: np.ndarray) -> np.ndarray:
            prediction, code = decision.split(x)
            return ((prediction == 1) & (code == c + 1)).astype(np.int64)

        return hit

    hits = [counter(c) for c in range(n_counters)]

    @fhe.module()
    class Total:
        @fhe.function({"q": "encrypted", "code": "encrypted"})
        def count(q: Any, code: Any) -> Any:
            x = decision.index(q, code)
            return fhe.hint(fhe.array([np.sum(fhe.univariate(h)(x)) for h in hits]),
                            bit_width=total_bits)

        @fhe.function({"a": "encrypted", "b": "encrypted"})
        def add(a: Any, b: Any) -> Any:
            return fhe.refresh(fhe.hint(a + b, bit_width=total_bits))

        composition = fhe.Wired({
            fhe.Wire(fhe.Output(count, 0), fhe.Input(add, 0)),
            fhe.Wire(fhe.Output(count, 0), fhe.Input(add, 1)),
            fhe.Wire(fhe.Output(add, 0), fhe.Input(add, 0)),
            fhe.Wire(fhe.Output(add, 0), fhe.Input(add, 1)),
        })

    rng = np.random.default_rng(0)
    top = 2 ** total_bits - 1
    half = np.full(n_counters, top // 2)
    add_inputset = [tuple(rng.integers(0, top // 2 + 1, (2, n_counters))) for _ in range(16)]
    add_inputset += [(half, half + top % 2), (half * 0, half * 0)]
    module = Total.compile({"count": count_inputset(prep), "add": add_inputset},
                           configuration(fhe_simulation=simulate), p_error=prep.p_error,
                           global_p_error=None)
    return TotalModule(module, prep, total_bits)
