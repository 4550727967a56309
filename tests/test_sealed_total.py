"""One total per run (the design of ``fhe_backend/sealed/total.py``, not wired into run/decrypt
yet): the count + add module compiles for a zoo model within the cost targets, and its chain of
additions gives exactly the counts of the batches it adds (Concrete's simulator of the module;
``bench --sealed-total --limit K`` runs it in real FHE)."""

from __future__ import annotations

import numpy as np
import pytest

from fhe_backend.sealed.total import TOTAL_BITS, build_total, chain


@pytest.fixture(scope="module")
def total():
    from fhe_backend.owner.package import compile_model
    from fhe_backend.owner.zoo_build import ZOO_MODELS

    trained = ZOO_MODELS["breast-cancer-logreg"]()
    compiled = compile_model(trained.model, trained.X_train, trained.compile_settings)
    return build_total(compiled, trained.X_train, simulate=True)


def test_the_chain_of_additions_is_the_sum_of_the_batches(total):
    rng = np.random.default_rng(4)
    q = total.prep.q_cal[:64]
    code = rng.integers(0, 1 + total.prep.layout.n_counters, 64)
    outputs = [total.module.count.simulate(q[b * 16:(b + 1) * 16], code[b * 16:(b + 1) * 16])
               for b in range(4)]
    summed = chain(total.module.add.simulate, outputs)
    assert np.array_equal(summed, np.sum(outputs, axis=0))
    assert np.array_equal(summed, total.expected(q, code))
    assert summed.sum() > 0
    masked = total.module.count.simulate(q[:16], np.zeros(16, dtype=np.int64))
    assert np.array_equal(chain(total.module.add.simulate, [summed, masked]), summed)


def test_the_total_module_stays_within_the_cost_targets(total):
    figures = total.figures()
    # Today's sealed breast-cancer-logreg circuit: 8 PBS per sample; the target is at most 2x.
    assert figures["pbs_per_sample"] <= 16
    assert figures["add_pbs"] == TOTAL_BITS * figures["n_counters"]
    assert figures["max_total"] == 1023


@pytest.mark.heavy
@pytest.mark.timeout(3600)
def test_the_total_is_exact_in_real_fhe_with_keys_under_the_target():
    """Keygen (~1-2 min here) and two batches of breast-cancer-test in real FHE, chained."""
    from fhe_backend.hub.references import resolve_model
    from fhe_backend.latency import bench_sealed_total

    row = bench_sealed_total(resolve_model("breast-cancer-logreg"), batches=2)
    assert row["exact"], (row["decrypted"], row["expected"])
    assert row["evaluation_keys_bytes"] < 600e6
