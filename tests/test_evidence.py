"""Honest readings: 95% intervals, undefined metrics as null with a reason, no exoneration from
few samples, simulation not compared with itself, seeded and repeatable reports, and the audit
bundle that one ``verify`` command checks (without a byte of the secret key)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fairlearn import metrics as fm
from sklearn import metrics as skm
from support import FAST_BENCHMARK, FAST_MODEL

from fhe_backend import cli
from fhe_backend.auditor.client import DemoKeys
from fhe_backend.audits.explain import MIN_SAMPLES
from fhe_backend.audits.fairness import group_fairness
from fhe_backend.audits.metrics import classification_metrics, classification_readings
from fhe_backend.audits.uncertainty import bootstrap, format_metric, wilson
from fhe_backend.orchestration import run_audit
from fhe_backend.report import REPORT_JSON, REPORT_MD, VERIFY_TXT, dumps, markdown_report

REPO = Path(__file__).resolve().parent.parent


# -- intervals -----------------------------------------------------------------------------


def test_wilson_interval_known_values():
    # 5 of 5 correct: the interval still admits an accuracy of 57% (Wilson, z = 1.96).
    low, high = wilson(5, 5)
    assert high == 1.0 and low == pytest.approx(0.5655, abs=1e-4)
    assert wilson(0, 5)[0] == 0.0 and wilson(0, 5)[1] == pytest.approx(0.4345, abs=1e-4)
    low, high = wilson(90, 100)
    assert low == pytest.approx(0.8256, abs=1e-4) and high == pytest.approx(0.9448, abs=1e-4)
    assert wilson(0, 0) is None


def test_bootstrap_is_seeded_and_repeatable():
    x = np.random.default_rng(1).normal(size=50)
    first = bootstrap(lambda i: x[i].mean(), len(x))
    assert np.array_equal(first, bootstrap(lambda i: x[i].mean(), len(x)))
    assert first[0] < x.mean() < first[1]
    assert not np.array_equal(first, bootstrap(lambda i: x[i].mean(), len(x), seed=1))


def test_a_handful_of_perfect_samples_gets_wide_intervals_not_a_point():
    # 5 samples ranked perfectly: a percentile bootstrap would say ROC-AUC [1.0, 1.0]; the score
    # intervals of the parts still say how little 5 samples show.
    y = np.array([0, 0, 0, 1, 1])
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.2, 0.8], [0.1, 0.9]])
    readings = classification_readings(y, y, scores, ["no", "yes"])
    assert readings["metrics"]["roc_auc"] == 1.0
    for name in ("accuracy", "balanced_accuracy", "f1", "roc_auc"):
        low, high = readings["intervals"][name]
        assert low < 0.8 and high == pytest.approx(1.0), name
    x = np.arange(20.0)
    assert bootstrap(lambda i: x[i].mean(), 19) is None
    assert bootstrap(lambda i: x[i].mean(), 20) is not None


def test_format_metric():
    assert format_metric(0.91234, [0.87, 0.94]) == "0.912 (95% CI 0.870 to 0.940)"
    assert format_metric(None, reason="no sample was predicted as 'malignant'") == \
        "n/a (no sample was predicted as 'malignant')"
    assert format_metric(float("nan")) == "n/a"
    assert format_metric(-0.05, [-0.1, 0.0], digits=2) == "-0.05 (95% CI -0.10 to 0.00)"


# -- metrics -------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 3, 10])
def test_metrics_match_scikit_learn_where_defined(k):
    rng = np.random.default_rng(k)
    y_true, y_pred = rng.integers(0, k, 60), rng.integers(0, k, 60)
    scores = rng.dirichlet(np.ones(k), 60)
    ours = classification_metrics(y_true, y_pred, scores, k)
    average = "binary" if k == 2 else "macro"
    kwargs = {"average": average, "zero_division": np.nan}
    if k > 2:
        kwargs["labels"] = list(range(k))
    assert ours["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert ours["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))
    for name, func in (("precision", skm.precision_score), ("recall", skm.recall_score),
                       ("f1", skm.f1_score)):
        assert ours[name] == pytest.approx(func(y_true, y_pred, **kwargs)), name


def test_one_class_sample_gives_undefined_not_zero():
    """breast-cancer on 5 benign samples: accuracy 1, and no precision/recall/F1 at all."""
    y = np.zeros(5, dtype=int)
    scores = np.tile([0.9, 0.1], (5, 1))
    out = classification_readings(y, y, scores, ["benign", "malignant"])
    m = out["metrics"]
    assert m["accuracy"] == 1.0
    assert m["precision"] is None and m["recall"] is None and m["f1"] is None
    assert m["roc_auc"] is None
    assert out["undefined_metrics"]["precision"] == "no sample was predicted as 'malignant'"
    assert "no sample of 'malignant'" in out["undefined_metrics"]["recall"]
    # the samples audited, which a --limit draw may take without a class the benchmark has
    assert not any("benchmark" in why for why in out["undefined_metrics"].values())
    assert out["positive_class"] == "malignant" and "binary" in out["averaging"]
    assert out["intervals"]["accuracy"][0] == pytest.approx(0.5655, abs=1e-4)
    assert out["intervals"]["precision"] is None
    text = markdown_report({**out, "model": "m", "benchmark": "b", "fhe_mode": "execute",
                            "n_samples": 5, "transcript": {"model_fingerprint": "f"}})
    assert "| precision | n/a (no sample was predicted as 'malignant') |" in text
    assert "positive class: 'malignant'" in text


def test_no_sample_decrypted_gives_null_json_not_nan():
    empty = np.zeros(0, dtype=int)
    out = classification_readings(empty, empty, np.zeros((0, 2)), ["a", "b"])
    text = dumps({"metrics": out["metrics"], "x": float("nan"), "y": [float("inf")]})
    data = json.loads(text)  # strict JSON: would fail on NaN with allow_nan=False
    assert data["metrics"]["accuracy"] is None and data["x"] is None and data["y"] == [None]
    assert out["undefined_metrics"]["accuracy"] == "no sample was decrypted"


def test_fairness_gaps_equal_fairlearn_with_intervals():
    rng = np.random.default_rng(3)
    y_true, y_pred = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    groups = pd.Series(rng.choice(["a", "b", "c"], 200))
    ours = group_fairness(y_true, y_pred, groups, 1)
    assert ours["equalized_odds_difference"] == pytest.approx(
        fm.equalized_odds_difference(y_true, y_pred, sensitive_features=groups))
    assert ours["equal_opportunity_difference"] == pytest.approx(
        fm.equal_opportunity_difference(y_true, y_pred, sensitive_features=groups))
    intervals = ours["intervals"]
    for gap in ("demographic_parity_difference", "equalized_odds_difference"):
        low, high = intervals[gap]
        assert low <= ours[gap] <= high
    low, high = intervals["groups"]["a"]["selection_rate"]
    assert low <= ours["groups"]["a"]["selection_rate"] <= high


def test_group_without_positives_has_no_tpr():
    y_true = np.array([0, 0, 0, 1, 1, 0])
    y_pred = np.array([0, 1, 0, 1, 0, 0])
    groups = pd.Series(["a", "a", "a", "b", "b", "b"])
    out = group_fairness(y_true, y_pred, groups, 1)
    assert out["groups"]["a"]["tpr"] is None  # fairlearn says 0.0
    assert "no sample of the positive class" in out["undefined"]["a.tpr"]
    assert out["equal_opportunity_difference"] == 0.0  # one group defined: no gap to measure


# -- readings and reproducibility (Concrete's simulator; linear circuit) --------------------


@pytest.fixture(scope="module")
def few():
    return run_audit("adult-income-logreg", "adult-income-test", fhe_mode="simulate", limit=3,
                     audits="fairness,importance").report


def test_few_samples_never_exonerate(few):
    assert few["readings"]["conclusive"] is False
    assert few["readings"]["min_samples"] == MIN_SAMPLES
    assert "Inconclusive: 3 samples" in few["readings"]["note"]
    zero = [f for f in few["importance"]["features"] if f["importance"] == 0]
    assert zero, "three samples should leave some feature without effect"
    assert all(f["reading"].startswith("no effect on these 3 samples; it acts on at most ")
               and f["interval"] is None and f["moved_share_upper"] > 0.6 for f in zero)
    text = markdown_report(few)
    assert "does not use" not in text and "Inconclusive" in text


def test_simulation_reports_no_agreement_with_itself(few):
    ref = few["clear_reference"]
    assert ref["agreement"] is None and "simulator" in ref["compared"]


def test_seeded_report_is_repeatable_and_records_its_seed():
    kwargs = {"fhe_mode": "simulate", "limit": 40, "audits": "fairness,importance,surrogate"}
    first = run_audit("adult-income-logreg", "adult-income-test", seed=7, **kwargs).report
    second = run_audit("adult-income-logreg", "adult-income-test", seed=7, **kwargs).report
    assert first["reproducibility"]["seed"] == 7 and first["readings"]["conclusive"]
    assert {**first, "timing": None} == {**second, "timing": None}
    for f in first["importance"]["features"]:
        low, high = f["interval"]
        assert low <= f["importance"] <= high
        assert f["rank_interval"][0] <= f["rank"] <= f["rank_interval"][1]
    assert set(first["intervals"]) >= {"accuracy", "precision", "recall", "f1", "roc_auc"}
    assert "intervals" in first["fairness"]["sex"]


# -- the audit bundle (real FHE) -----------------------------------------------------------


def test_bundle_verifies_with_its_own_command_and_holds_no_key(tmp_path, monkeypatch, capfd):
    from support import Secrets, file_blobs

    stash = tmp_path / "demo-keys"
    close = DemoKeys.__exit__

    def keep(self, *exc):
        shutil.copytree(self.path, stash / self.path.name)
        close(self, *exc)

    monkeypatch.setattr(DemoKeys, "__exit__", keep)
    bundle = tmp_path / "bundle"
    assert cli.main(["audit", "--model", FAST_MODEL, "--benchmark", FAST_BENCHMARK,
                     "--limit", "6", "--bundle", str(bundle)]) == 0
    capfd.readouterr()
    for name in (REPORT_JSON, REPORT_MD, VERIFY_TXT, "transcript.json", "encrypted", "run"):
        assert (bundle / name).exists(), name
    record = json.loads((bundle / REPORT_JSON).read_text())
    assert record["created_at"] and record["positive_class"] == "benign"  # the second class
    assert record["intervals"]["accuracy"]
    assert record["transcript"]["model_fingerprint"]
    markdown = (bundle / REPORT_MD).read_text()
    assert "- date: " in markdown and "95% CI" in markdown and "positive class" in markdown
    command = (bundle / VERIFY_TXT).read_text().strip().splitlines()[-1]
    assert command == record["verify_command"]
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "fhe_backend"]
    result = subprocess.run([sys.executable, *argv[1:]], cwd=bundle, capture_output=True,
                            text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Verified" in result.stdout
    # Not one window of the secret key, raw or hex, in any file of the bundle.
    secrets = Secrets()
    for keys in stash.iterdir():
        secrets.add_key_dir(keys)
    leaks = [(name, how) for name, blob in file_blobs(bundle) if (how := secrets.leak(blob))]
    assert not leaks
    assert not list(bundle.rglob("keyset.json")) and not list(bundle.rglob("cache"))


def test_bundle_refuses_a_folder_that_is_not_empty(tmp_path, capfd):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("x")
    code = cli.main(["audit", "--model", FAST_MODEL, "--benchmark", FAST_BENCHMARK,
                     "--limit", "2", "--bundle", str(tmp_path / "b")])
    assert code == 2 and "is not empty" in capfd.readouterr().err


def test_one_half_width_for_the_importance_subsample():
    """The stopping rule's half-width is uncertainty's, the normal approximation of a mean."""
    from fhe_backend.audits import sampling, uncertainty

    assert sampling.half_width is uncertainty.half_width
    assert uncertainty.half_width([0.0, 2.0]) == pytest.approx(uncertainty.Z95)
    assert uncertainty.half_width([1.0]) == float("inf")
