"""Sealed audits: counts computed under FHE equal the per-sample path's, padding and masked rows
never count, out-of-range groups are refused before encryption, a sealed run is never decrypted
per sample. Real FHE on the zoo's models that carry a sealed circuit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fhe_backend import cli
from fhe_backend.auditor.client import Auditor
from fhe_backend.auditor.sealed import SealedAuditor, encode
from fhe_backend.errors import CiphertextError, MismatchError, SchemaError
from fhe_backend.formats.bundle import pack_values, unpack_values
from fhe_backend.hub.references import resolve_benchmark, resolve_model
from fhe_backend.hub.zoo import benchmarks_for, model_ids
from fhe_backend.sealed.circuit import SealedLayout, has_sealed, sealed_view
from fhe_backend.server.run import FHEServer
from fhe_backend.untrusted.circuit import compile_server

SEALED_MODELS = [m for m in model_ids() if has_sealed(resolve_model(m))]
needs_sealed = pytest.mark.skipif("breast-cancer-logreg" not in SEALED_MODELS,
                                  reason="the zoo was built without sealed circuits")
# A sealed keyset takes ~1-2 min to generate on an idle 2-core machine, 15-20 min on a loaded one.
# Sealed keys for a 19-bit accumulator are ~0.5 GB and each batch costs hundreds of PBS: these
# run with `make test-heavy`.
HEAVY = pytest.mark.heavy
LONG = pytest.mark.timeout(3600)


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    matrix = np.zeros((2, 2), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


# -- no FHE ----------------------------------------------------------------------------------


def test_layout_counts_every_cell_and_nothing_masked():
    layout = SealedLayout.make(16, 3, [4], {})
    rng = np.random.default_rng(0)
    predictions = rng.integers(0, 2, 32)
    labels, groups = rng.integers(0, 2, 32), rng.integers(0, 3, 32)
    valid = rng.random(32) < 0.7
    codes = encode(labels, groups, valid, 3)
    counts = layout.counts(predictions, codes)
    assert counts.shape == (2, 6)
    expected = np.zeros((3, 2), dtype=np.int64)
    hit = valid & (predictions == 1)
    np.add.at(expected, (groups[hit], labels[hit]), 1)
    assert np.array_equal(layout.cells(counts.sum(axis=0)), expected)


def test_group_index_out_of_range_is_refused():
    with pytest.raises(SchemaError, match="out of range"):
        encode(np.array([0, 1]), np.array([0, 2]), np.array([True, True]), 2)
    with pytest.raises(SchemaError, match="binary labels"):
        encode(np.array([0, 2]), np.array([0, 0]), np.array([True, True]), 2)


def test_bundle_round_trip_and_truncation():
    values = [b"abc", b"", b"x" * 1000]
    blob = pack_values(values)
    assert unpack_values(blob) == values
    with pytest.raises(CiphertextError):
        unpack_values(blob[:-1])
    with pytest.raises(CiphertextError):
        unpack_values(blob + b"!")


def test_unsupported_family_is_recorded_not_raised(tmp_path):
    from fhe_backend.sealed.circuit import build_sealed

    entry = build_sealed(object(), np.zeros((4, 3)), tmp_path / "pkg")
    assert "not one of them" in entry["refused"]
    assert not (tmp_path / "pkg").exists()


@pytest.mark.parametrize("kind", ["linear", "tree"])
def test_plain_numpy_quantizer_equals_concrete_ml(kind):
    from concrete.ml.sklearn import LogisticRegression, XGBClassifier

    from fhe_backend.sealed.circuit import _quantizer_params, quantize

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5)) * [1, 10, 0.1, 3, 100]
    y = (X[:, 0] + X[:, 1] / 10 > 0).astype(int)
    model = (LogisticRegression(n_bits=8) if kind == "linear"
             else XGBClassifier(n_bits=3, n_estimators=3, max_depth=2)).fit(X, y)
    X_new = rng.normal(size=(500, 5)) * [2, 20, 0.2, 6, 200]  # beyond the range: clipping
    assert np.array_equal(quantize(X_new, _quantizer_params(model, 5)),
                          model.quantize_input(X_new))


def test_models_without_sealed_circuit_say_why():
    for model in model_ids():
        package = resolve_model(model)
        if not has_sealed(package):
            with pytest.raises(Exception, match="no sealed audit circuit"):
                sealed_view(package)


@pytest.mark.parametrize("model", SEALED_MODELS)
def test_sealed_circuits_pass_the_op_allow_list(model):
    from fhe_backend.untrusted.mlir_policy import check_mlir
    from fhe_backend.untrusted.safezip import read_member

    view = sealed_view(resolve_model(model))
    shape = check_mlir(read_member(view.server_zip, "circuit.mlir").decode("utf-8"))
    assert shape.sealed_module and {f.name for f in shape.functions} == {"count", "add", "noise"}


def test_sealed_circuit_is_covered_by_the_fingerprint(tmp_path):
    import shutil

    from fhe_backend.errors import ArtifactError
    from fhe_backend.formats.artifacts import ModelPackage

    if not SEALED_MODELS:
        pytest.skip("the zoo was built without sealed circuits")
    package = shutil.copytree(resolve_model(SEALED_MODELS[0]).path, tmp_path / "pkg")
    with open(package / "sealed_server.zip", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ArtifactError):
        ModelPackage.load(package)


# -- Concrete's simulator of the sealed circuit ------------------------------------------------


@pytest.mark.parametrize("model", SEALED_MODELS)
def test_masked_and_padding_rows_never_count(model):
    """Every row valid, then every row masked: the first counts the positives of each cell,
    the second nothing at all (simulator of the very MLIR that runs in FHE)."""
    from concrete import fhe

    package = resolve_model(model)
    view = sealed_view(package)
    layout = SealedLayout.from_dict(package.manifest.sealed)
    bench = resolve_benchmark(benchmarks_for(model)[0]).head(layout.batch_size)
    from fhe_backend.sealed.circuit import quantize

    q = quantize(package.manifest.input_schema.transform(bench.frame), layout.quantizer)
    labels = bench.labels(package.manifest.class_names)
    server = compile_server(view.server_zip, simulate=True)
    client = fhe.Client(server.client_specs, is_simulated=True)

    def counts(valid: np.ndarray) -> np.ndarray:
        code = encode(labels, np.zeros_like(labels), valid, layout.n_groups)
        args = client.simulate_encrypt(q, code, function_name="count")
        out = client.simulate_decrypt(server.run(*args, function_name="count"),
                                      function_name="count")
        return layout.cells(np.asarray(out).reshape(-1))

    assert counts(np.zeros(len(q), dtype=bool)).sum() == 0
    half = np.arange(len(q)) % 2 == 0
    full, masked = counts(np.ones(len(q), dtype=bool)), counts(half)
    assert full.sum() >= masked.sum()
    assert full[1:].sum() == 0 and masked[1:].sum() == 0  # group 0 only


def test_too_many_groups_is_refused_before_encryption(tmp_path):
    if "adult-income-logreg" not in SEALED_MODELS:
        pytest.skip("the zoo's adult model has no sealed circuit")
    package = resolve_model("adult-income-logreg")
    bench = resolve_benchmark("adult-income-test")
    auditor = SealedAuditor(package, tmp_path / "keys")
    with pytest.raises(SchemaError, match="out of range"):
        auditor.encrypt(bench, tmp_path / "out", group_column="race")  # 5 races, 2 groups
    assert not (tmp_path / "out").exists()
    assert not auditor.has_keys()  # refused before keys, let alone ciphertexts


# -- real FHE ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sealed_logreg(tmp_path_factory, audited):
    """The whole breast-cancer test set (171 rows: 10 full batches and one padded) sealed."""
    root = tmp_path_factory.mktemp("sealed")
    auditor = SealedAuditor(audited.package, audited.keys)
    encrypted = auditor.encrypt(audited.benchmark, root / "encrypted")
    run = FHEServer(audited.package).run(encrypted, root / "run")
    return auditor, encrypted, run


@HEAVY
@LONG
@needs_sealed
def test_sealed_counts_equal_per_sample_counts_full_benchmark(audited, sealed_logreg):
    auditor, encrypted, run = sealed_logreg
    assert encrypted.manifest.circuit == "sealed"
    assert run.transcript.circuit == "sealed"
    n = audited.benchmark.n_samples
    assert encrypted.manifest.n_samples == -(-n // auditor.layout.batch_size)
    counts = auditor.decrypt(run)
    per_sample = Auditor(audited.package, audited.keys).decrypt(audited.run)
    labels = audited.benchmark.labels(audited.package.manifest.class_names)
    index = {s: i for i, s in enumerate(audited.benchmark.sample_ids())}
    y_true = labels[[index[s] for s in per_sample.sources]]
    assert np.array_equal(counts.confusion(), confusion(y_true, per_sample.predictions))
    assert counts.totals.sum() == n  # the padded rows of the last batch counted nothing


@HEAVY
@LONG
@needs_sealed
def test_sealed_run_is_refused_by_the_per_sample_decrypt(audited, sealed_logreg):
    _, _, run = sealed_logreg
    with pytest.raises(MismatchError, match="sealed audit"):
        Auditor(audited.package, audited.keys).decrypt(run)
    with pytest.raises(MismatchError, match="not a sealed audit"):
        SealedAuditor(audited.package, audited.keys).decrypt(audited.run)


@HEAVY
@LONG
@needs_sealed
def test_decrypt_sealed_json(audited, sealed_logreg, capsys):
    _, _, run = sealed_logreg
    code = cli.main(["decrypt", "--sealed", "--json", "--run", str(run.path), "--keys",
                     str(audited.keys), "--benchmark", "breast-cancer-test"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["sealed"] is True and data["batch_size"] == 16
    assert data["n_batches"] == run.transcript.n_samples
    assert data["decrypted"]["values_total"] == 4 and data["decrypted"]["per_batch"] is False
    assert data["n_samples"] == audited.benchmark.n_samples
    assert data["metrics"]["roc_auc"] is None and "scores" in data["metrics"]["roc_auc_reason"]
    assert not {"predictions", "scores", "samples"} & set(data)


@HEAVY
@LONG
@pytest.mark.parametrize("model", [m for m in SEALED_MODELS if
                                   resolve_model(m).manifest.sealed.get("family") == "tree"])
def test_sealed_counts_equal_per_sample_counts_two_batches(tmp_path, model):
    """Tree models: two batches (the second padded), against per-sample real FHE. (A torch
    module's circuit rounds approximately, so neither path is exact for it.)"""
    package = resolve_model(model)
    layout = SealedLayout.from_dict(package.manifest.sealed)
    bench = resolve_benchmark(benchmarks_for(model)[0]).head(layout.batch_size + 4)
    sealed = SealedAuditor(package, tmp_path / "keys")
    encrypted = sealed.encrypt(bench, tmp_path / "sealed-enc")
    counts = sealed.decrypt(FHEServer(package).run(encrypted, tmp_path / "sealed-run"))
    auditor = Auditor(package, tmp_path / "keys")
    per_sample = auditor.decrypt(FHEServer(package).run(
        auditor.encrypt(bench, tmp_path / "enc"), tmp_path / "run"))
    labels = bench.labels(package.manifest.class_names)
    index = {s: i for i, s in enumerate(bench.sample_ids())}
    y_true = labels[[index[s] for s in per_sample.sources]]
    assert np.array_equal(counts.confusion(), confusion(y_true, per_sample.predictions))


@HEAVY
@LONG
@needs_sealed
def test_verify_a_sealed_run_by_its_counts(audited, sealed_logreg):
    from fhe_backend.verifier.verify import verify_run

    auditor, encrypted, run = sealed_logreg
    result = verify_run(audited.package, encrypted, run, auditor=auditor)
    assert result.ok and result.n_checked == encrypted.manifest.n_samples, result.problems
    assert result.n_identical + result.n_equivalent == 1  # one total compared


def test_metrics_from_counts_equal_the_per_sample_metrics():
    import pandas as pd

    from fhe_backend.auditor.sealed import SealedCounts, sealed_fairness, sealed_metrics
    from fhe_backend.audits.fairness import group_fairness
    from fhe_backend.audits.metrics import classification_metrics

    rng = np.random.default_rng(1)
    y_true, y_pred = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
    groups = rng.integers(0, 2, 300)
    positives, totals = np.zeros((2, 2), dtype=np.int64), np.zeros((2, 2), dtype=np.int64)
    np.add.at(totals, (groups, y_true), 1)
    np.add.at(positives, (groups[y_pred == 1], y_true[y_pred == 1]), 1)
    counts = SealedCounts(positives, totals, ["a", "b"], "sex", 19, 16)
    expected = classification_metrics(y_true, y_pred, np.zeros((300, 2)), 2)
    found = sealed_metrics(counts)
    assert {k: found[k] for k in expected if k != "roc_auc"} == {
        k: v for k, v in expected.items() if k != "roc_auc"}
    assert found["roc_auc"] is None
    names = pd.Series(np.where(groups == 0, "a", "b"))
    found, expected = sealed_fairness(counts)["sex"], group_fairness(y_true, y_pred, names, 1)
    # Every interval is a function of the counts (no bootstrap over rows whose order the
    # counts do not keep): the sealed report publishes the per-sample audit's intervals.
    assert found == expected
    from fhe_backend.audits.metrics import classification_readings
    from fhe_backend.sealed.report import sealed_readings

    sealed = sealed_readings(counts, ["no", "yes"])["intervals"]
    per_sample = classification_readings(y_true, y_pred, np.zeros((300, 2)), ["no", "yes"])
    assert {k: v for k, v in sealed.items() if k != "roc_auc"} == {
        k: v for k, v in per_sample["intervals"].items() if k != "roc_auc"}


def test_sealed_audit_refuses_per_sample_audits_and_simulation(capsys):
    if not SEALED_MODELS:
        pytest.skip("the zoo was built without sealed circuits")
    from fhe_backend.errors import AuditError
    from fhe_backend.orchestration import run_sealed_audit

    model = SEALED_MODELS[0]
    bench = resolve_benchmark(benchmarks_for(model)[0])
    with pytest.raises(AuditError, match="per-sample outputs"):
        run_sealed_audit(resolve_model(model), bench, audits="accuracy,importance")
    assert cli.main(["audit", "--sealed", "--fhe", "simulate", "--model", model,
                     "--benchmark", bench.benchmark_id]) == 2
    assert "FHE only" in capsys.readouterr().err


# -- circuits built here (small models, Concrete's simulator) ----------------------------------


def _simulated_counts(out_dir, q: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Counts of one batch through the saved sealed circuit, in Concrete's simulator."""
    import zipfile

    from concrete import fhe

    layout = SealedLayout.from_dict(json.loads(
        zipfile.ZipFile(out_dir / "sealed_client.zip").read("sealed.json")))
    server = compile_server(out_dir / "sealed_server.zip", simulate=True)
    client = fhe.Client(server.client_specs, is_simulated=True)
    code = encode(labels, np.zeros_like(labels), np.ones(len(labels), dtype=bool),
                  layout.n_groups)
    args = client.simulate_encrypt(q, code, function_name="count")
    out = client.simulate_decrypt(server.run(*args, function_name="count"), function_name="count")
    return layout.cells(np.asarray(out).reshape(-1))


def test_linear_sealed_decision_is_exact_over_the_whole_input_box(tmp_path):
    """Inputs far outside the calibration data (every corner of the quantizer's range) are
    decided as the model decides: the circuit's bit width covers every accumulator."""
    from concrete.ml.sklearn import LogisticRegression

    from fhe_backend.sealed.circuit import _classes_of, _quantizer_params, build_sealed, input_box

    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 6))
    y = (X @ [1, -2, 0.5, 3, -1, 0.2] > 0).astype(int)
    model = LogisticRegression(n_bits={"op_inputs": 4, "op_weights": 4}).fit(X, y)
    model.compile(X)
    entry = build_sealed(model, X, tmp_path, batch_size=8, n_groups=1)
    assert entry["family"] == "linear", entry
    low, high = input_box(_quantizer_params(model, 6))
    q = rng.choice([int(low), int(high)], size=(8, 6))  # corners, beyond the data
    labels = rng.integers(0, 2, 8)
    classes = _classes_of(model, model._inference(q))  # the per-sample path's decision
    expected_positive = np.zeros((1, 2), dtype=np.int64)
    np.add.at(expected_positive, (0, labels[classes == 1]), 1)
    assert np.array_equal(_simulated_counts(tmp_path, q, labels), expected_positive)


