"""Bias and interpretability audits against known answers, in real FHE where it is fast.

Two logistic regressions are trained here on UCI Adult, one with ``sex`` as an input and one
without; linear circuits have no bootstrapping, so their FHE outputs are exact and the known
answers hold exactly.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from concrete.ml.sklearn import DecisionTreeClassifier
from concrete.ml.sklearn import LogisticRegression as FHELogisticRegression
from fairlearn.metrics import MetricFrame, demographic_parity_difference, selection_rate
from scipy.stats import spearmanr

from fhe_backend.audits import AuditOptions, build_plan
from fhe_backend.errors import AuditError
from fhe_backend.formats.schema import standardized_schema
from fhe_backend.hub.references import resolve_benchmark
from fhe_backend.hub.zoo import assets_dir
from fhe_backend.orchestration import run_audit
from fhe_backend.owner.package import package_model

CATEGORICAL = ["workclass", "marital-status", "occupation", "relationship", "race", "sex"]
N_AUDIT = 80


def adult_model(tmp_path, with_sex: bool):
    """A small Adult logistic regression, packaged; returns (package, schema, float model)."""
    train = pd.read_parquet(assets_dir() / "data" / "adult-train.parquet")
    train = train[~train.isin(["?"]).any(axis=1)].sample(4000, random_state=0)
    columns = ["age", "education-num", "hours-per-week", "capital-gain", *CATEGORICAL]
    if not with_sex:
        columns.remove("sex")
    bench = resolve_benchmark("adult-income-test").frame
    categories = {c: sorted(set(train[c]) | set(bench[c])) for c in CATEGORICAL if c in columns}
    schema = standardized_schema(train[columns], categories)
    X, y = schema.transform(train[columns]), (train["income"] == ">50K").to_numpy(int)
    model = FHELogisticRegression(n_bits=8).fit(X, y)
    package = package_model(
        model, X, tmp_path / ("with-sex" if with_sex else "without-sex"),
        model_id="adult-test-logreg", class_names=["<=50K", ">50K"], input_schema=schema,
        validation=(X[:500], y[:500]), float_accuracy=float(model.sklearn_model.score(X, y)))
    return package, schema, model


@pytest.fixture(scope="module")
def benchmark():
    bench = resolve_benchmark("adult-income-test").head(N_AUDIT)
    return dataclasses.replace(bench, fits_models=[])


@pytest.fixture(scope="module")
def with_sex(tmp_path_factory, benchmark):
    package, schema, model = adult_model(tmp_path_factory.mktemp("m"), with_sex=True)
    report = run_audit(package, benchmark, fhe_mode="execute",
                       audits="fairness,counterfactual,importance").report
    return package, schema, model, report


@pytest.fixture(scope="module")
def without_sex(tmp_path_factory, benchmark):
    package, schema, model = adult_model(tmp_path_factory.mktemp("m"), with_sex=False)
    report = run_audit(package, benchmark, fhe_mode="execute",
                       audits="counterfactual,importance").report
    return package, schema, model, report


def test_counterfactual_flip_rate_with_and_without_sex(with_sex, without_sex):
    flips_with = with_sex[3]["counterfactual"]["sex"]
    flips_without = without_sex[3]["counterfactual"]["sex"]
    assert flips_with["n_probes"] == N_AUDIT
    assert flips_with["flip_rate"] > 0
    assert flips_with["mean_abs_score_change"] > 0
    # a model without sex among its inputs gets no sex probe: its flip rate of 0 was true by
    # construction, not measured
    assert flips_without["n_probes"] == 0 and flips_without["not_an_input"]
    assert flips_without["flip_rate"] is None
    assert with_sex[3]["fhe_mode"] == "execute"


def test_occlusion_of_an_unused_feature_is_zero(without_sex):
    importance = {f["name"]: f["importance"] for f in without_sex[3]["importance"]["features"]}
    assert importance["sex"] == 0.0
    assert importance["relationship"] > 0


def test_occlusion_ranks_features_as_weight_times_deviation(with_sex, benchmark):
    _, schema, model, report = with_sex
    frame = benchmark.frame
    X = schema.transform(frame)
    weights = model.sklearn_model.coef_[0]
    expected = {}
    for column in schema.column_names:
        occluded = frame.copy()
        values = frame[column]
        numeric = pd.to_numeric(values, errors="coerce")
        occluded[column] = (numeric.median() if numeric.notna().all()
                            else values.astype(str).mode().iloc[0])
        expected[column] = float(np.mean(np.abs((X - schema.transform(occluded)) @ weights)))
    measured = {f["name"]: f["importance"] for f in report["importance"]["features"]}
    names = schema.column_names
    rho = spearmanr([expected[n] for n in names], [measured[n] for n in names]).statistic
    assert rho > 0.95, (expected, measured)
    top = sorted(names, key=lambda n: -expected[n])[:3]
    assert sorted(names, key=lambda n: -measured[n])[:3] == top


def test_fairness_equals_fairlearn_and_counts_add_up(with_sex, benchmark):
    report = with_sex[3]
    fairness = report["fairness"]
    assert set(fairness) == {"sex", "race"}
    for attribute in ("sex", "race"):
        groups = fairness[attribute]["groups"]
        assert sum(g["n"] for g in groups.values()) == N_AUDIT
    # Recompute from the decrypted predictions' selection rates with fairlearn itself.
    sex = fairness["sex"]["groups"]
    cm = report["metrics"]["confusion_matrix"]
    predicted_positive = cm[0][1] + cm[1][1]
    assert sum(g["selection_rate"] * g["n"] for g in sex.values()) == pytest.approx(
        predicted_positive)
    rates = [g["selection_rate"] for g in sex.values()]
    assert fairness["sex"]["demographic_parity_difference"] == pytest.approx(
        max(rates) - min(rates))


def test_fairness_matches_fairlearn_on_the_same_predictions():
    from fhe_backend.audits.fairness import group_fairness

    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
    groups = pd.Series(rng.choice(["a", "b", "c"], 300))
    ours = group_fairness(y_true, y_pred, groups, positive=1)
    frame = MetricFrame(metrics=selection_rate, y_true=y_true, y_pred=y_pred,
                        sensitive_features=groups)
    for group, rate in frame.by_group.items():
        assert ours["groups"][group]["selection_rate"] == pytest.approx(rate)
    assert ours["demographic_parity_difference"] == pytest.approx(
        demographic_parity_difference(y_true, y_pred, sensitive_features=groups))
    assert sum(g["n"] for g in ours["groups"].values()) == 300


def test_surrogate_of_the_same_family_is_faithful(tmp_path):
    bench = resolve_benchmark("breast-cancer-test")
    frame = bench.frame
    schema = standardized_schema(frame.drop(columns=["sample_id", "label"]), {})
    X = schema.transform(frame)
    y = (frame["label"] == "benign").to_numpy(int)
    tree = DecisionTreeClassifier(max_depth=2, n_bits=6).fit(X, y)
    package = package_model(tree, X, tmp_path / "tree", model_id="tiny-tree",
                            class_names=["malignant", "benign"], input_schema=schema,
                            float_accuracy=None)
    # Probes drawn from the auditor's data: with enough of them every value the model can
    # distinguish is seen in training, so the tree's thresholds are recovered exactly.
    options = AuditOptions(audits=("accuracy", "surrogate"), synthetic_per_sample=10)
    report = run_audit(package, dataclasses.replace(bench, fits_models=[]), fhe_mode="simulate",
                       audits=options).report
    assert report["fhe_mode"] == "simulate"
    assert report["surrogate"]["fidelity"] == 1.0
    assert "|---" in report["surrogate"]["rules"]


def test_budget_is_honoured_before_anything_runs():
    bench = resolve_benchmark("adult-income-test").head(50)
    from fhe_backend.hub.references import resolve_model

    package = resolve_model("adult-income-logreg")
    plan = build_plan(bench, package, AuditOptions.parse("importance"))
    with pytest.raises(AuditError, match=f"need {len(plan)} FHE queries, over the budget"):
        build_plan(bench, package, AuditOptions.parse("importance", budget=len(plan) - 1))


def test_german_credit_fairness_by_sex_and_age_group():
    """The zoo's German-credit model: group metrics for both derived attributes, and the sex
    counterfactual (sex is a model input, the age group is not: the model sees age)."""
    report = run_audit("german-credit-logreg", "german-credit-test", fhe_mode="execute",
                       audits="fairness,counterfactual", limit=60).report
    for attribute in ("sex", "age-group"):
        groups = report["fairness"][attribute]["groups"]
        assert sum(g["n"] for g in groups.values()) == 60
        assert 0 <= report["fairness"][attribute]["demographic_parity_ratio"] <= 1
    assert report["counterfactual"]["age-group"]["flip_rate"] is None  # not probed
    assert report["counterfactual"]["sex"]["n_probes"] == 60


def test_an_attribute_the_model_does_not_take_is_not_probed(capfd):
    """german-credit-logreg does not take age-group: its 60 probes were the samples themselves
    and read "flip rate 0.0000 (95% CI 0.0000 to 0.0621)", a measurement of nothing."""
    from fhe_backend import cli
    from fhe_backend.ui import bias_render

    code = cli.main(["audit", "--model", "german-credit-logreg", "--benchmark",
                     "german-credit-test", "--fhe", "simulate", "--limit", "40", "--audits",
                     "accuracy,counterfactual", "--json"])
    out, err = capfd.readouterr()
    assert code == 0, err
    report = json.loads(out)
    skipped = report["counterfactual"]["age-group"]
    assert skipped["n_probes"] == 0 and skipped["flip_rate"] is None
    assert "does not take age-group" in skipped["reason"]
    assert report["counterfactual"]["sex"]["n_probes"] == 40
    assert report["plan"]["queries"]["counterfactual"] == 40  # was 80: 40 for age-group
    bias_render.counterfactual_figure(report)
    assert "Not probed" in bias_render.counterfactual_reading(report, ["bad", "good"])
    assert "not an input" in bias_render.counterfactual_table(report)
