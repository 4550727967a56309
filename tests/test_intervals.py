"""Intervals that mean what they say: a fair coin reads "no gap", a perfect score is no
certainty, a 3-row group is flagged, and ``selfcheck intervals`` measures the coverage of every
kind. Concrete's simulator on a linear circuit, or the interval functions on their own."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fhe_backend import cli
from fhe_backend.auditor.benchmarks import PlainBenchmark
from fhe_backend.audits import _fairness
from fhe_backend.audits.fairness import MIN_CONCLUSIVE, group_fairness
from fhe_backend.audits.metrics import classification_readings
from fhe_backend.hub.references import resolve_benchmark
from fhe_backend.orchestration import run_audit
from fhe_backend.report import dumps, markdown_report
from fhe_backend.ui import bias_render

COINS = 10


@pytest.fixture(scope="module")
def coin_audit() -> dict[str, Any]:
    """One simulated fairness audit of adult-income on 300 rows whose sensitive columns are
    ``sex`` and ten fair coins (each its own attribute, so its own reading)."""
    bench = resolve_benchmark("adult-income-test").head(300)
    rng = np.random.default_rng(20)
    coins = {f"coin{i}": rng.choice(["heads", "tails"], len(bench.frame)) for i in range(COINS)}
    frame = bench.frame.assign(**coins)
    coined = PlainBenchmark(**{**bench.__dict__, "frame": frame,
                               "sensitive_columns": ["sex", *coins]})
    return run_audit("adult-income-logreg", coined, fhe_mode="simulate",
                     audits="fairness").report


def test_a_fair_coin_reads_no_gap_and_a_real_gap_still_shows(coin_audit):
    fairness = coin_audit["fairness"]
    no_gap = {"demographic_parity_difference": 0.0, "demographic_parity_ratio": 1.0,
              "equal_opportunity_difference": 0.0}
    for gap, value in no_gap.items():
        held = sum(fairness[f"coin{i}"]["intervals"][gap][0] <= value
                   <= fairness[f"coin{i}"]["intervals"][gap][1] for i in range(COINS))
        assert held >= 8, (gap, held)  # a percentile bootstrap of max - min held 0 in none
    sex = fairness["sex"]
    assert sex["intervals"]["demographic_parity_difference"][0] > 0
    assert sex["intervals"]["demographic_parity_ratio"][1] < 1
    assert sex["reference_group"] == "Male"  # the largest group
    female = sex["pairwise"]["selection_rate"]["Female"]
    assert female["reference"] == "Male" and female["interval"][1] < 0
    assert female["n"] + female["n_reference"] == 300


def _intervals(data: Any, path: str = "") -> list[tuple[str, list[float]]]:
    """Every ``[low, high]`` pair of numbers under a key that names an interval (``intervals``,
    ``ratio_interval``...), at any depth of a report."""
    if isinstance(data, list) and len(data) == 2 and all(isinstance(v, float) for v in data):
        return [(path, data)] if "interval" in path else []
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(
        data, list) else ()
    return [found for key, value in items for found in _intervals(value, f"{path}.{key}")]


@pytest.mark.parametrize("k", [2, 3])
def test_no_interval_of_zero_width_in_a_perfect_score_report(k):
    """30 samples, every one right: each interval still says how little 30 samples show."""
    rng = np.random.default_rng(k)
    y = np.arange(30) % k
    scores = np.eye(k)[y] * 0.9 + 0.1 / k
    names = [f"c{c}" for c in range(k)]
    report = classification_readings(y, y, scores, names)
    groups = pd.Series(rng.choice(["a", "b"], 30))
    report["fairness"] = {"g": group_fairness(y, y, groups, 1)}
    found = _intervals(json.loads(dumps(report)))
    assert len(found) > 10
    flat = [(where, iv) for where, iv in found if not iv[1] - iv[0] > 1e-6]
    assert not flat, flat
    for name in ("balanced_accuracy", "f1", "roc_auc"):
        assert report["intervals"][name][0] < 0.95, name


def test_a_three_row_group_is_inconclusive_everywhere():
    rng = np.random.default_rng(5)
    y_true = rng.integers(0, 2, 1000)
    y_pred = np.where(rng.random(1000) < 0.8, y_true, 1 - y_true)
    groups = pd.Series(np.where(np.arange(1000) < 3, "tiny", rng.choice(["a", "b"], 1000)))
    result = group_fairness(y_true, y_pred, groups, 1)
    tiny = result["groups"]["tiny"]
    assert tiny["conclusive"] is False and f"fewer than {MIN_CONCLUSIVE}" in tiny["reason"]
    assert "3 rows" in tiny["reason"]
    assert result["conclusive"] is False and "tiny" in result["reason"]
    assert result["groups"]["a"]["conclusive"] is True
    # The interval of a gap resting on one positive reaches 0 rather than claiming a gap.
    for gap in ("demographic_parity_difference", "equalized_odds_difference"):
        assert result["intervals"][gap][0] == 0.0, gap
    report = {"fairness": {"grp": result}}
    data = json.loads(dumps(report))
    assert data["fairness"]["grp"]["groups"]["tiny"]["conclusive"] is False
    text = "\n".join(_fairness.summary(report))
    assert "inconclusive: 1 of 3 groups too small to read: tiny has only 3 rows" in text
    page = bias_render.fairness_reading(report, ["no", "yes"])
    assert "Inconclusive" in page and "tiny has only 3 rows" in page
    assert "no: only 3 rows" in bias_render.fairness_table(report)
    md = markdown_report({"metrics": {}, "model": "m", "benchmark": "b", "fhe_mode": "simulate",
                          "n_samples": 1000, "transcript": {"model_fingerprint": "f"},
                          **report})
    assert "| tiny | 3 |" in md and "no: only 3 rows" in md and "**Inconclusive" in md


def test_a_group_with_few_positives_is_inconclusive():
    # 200 rows is plenty for a selection rate, but 10 positives give a noisy TPR.
    y_true = np.r_[np.ones(10), np.zeros(190), np.ones(100), np.zeros(100)].astype(int)
    groups = pd.Series(["a"] * 200 + ["b"] * 200)
    result = group_fairness(y_true, y_true, groups, 1)
    assert result["groups"]["a"]["conclusive"] is False
    assert "10 positive-class samples" in result["groups"]["a"]["reason"]
    assert result["groups"]["b"]["conclusive"] is True


def test_pairwise_differences_are_newcombe_intervals_against_the_largest_group():
    from statsmodels.stats.proportion import confint_proportions_2indep

    y_pred = np.r_[np.ones(20), np.zeros(80), np.ones(30), np.zeros(170)].astype(int)
    groups = pd.Series(["small"] * 100 + ["big"] * 200)
    result = group_fairness(np.zeros(300, dtype=int), y_pred, groups, 1)
    assert result["reference_group"] == "big"
    entry = result["pairwise"]["selection_rate"]["small"]
    assert entry["difference"] == pytest.approx(0.2 - 0.15)
    assert entry["interval"] == pytest.approx(list(confint_proportions_2indep(
        20, 100, 30, 200, method="newcomb")))
    assert entry["ratio"] == pytest.approx(0.2 / 0.15)
    assert entry["ratio_interval"][0] < entry["ratio"] < entry["ratio_interval"][1]
    # No positive sample at all: TPR differences are undefined, with the reason.
    assert result["pairwise"]["tpr"]["small"]["interval"] is None
    assert "positive-class" in result["pairwise"]["tpr"]["small"]["reason"]


def test_selfcheck_intervals_covers_every_kind(capsys):
    assert cli.main(["selfcheck", "intervals", "--replicates", "25", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    kinds = {row["kind"]: row for row in result["kinds"]}
    assert {"accuracy", "balanced_accuracy", "f1", "roc_auc", "group difference",
            "group ratio", "demographic_parity_difference", "demographic_parity_ratio",
            "equal_opportunity_difference", "equalized_odds_difference",
            "accuracy, sealed with DP noise (epsilon 1)"} <= set(kinds)
    for kind, row in kinds.items():
        # 0.93 within simulation error: two standard errors of the pooled coverage.
        assert row["coverage"] + 2 * row["standard_error"] >= 0.93, (kind, row)
        assert row["verdict"] in ("ok", "conservative")
    assert result["cost"]["rows"] == 1000 and result["cost"]["fairness_ms"] > 0
    assert cli.main(["selfcheck", "intervals", "--replicates", "2"]) == 0
    text = capsys.readouterr().out
    assert "| interval kind | coverage |" in text and "cost at 1,000 rows" in text


def test_a_sensitive_column_of_too_many_groups_is_refused_before_anything_runs(tmp_path,
                                                                                capfd):
    """One group per row (an id declared sensitive): every pair of 171 groups took seconds per
    attribute, 10,000 groups hours; refused in one sentence before the run."""
    from hostile import many_groups_table
    from support import FAST_BENCHMARK, FAST_MODEL

    from fhe_backend import cli
    from fhe_backend.hub.references import resolve_benchmark

    bench = resolve_benchmark(FAST_BENCHMARK)
    table = many_groups_table(bench.frame.drop(columns=[bench.id_column]), tmp_path / "t.csv")
    code = cli.main(["audit", "--model", FAST_MODEL, "--benchmark", str(table),
                     "--sensitive-columns", "group", "--audits", "accuracy,fairness",
                     "--fhe", "simulate"])
    err = capfd.readouterr().err
    assert code == 2 and "has 171 groups, more than 50" in err
    assert len(err.strip().splitlines()) == 1


def test_selfcheck_claims_no_verdict_its_replicates_cannot_carry(capsys):
    """One set per setting: 18 of 18 intervals holding read "conservative" (1.000 +- 0.000),
    though a 95% interval does that 40% of the time; the verdict now comes from the coverage's
    Wilson interval."""
    assert cli.main(["selfcheck", "intervals", "--replicates", "1", "--json"]) == 0
    kinds = json.loads(capsys.readouterr().out)["kinds"]
    assert {row["verdict"] for row in kinds} == {"too few sets"}
    assert all(row["coverage_interval"][0] < 0.93 for row in kinds)