def test_torch_modules_binary_sealed_multiclass_refused(tmp_path):
    """A binary torch module gets a sealed circuit deciding like its clear forward pass on
    every calibration sample (checked while building); three classes are refused with why."""
    import torch
    from torch import nn

    from fhe_backend.owner.package import compile_model
    from fhe_backend.sealed.circuit import build_sealed

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4)).astype(np.float32)
    settings = {"n_bits": 3, "rounding_threshold_bits": None, "p_error": 0.01}
    entries = {}
    for n_out in (2, 3):
        torch.manual_seed(0)
        module = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, n_out))
        compiled = compile_model(module, X, settings)
        entries[n_out] = build_sealed(compiled, X, tmp_path / str(n_out), batch_size=4,
                                      n_groups=1)
    assert entries[2]["family"] == "neural", entries[2]
    assert entries[2]["pbs_per_sample"] > 0
    assert "binary classifiers only" in entries[3]["refused"]
    assert not (tmp_path / "3").exists()


@pytest.mark.parametrize(("extra", "says"), [
    (("--fhe", "sealed", "--group-column", "nope"), "has no column 'nope'"),
    (("--fhe", "sealed", "--bundle", "B"), "writes no bundle"),
    (("--fhe", "simulate", "--group-column", "nope"), "add --fhe sealed"),
], ids=["unknown group column", "bundle", "group column without sealed"])
def test_sealed_audit_options_are_refused_before_any_key(monkeypatch, capsys, tmp_path, extra,
                                                          says):
    """An unknown --group-column was found only when encrypting, after the sealed keygen
    (minutes); --bundle with a sealed audit, and --group-column without one, were ignored."""
    import fhe_backend.auditor.sealed as sealed

    def no_keygen(*_args, **_kwargs):
        raise AssertionError("keys were generated")

    monkeypatch.setattr(sealed.SealedAuditor, "keygen", no_keygen)
    extra = tuple(str(tmp_path / "b") if a == "B" else a for a in extra)
    code = cli.main(["audit", "--model", "breast-cancer-xgb", "--benchmark",
                     "breast-cancer-test", "--limit", "3", *extra])
    err = capsys.readouterr().err
    assert code == 2 and says in err and "Traceback" not in err, err


