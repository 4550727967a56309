"""The committed zoo: every package validates, and every model runs in real FHE.

The fast model runs the whole held-out set elsewhere (test_pipeline); the slower ones run a
few samples each here, which is what the 20-minute CI budget allows.
"""

from __future__ import annotations

import pytest

from fhe_backend.hub.references import resolve_benchmark
from fhe_backend.hub.zoo import benchmarks_for, list_benchmarks, list_models
from fhe_backend.orchestration import run_audit

ZOO = ["breast-cancer-logreg", "breast-cancer-xgb", "adult-income-logreg", "adult-income-mlp",
       "german-credit-logreg", "digits-cnn"]
FAST = ("breast-cancer-logreg", "german-credit-logreg")
SLOW_SAMPLES = 3


def test_every_zoo_package_validates_and_has_a_benchmark():
    packages = {p.model_id: p for p in list_models()}
    assert set(ZOO) <= set(packages)
    for model_id in ZOO:
        manifest = packages[model_id].manifest
        assert manifest.versions["concrete-ml"] == "1.9.0"
        assert manifest.metrics["accuracy_float"] is not None
        assert manifest.measured.get("fhe_s_per_sample"), f"{model_id}: no measured latency"
        assert benchmarks_for(model_id), f"{model_id}: no benchmark fits it"


def test_benchmarks_fit_their_models_schemas():
    packages = {p.model_id: p for p in list_models()}
    for bench in list_benchmarks():
        for model_id in bench.fits_models:
            package = packages[model_id]
            package.manifest.input_schema.validate_frame(bench.frame)
            bench.labels(package.manifest.class_names)


@pytest.mark.slow
@pytest.mark.parametrize("model_id", [m for m in ZOO if m not in FAST])
def test_zoo_model_in_real_fhe(model_id):
    bench = resolve_benchmark(benchmarks_for(model_id)[0])
    outcome = run_audit(model_id, bench, fhe_mode="execute", limit=SLOW_SAMPLES)
    report = outcome.report
    assert report["fhe_mode"] == "execute"
    assert report["n_samples"] == SLOW_SAMPLES and report["n_failed"] == 0
    assert report["timing"]["fhe_s_per_sample"] > 0
    assert report["transcript"]["outputs_sha256"]
    # The same circuit in Concrete's simulator: near-identical labels (PBS errors are rare).
    assert report["clear_reference"]["agreement"] >= 2 / 3
