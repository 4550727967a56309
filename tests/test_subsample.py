"""Representative subsamples (``--limit`` draws a seeded stratified sample, ``--sample first``
the file's first rows, the report records which) and the predictions export."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from support import FAST_BENCHMARK, FAST_MODEL

from fhe_backend import cli
from fhe_backend.auditor.subsample import draw, strata_for
from fhe_backend.hub.references import resolve_benchmark


def _audit(capfd, *extra: str) -> dict:
    code = cli.main(["audit", "--model", FAST_MODEL, "--benchmark", FAST_BENCHMARK,
                     "--fhe", "simulate", "--json", *extra])
    out = capfd.readouterr().out
    assert code == 0, out
    return json.loads(out)


def test_limit_draws_a_stratified_sample_and_first_keeps_the_old_rows(capfd, tmp_path):
    """breast-cancer-test holds 64 malignant of 171, its first 20 rows 18: --limit 20 must
    audit about 7 (the confusion matrix's first row is the malignant samples); --predictions
    names exactly the drawn rows."""
    predictions = tmp_path / "p.csv"
    report = _audit(capfd, "--limit", "20", "--predictions", str(predictions))
    malignant = sum(report["metrics"]["confusion_matrix"][0])
    assert 4 <= malignant <= 12, malignant
    assert report["sample"] == {"method": "stratified", "seed": 0, "n": 20, "of": 171,
                                "strata": ["label"]}
    bench = resolve_benchmark(FAST_BENCHMARK)
    rows = pd.read_csv(predictions, dtype={"sample_id": str})
    assert sorted(rows["sample_id"]) == sorted(draw(bench, 20, seed=0).sample_ids())
    labels = bench.frame.set_index("sample_id")["label"].astype(str)
    assert int((labels[rows["sample_id"]] == "malignant").sum()) == malignant
    first = _audit(capfd, "--limit", "20", "--sample", "first")
    assert sum(first["metrics"]["confusion_matrix"][0]) == 18
    assert first["sample"] == {"method": "first", "seed": None, "n": 20, "of": 171}


def test_draw_is_seeded_proportional_and_in_file_order():
    bench = resolve_benchmark("adult-income-test")
    by = strata_for(bench, ["accuracy", "fairness"])
    assert by == ["sex", "race"]
    a, b = draw(bench, 60, seed=4, by=by), draw(bench, 60, seed=4, by=by)
    assert a.sample_ids() == b.sample_ids()
    assert a.sample_ids() != draw(bench, 60, seed=5, by=by).sample_ids()
    order = {s: i for i, s in enumerate(bench.sample_ids())}
    positions = [order[s] for s in a.sample_ids()]
    assert positions == sorted(positions) and len(set(positions)) == 60
    keys = ["label", *by]
    expected = bench.frame.groupby(keys).size() * 60 / len(bench.frame)
    got = a.frame.groupby(keys).size().reindex(expected.index, fill_value=0)
    assert (np.abs(got - expected) < 1).all()  # every stratum within one of proportional
    assert a.sample["strata"] == ["label", "sex", "race"]
    assert draw(bench, 10, method="first").sample_ids() == bench.sample_ids()[:10]
    assert draw(bench, None).sample == {"method": "all", "seed": None, "n": 1000, "of": 1000}


def test_split_roles_decrypt_the_rows_that_were_drawn(tmp_path, capfd, fast_package):
    """encrypt --limit draws; decrypt, given the whole benchmark, scores exactly the drawn rows
    (the ledger names them) and reports the same draw."""
    from fhe_backend.formats.artifacts import EncryptedBenchmark
    from fhe_backend.server.run import FHEServer

    keys = tmp_path / "keys"
    assert cli.main(["encrypt", "--model", FAST_MODEL, "--benchmark", FAST_BENCHMARK,
                     "--keys", str(keys), "--out", str(tmp_path / "enc"), "--limit", "6",
                     "--seed", "3", "--json"]) == 0
    capfd.readouterr()
    FHEServer(fast_package).run(EncryptedBenchmark.load(tmp_path / "enc"), tmp_path / "run")
    predictions = tmp_path / "predictions.csv"
    code = cli.main(["decrypt", "--run", str(tmp_path / "run"), "--keys", str(keys),
                     "--benchmark", FAST_BENCHMARK, "--predictions", str(predictions), "--json"])
    report = json.loads(capfd.readouterr().out)
    assert code == 0
    drawn = draw(resolve_benchmark(FAST_BENCHMARK), 6, seed=3, by=["label"])
    assert report["sample"] == drawn.sample and report["n_samples"] == 6
    rows = pd.read_csv(predictions, dtype={"sample_id": str})
    assert sorted(rows["sample_id"]) == sorted(drawn.sample_ids())


def test_decrypt_predictions_export(audited, tmp_path, capfd):
    """One row per real sample: its id, the predicted class and a score per class, agreeing
    with the metrics decrypt reports."""
    path = tmp_path / "predictions.csv"
    code = cli.main(["decrypt", "--run", str(audited.run.path), "--keys", str(audited.keys),
                     "--benchmark", FAST_BENCHMARK, "--predictions", str(path)])
    out = capfd.readouterr().out
    assert code == 0 and f"predictions: {path} (171 samples)" in out
    rows = pd.read_csv(path, dtype={"sample_id": str})
    assert list(rows.columns) == ["sample_id", "predicted", "score_malignant", "score_benign"]
    assert sorted(rows["sample_id"]) == sorted(audited.benchmark.sample_ids())
    assert set(rows["predicted"]) <= {"malignant", "benign"}
    scores = rows[["score_malignant", "score_benign"]].to_numpy()
    picked = np.where(scores[:, 0] >= scores[:, 1], "malignant", "benign")  # argmax: ties first
    assert (picked == rows["predicted"]).all()
    labels = audited.benchmark.frame.set_index("sample_id")["label"].astype(str)
    accuracy = float(np.mean(rows["predicted"].to_numpy() == labels[rows["sample_id"]]))
    assert accuracy > 0.9


@pytest.mark.parametrize("command", [
    ["decrypt", "--run", "RUN", "--keys", "KEYS", "--benchmark", FAST_BENCHMARK, "--sealed"],
    ["audit", "--model", FAST_MODEL, "--benchmark", FAST_BENCHMARK, "--fhe", "sealed"],
])
def test_sealed_runs_refuse_a_predictions_export(command, tmp_path, capfd):
    path = tmp_path / "p.csv"
    code = cli.main([*command, "--predictions", str(path)])
    err = capfd.readouterr().err
    assert code == 2 and "A sealed audit decrypts only aggregate counts, never a sample's " \
                         "prediction" in err
    assert not path.exists()


@pytest.mark.parametrize("where", ["folder", "missing", "keys"])
def test_a_bad_predictions_file_is_refused_before_anything_runs(where, tmp_path, capfd,
                                                                monkeypatch):
    """A folder, a missing folder or a place in a key directory is refused in one sentence
    before the run (it was refused after the whole FHE run, its answers lost; a key directory's
    keyset record could be replaced)."""
    from fhe_backend import orchestration
    from fhe_backend.auditor.keydirs import mark_key_dir

    mark_key_dir(tmp_path / "keys")
    path = {"folder": tmp_path, "missing": tmp_path / "nope" / "p.csv",
            "keys": tmp_path / "keys" / "keyset.json"}[where]
    ran = []
    monkeypatch.setattr(orchestration, "run_audit", lambda *a, **k: ran.append(1))
    code = cli.main(["audit", "--model", FAST_MODEL, "--benchmark", FAST_BENCHMARK,
                     "--fhe", "simulate", "--limit", "4", "--predictions", str(path)])
    err = capfd.readouterr().err
    assert code == 2 and not ran and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert where != "keys" or not path.exists()


def test_a_negative_seed_is_refused_in_one_sentence(capfd):
    """numpy refuses a negative seed with a traceback; the parser refuses it first (exit 2)."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(["audit", "--model", FAST_MODEL, "--benchmark", FAST_BENCHMARK,
                  "--fhe", "simulate", "--limit", "4", "--seed", "-1"])
    err = capfd.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err and "--seed" in err