@pytest.mark.parametrize("sealed", [True, False], ids=["sealed", "per-sample"])
def test_key_directory_is_private_whatever_the_umask(tmp_path, monkeypatch, sealed):
    """Concrete writes the secret key as the umask says (0644 under 022); both auditors keep
    their keys in one KeyDirectory, which makes the folders 0700 and every file 0600."""
    import os
    import stat

    from fhe_backend.auditor.client import Auditor
    from fhe_backend.auditor.keydirs import KeyDirectory

    model = next((m for m in model_ids() if has_sealed(resolve_model(m))), None)
    if model is None:
        pytest.skip("the zoo was built without sealed circuits")
    auditor = (SealedAuditor if sealed else Auditor)(resolve_model(model), tmp_path / "keys")
    assert isinstance(auditor.keys, KeyDirectory)

    class Client:  # stands for Concrete's: writes its cache as the umask allows
        def keygen(self, force: bool = False) -> None:
            cache = auditor.dir / "cache" / "0"
            cache.mkdir(parents=True, exist_ok=True)
            (cache / "secretKey_0").write_bytes(b"secret")

        evaluation_keys = type("Keys", (), {"serialize": lambda self: b"evaluation"})()
        keys = type("Keys", (), {"serialize": lambda self: b"all keys"})()

    monkeypatch.setattr(KeyDirectory, "client", property(lambda self: Client()))
    old = os.umask(0o022)
    try:
        auditor.keygen()
    finally:
        os.umask(old)
    modes = {p.relative_to(tmp_path): stat.S_IMODE(p.stat().st_mode)
             for p in (tmp_path / "keys").rglob("*")}
    assert modes, "keygen wrote nothing"
    for path, mode in modes.items():
        expected = 0o700 if (tmp_path / path).is_dir() else 0o600
        assert mode == expected, (path, oct(mode))
