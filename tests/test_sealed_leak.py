"""What a sealed audit's decrypted counts reveal, emulated with the circuit's own layout (no
FHE): the figures of the README's threat table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fhe_backend import cli
from fhe_backend.auditor.sealed import encode
from fhe_backend.sealed.circuit import SealedLayout
from fhe_backend.sealed.leak import (
    batch_counts,
    discrete_laplace,
    dp_guess_bound,
    honest_total,
    leak_report,
    masked_attack,
    noisy_figures,
    pinned_rows,
)

LAYOUT = SealedLayout.make(16, 2, [4], {})


def test_emulated_counts_are_the_circuits_counts_per_batch():
    rng = np.random.default_rng(1)
    n = 4 * 16
    predictions, labels, groups = (rng.integers(0, 2, n) for _ in range(3))
    valid = rng.random(n) < 0.8
    codes = encode(labels, groups, valid, 2)
    counts = batch_counts(LAYOUT, predictions, codes)
    for b in range(4):
        rows = slice(16 * b, 16 * (b + 1))
        expected = np.zeros((2, 2), dtype=np.int64)
        hit = valid[rows] & (predictions[rows] == 1)
        np.add.at(expected, (groups[rows][hit], labels[rows][hit]), 1)
        assert np.array_equal(counts[b], expected)


def test_a_cell_predicted_all_alike_is_pinned_and_a_mixed_one_is_not():
    codes = np.array([1] * 4 + [2] * 4 + [0] * 8)
    predictions = np.array([1, 1, 1, 1, 1, 0, 1, 0] + [1] * 8)  # masked rows count nothing
    pinned = pinned_rows(LAYOUT, batch_counts(LAYOUT, predictions, codes), codes)
    assert pinned[:4].all() and not pinned[4:8].any()


def test_masked_rows_let_a_malicious_auditor_read_every_prediction():
    predictions = np.random.default_rng(2).integers(0, 2, 171)
    assert masked_attack(LAYOUT, predictions, 1) == (171, 1.0)
    assert masked_attack(LAYOUT, predictions, LAYOUT.n_counters) == (43, 1.0)
    with pytest.raises(ValueError):
        masked_attack(LAYOUT, predictions, LAYOUT.n_counters + 1)


def test_per_batch_counts_pin_far_more_than_one_total():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 160)
    predictions = np.where(rng.random(160) < 0.95, labels, 1 - labels)  # accuracy ~0.95
    groups = np.zeros(160, dtype=np.int64)
    report = leak_report(LAYOUT, predictions, labels, groups, trials=5)
    assert report["honest_per_batch"]["min"] > 0.3
    assert report["honest_total"] == 0.0
    # One total pins a whole cell only when the model predicts it all alike.
    assert honest_total(labels, labels, groups) == 1.0
    assert report["dp"]["guess_bound"] == pytest.approx(dp_guess_bound(1.0)) == pytest.approx(
        0.7311, abs=1e-4)


def test_noise_bounds_the_masked_row_attack_and_barely_moves_the_accuracy():
    rng = np.random.default_rng(5)
    draws = discrete_laplace(rng, 1.0, 200_000)
    p = np.exp(-1.0)
    assert np.mean(draws == 0) == pytest.approx((1 - p) / (1 + p), abs=0.005)
    assert abs(np.mean(draws)) < 0.02
    labels = rng.integers(0, 2, 400)
    predictions = np.where(rng.random(400) < 0.9, labels, 1 - labels)
    dp = noisy_figures(LAYOUT, predictions, labels, np.zeros(400, dtype=np.int64), 1.0, rng, 20)
    assert dp["masked_read"] == pytest.approx(dp_guess_bound(1.0), abs=0.02)
    assert dp["accuracy_shift_mean"] < dp["wilson_half_width"] / 3


def test_bench_sealed_leak_command(capsys):
    assert cli.main(["bench", "--sealed-leak", "--model", "breast-cancer-logreg", "--limit",
                     "32", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_samples"] == 32 and out["n_batches"] == 2
    assert out["masked_one_row"] == {"batches": 32, "read": 1.0}
    assert 0 <= out["honest_total"] <= out["honest_per_batch"]["max"] <= 1


def test_the_report_says_one_total_was_opened():
    from fhe_backend.auditor.sealed import SealedCounts, decrypted_summary

    counts = SealedCounts(np.zeros((1, 2), dtype=np.int64), np.ones((1, 2), dtype=np.int64),
                          ["all"], None, n_batches=3, batch_size=16, values_decrypted=4)
    summary = decrypted_summary(counts)
    assert summary["per_batch"] is False and summary["values_total"] == 4
    assert summary["n_batches"] == 3 and "one total" in summary["what"]


def test_a_multiclass_model_is_refused_in_one_sentence(capsys):
    assert cli.main(["bench", "--sealed-leak", "--model", "digits-cnn", "--limit", "16"]) == 2
    err = capsys.readouterr().err
    assert "10 classes" in err and "Traceback" not in err
