"""Counterfactual intervals with probes clustered by sample, and the intervals (or stated
reasons) of the numbers that had none: checked by simulation, no FHE, a few seconds."""

from __future__ import annotations

import numpy as np
import pytest

from fhe_backend.auditor.client import Decrypted
from fhe_backend.auditor.probes import Query
from fhe_backend.audits.explain import counterfactual
from fhe_backend.audits.uncertainty import clustered_mean, clustered_proportion, wilson

PROBES = 4  # e.g. race with five values: four counterfactual probes per sample


def _flips(n: int, p: float, rho: float, rng: np.random.Generator) -> np.ndarray:
    """Flips per sample among its probes: each sample has its own flip propensity (beta with
    intra-sample correlation ``rho``), so its probes flip together."""
    a, b = p * (1 - rho) / rho, (1 - p) * (1 - rho) / rho
    return rng.binomial(PROBES, rng.beta(a, b, n))


@pytest.mark.parametrize(("n", "p", "rho"), [(30, 0.1, 0.5), (60, 0.3, 0.9), (171, 0.05, 0.7)])
def test_clustered_flip_rate_interval_covers_at_least_93_percent(n, p, rho):
    """Probes counted as independent (Wilson over all probes) covered 0.66-0.81 here."""
    rng = np.random.default_rng(11)
    runs, covered, naive = 600, 0, 0
    sizes = np.full(n, PROBES)
    for _ in range(runs):
        flips = _flips(n, p, rho, rng)
        low, high = clustered_proportion(flips, sizes)
        covered += low <= p <= high
        low, high = wilson(int(flips.sum()), n * PROBES)
        naive += low <= p <= high
    assert covered / runs >= 0.93, covered / runs
    assert naive / runs < 0.85  # the defect this replaces


def test_clustered_proportion_edges():
    sizes = np.full(50, PROBES)
    low, high = clustered_proportion(np.zeros(50), sizes)
    assert low == 0.0 and 0.05 < high < 0.1  # nothing flipped: bounded by samples, not probes
    low, high = clustered_proportion(np.full(50, PROBES), sizes)
    assert high == 1.0 and 0.9 < low < 0.95
    assert clustered_proportion(np.zeros(0), np.zeros(0)) is None


def test_clustered_mean_covers_and_refuses_without_spread():
    rng = np.random.default_rng(5)
    covered, runs, n = 0, 400, 40
    clusters = np.repeat(np.arange(n), PROBES)
    for _ in range(runs):
        shared = rng.normal(0.1, 0.3, n)[clusters]  # a sample's probes move together
        values = shared + rng.normal(0, 0.05, n * PROBES)
        low, high = clustered_mean(values, clusters)
        covered += low <= 0.1 <= high
    assert covered / runs >= 0.93
    assert clustered_mean(np.zeros(8), np.repeat(np.arange(2), 4)) is None
    assert clustered_mean(np.arange(4.0), np.zeros(4)) is None  # one cluster


def test_counterfactual_reports_clustered_intervals_and_states_missing_ones():
    """Ten samples whose four race probes flip together (all or none): the flip rate's interval
    is as wide as ten samples allow, not forty probes; sex never moves the score, so its mean
    change has no interval and says why."""
    sources = [f"s{i}" for i in range(10)]
    real = Decrypted([Query(s) for s in sources], np.tile([0.8, 0.2], (10, 1)))
    queries, scores = [], []
    for i, s in enumerate(sources):
        for v in range(PROBES):
            queries.append(Query(s, {"kind": "counterfactual", "attribute": "race", "value": v}))
            scores.append([0.3, 0.7] if i < 3 else [0.8, 0.2])
        queries.append(Query(s, {"kind": "counterfactual", "attribute": "sex", "value": 1}))
        scores.append([0.8, 0.2])
    out = counterfactual(real, Decrypted(queries, np.array(scores)))
    race, sex = out["race"], out["sex"]
    assert race["flip_rate"] == 0.3 and race["n_samples"] == 10 and race["n_probes"] == 40
    low, high = race["intervals"]["flip_rate"]
    naive_low, naive_high = wilson(12, 40)
    assert high - low > naive_high - naive_low
    assert race["intervals"]["mean_score_change"] is not None
    assert sex["flip_rate"] == 0.0 and sex["intervals"]["flip_rate"][1] > 0
    assert sex["intervals"]["mean_score_change"] is None
    assert "no spread" in sex["no_interval"]["mean_score_change"]


def test_clear_reference_has_intervals(fast_package, fast_benchmark):
    """Accuracy and agreement each come with a Wilson interval; an agreement not computed says
    why."""
    from fhe_backend.audits import clear_reference

    ids = fast_benchmark.sample_ids()[:40]
    reference = Decrypted([Query(s) for s in ids], np.tile([0.9, 0.1], (40, 1)))
    audited = Decrypted([Query(s) for s in ids],
                        np.array([[0.9, 0.1]] * 38 + [[0.1, 0.9]] * 2))
    ref = clear_reference(reference, audited, fast_benchmark, fast_package, "execute")
    assert ref["agreement"] == 0.95
    assert ref["intervals"]["agreement"] == list(wilson(38, 40))
    low, high = ref["intervals"]["accuracy"]
    assert low <= ref["accuracy"] <= high and high - low > 0.1
    simulated = clear_reference(reference, audited, fast_benchmark, fast_package, "simulate")
    assert simulated["agreement"] is None and simulated["intervals"]["agreement"] is None
    assert simulated["compared"].startswith("not computed")


def test_surrogate_fidelity_has_an_interval_and_descriptions_a_reason(fast_package,
                                                                      fast_benchmark):
    from fhe_backend.audits.explain import surrogates

    schema = fast_package.manifest.input_schema
    frame = fast_benchmark.frame
    first = frame[schema.column_names[0]].astype(float)
    labels = (first > first.median()).astype(int).to_numpy()
    out = surrogates(frame, labels, schema, fast_package.manifest.class_names)
    held = out["n_held_out"]
    assert held == 52  # 30% of 171 probes
    assert out["intervals"]["fidelity"] == list(wilson(round(out["fidelity"] * held), held))
    assert out["linear"]["intervals"]["fidelity"] is not None
    assert "not an estimate" in out["no_interval"]["rules"]


def test_space_counterfactual_reading_shows_the_clustered_interval():
    from fhe_backend.ui import bias_render

    report = {"counterfactual": {"race": {
        "n_probes": 40, "flip_rate": 0.3, "mean_score_change": 0.1,
        "mean_abs_score_change": 0.2, "intervals": {"flip_rate": [0.11, 0.58]}}}}
    reading = bias_render.counterfactual_reading(report, ["no", "yes"])
    assert "(n=40 probes; 95% CI 11.0% to 58.0%, probes clustered by sample)" in reading


def test_space_surrogate_reading_shows_the_fidelity_interval():
    from fhe_backend.ui import bias_render

    rules = "|--- a <= 0.50\n|   |--- class: x\n|--- a >  0.50\n|   |--- class: y\n"
    report = {"model": "any", "benchmark": "b", "fhe_mode": "simulate", "n_samples": 10,
              "surrogate": {"max_depth": 3, "n_probes": 100, "fidelity": 0.9, "rules": rules,
                            "intervals": {"fidelity": [0.8, 0.95]},
                            "linear": {"fidelity": 0.9, "weights": {"y": {"a": 1.0}}}}}
    reading = bias_render.surrogate_reading(report, ["x", "y"])
    assert "(its fidelity; 95% CI 80% to 95%)" in reading
