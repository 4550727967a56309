"""Published hidden layers and the representation audit: the layer circuits in the package (hashed,
fingerprinted, refused when tampered with), the probes' statistics on planted signals, costs and
refusals, and the audit end to end on the zoo's MLP (simulated; real FHE is heavy)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from fhe_backend.audits.probing import PERMUTATIONS, binary_target, probe, reading, roc_auc
from fhe_backend.errors import AuditError, IntegrityError, NotFoundError
from fhe_backend.formats.artifacts import ArtifactError, ModelPackage, representation_zips
from fhe_backend.formats.layers import layer_of, representation_view


def _signals(n: int = 300, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)), rng.normal(size=n), rng


def test_a_layer_that_makes_a_symmetric_attribute_linear_reads_beyond_the_inputs():
    X, _, _ = _signals()
    y = (np.abs(X[:, 0]) > 0.8).astype(int)  # no linear trace in the inputs: symmetric in x0
    layer = np.stack([np.maximum(X[:, 0] - 0.8, 0), np.maximum(-X[:, 0] - 0.8, 0), X[:, 1]], 1)
    p = probe(layer, X, None, y, "planted", seed=0)
    assert p["layer"]["roc_auc"] > 0.95 and p["inputs"]["roc_auc"] < 0.7
    assert p["encodes"] and p["beyond_inputs"]
    assert p["difference_vs_inputs"]["interval"][0] > 0
    assert p["permutation"]["p_value"] == pytest.approx(1 / (PERMUTATIONS + 1))
    assert "beyond what the inputs carry linearly" in reading("planted", p)


def test_a_layer_that_copies_the_inputs_encodes_no_more_than_they_do():
    X, noise, _ = _signals()
    y = (X[:, 0] + 0.5 * noise > 0).astype(int)
    p = probe(X.copy(), X, X[:, 1:], y, "linear", seed=0)
    assert p["encodes"] and not p["beyond_inputs"]
    assert p["inputs_without_attribute"]["roc_auc"] < 0.65  # x1, x2 do not carry it
    assert "no more than the inputs" in reading("linear", p)


def test_a_fair_coin_reads_no_evidence():
    X, _, rng = _signals()
    coin = rng.integers(0, 2, len(X))
    p = probe(np.maximum(X, 0), X, None, coin, "coin", seed=0)
    assert not p["encodes"] and not p["beyond_inputs"]
    low, high = p["permutation"]["interval"]
    assert low < 0.5 < high
    assert reading("coin", p).startswith("no evidence that the hidden layer encodes coin")


def test_targets_and_auc():
    y, text = binary_target(np.array(["a"] * 10 + ["b"] * 20 + ["c"] * 6))
    assert y.sum() == 20 and text == "'b' vs the rest"
    assert binary_target(np.array(["a"] * 30 + ["b"] * 4)) is None  # a fold would lack "b"
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> ModelPackage:
    """A 4-6-2 ReLU network publishing its hidden layer ("1"): compiled in seconds."""
    import torch

    from fhe_backend.owner.package import package_model

    X = np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32)
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2))
    return package_model(module, X, tmp_path_factory.mktemp("tiny") / "pkg", model_id="tiny",
                         class_names=["a", "b"], representations=["1"],
                         compile_settings={"n_bits": 4, "rounding_threshold_bits": None,
                                           "p_error": 0.01})


def test_a_published_layer_is_described_hashed_and_fingerprinted(tiny):
    from fhe_backend.formats.hashing import sha256_files

    entry = tiny.manifest.representations["1"]
    assert entry["module"] == "ReLU" and entry["width"] == 6 and entry["pbs_count"] > 0
    assert set(representation_zips("1")) <= set(tiny.manifest.files)
    # The layer's circuit is covered: the fingerprint is not the stock zips' alone.
    assert tiny.fingerprint != sha256_files([tiny.client_zip, tiny.server_zip])
    view = representation_view(tiny, "1")
    assert view.server_zip.name == "representation-1-server.zip"
    assert view.fingerprint == tiny.fingerprint


def test_a_tampered_or_undeclared_layer_is_refused(tiny, tmp_path):
    copy = shutil.copytree(tiny.path, tmp_path / "copy")
    server = copy / representation_zips("1")[1]
    server.write_bytes(server.read_bytes() + b"\0")
    with pytest.raises(IntegrityError):
        ModelPackage.load(copy)
    undeclared = shutil.copytree(tiny.path, tmp_path / "undeclared")
    manifest = json.loads((undeclared / "manifest.json").read_text())
    manifest["representations"] = {}
    (undeclared / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="two zips each"):
        ModelPackage.load(undeclared)
    manifest["representations"] = {"../x": {}}
    (undeclared / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="representations"):
        ModelPackage.load(undeclared)


def test_layers_are_named_and_missing_ones_say_so(tiny):
    from fhe_backend.owner.package import truncated_module

    assert layer_of("representation:fc1") == "fc1"
    assert layer_of("representation:../x") is None and layer_of("model") is None
    with pytest.raises(NotFoundError, match=r"no hidden layer 'fc2' \(it publishes 1\)"):
        representation_view(tiny, "fc2")
    import torch

    with pytest.raises(AuditError, match=r"no layer 'fc9'; name one of its submodules \(0, 1, 2\)"):
        truncated_module(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU(),
                                             torch.nn.Linear(2, 2)), "fc9")


MLP, ADULT = "adult-income-mlp", "adult-income-test"


def _with_coin(n: int):
    """The adult benchmark's first ``n`` rows with a fair coin as a third sensitive attribute."""
    import dataclasses

    from fhe_backend.hub.references import resolve_benchmark

    bench = resolve_benchmark(ADULT).head(n)
    frame = bench.frame.copy()
    frame["coin"] = np.where(np.random.default_rng(1000).integers(0, 2, n) == 1, "heads", "tails")
    return dataclasses.replace(bench, frame=frame,
                               sensitive_columns=[*bench.sensitive_columns, "coin"])


def test_costs_are_stated_and_refusals_are_one_sentence():
    from fhe_backend.orchestration import check_sealed_audits, plan_audit

    plan = plan_audit(MLP, ADULT, fhe_mode="simulate", limit=50, audits="representation")
    layer = plan["representation"]["layers"]["1"]
    assert plan["queries"] == {"samples": 50, "representation": 50} and plan["n_queries"] == 100
    assert layer["width"] == 16 and layer["pbs_per_sample"] > 0 and layer["key_bytes_in_memory"]
    with pytest.raises(NotFoundError, match="publishes no hidden layer, which the representation"):
        plan_audit("adult-income-logreg", ADULT, limit=50, audits="representation")
    from fhe_backend.auditor.client import Decrypted
    from fhe_backend.audits import AuditOptions, evaluate
    from fhe_backend.hub.references import resolve_benchmark, resolve_model

    with pytest.raises(AuditError, match="which only the audit command encrypts"):
        evaluate(Decrypted([], np.zeros((0, 2))), resolve_benchmark(ADULT), resolve_model(MLP),
                 AuditOptions.parse("representation"))
    with pytest.raises(AuditError, match=r"^A sealed audit computes accuracy and fairness only; "
                                         r"representation need per-sample outputs\.$"):
        check_sealed_audits("representation")


@pytest.fixture(scope="module")
def simulated() -> dict:
    from fhe_backend.orchestration import run_audit

    return run_audit(MLP, _with_coin(120), fhe_mode="simulate", audits="representation").report


def test_the_representation_audit_on_the_mlp_reads_sex_race_and_a_coin(simulated):
    """Simulated, 120 samples: every target gets probe metrics with intervals, both baselines
    and the permutation control; the fair coin reads "no evidence"; the label, which the layer
    exists to encode, is encoded."""
    report = simulated
    probes = report["representation"]["probes"]["1"]
    for name in ("sex", "race", "coin", "label"):
        p = probes[name]
        assert p["n"] == 120 and len(p["layer"]["roc_auc_interval"]) == 2
        assert len(p["inputs"]["accuracy_interval"]) == 2 and p["majority"]["roc_auc"] == 0.5
        assert len(p["permutation"]["interval"]) == 2 and p["permutation"]["repeats"] > 1
    assert "inputs_without_attribute" in probes["sex"]  # sex is one of the model's inputs
    assert probes["coin"]["reading"].startswith("no evidence that the hidden layer encodes coin")
    assert probes["label"]["encodes"]
    assert report["plan"]["queries"]["representation"] == 120
    assert report["representation"]["measured"]["1"]["simulate_s"] > 0


def test_the_reading_reaches_the_cli_the_report_and_the_bias_tab(simulated):
    from fhe_backend.audits import AUDITS
    from fhe_backend.report import markdown_report
    from fhe_backend.ui import bias_render

    lines = AUDITS["representation"].summary(simulated)
    assert lines[0] == "  representation of layer 1 (ReLU, 16 units):"
    assert any(line.startswith("    coin: no evidence") for line in lines)
    markdown = markdown_report(simulated)
    assert "## What hidden layer 1 encodes (ReLU, 16 units)" in markdown
    assert "| sex ('Male' vs 'Female') | " in markdown
    figure, reading = bias_render.section("representation", simulated, ["<=50K", ">50K"])
    assert figure.axes and "**Layer 1** (ReLU, 16 units)" in reading
    assert "- **coin**: no evidence" in reading
    assert "representation" in bias_render.cost_table(simulated["plan"])


@pytest.mark.heavy
def test_decrypted_activations_are_the_clear_quantized_layer(tmp_path):
    """Real FHE on 30 samples: the MLP's hidden layer decrypted by its own auditor is the same
    prefix retrained with the zoo's seed, quantized and run in clear, up to the circuit's
    approximations (approximate rounding, p_error 0.05 per lookup), and no further from it than
    Concrete's simulator of the same circuit, which models those approximations."""
    from fhe_backend.audits import simulate_layer
    from fhe_backend.hub.references import resolve_model
    from fhe_backend.orchestration import layer_activations
    from fhe_backend.owner import zoo_build
    from fhe_backend.owner.package import compile_model, truncated_module

    package, bench = resolve_model(MLP), _with_coin(30)
    activations, measured = layer_activations(package, bench, "execute", tmp_path / "keys",
                                              tmp_path, lambda *_: None)
    decrypted = activations["1"]
    assert measured["1"]["n_failed"] == 0 and measured["1"]["fhe_s_per_sample"] > 0
    simulated = simulate_layer(package, "1", bench)
    trained = zoo_build.adult_income_mlp()
    prefix = compile_model(truncated_module(trained.model, "1"), trained.X_train,
                           trained.compile_settings)
    ids = list(bench.frame[bench.id_column].astype(str))
    X = package.manifest.input_schema.transform(bench.frame)

    def clear(sources: list[str]) -> np.ndarray:
        rows = X[[ids.index(s) for s in sources]].astype(np.float32)
        return prefix.forward(rows, fhe="disable").reshape(len(rows), -1)

    step = float(np.min(np.diff(np.unique(clear(ids)))))  # one quantization step
    fhe_steps = np.abs(decrypted.scores - clear(decrypted.sources)) / step
    sim_steps = np.abs(simulated.scores - clear(simulated.sources)) / step
    print(f"FHE vs clear: exact {np.mean(fhe_steps < 0.5):.3f}, within one step "
          f"{np.mean(fhe_steps < 1.5):.3f}, largest {fhe_steps.max():.0f} steps; simulator vs "
          f"clear: exact {np.mean(sim_steps < 0.5):.3f}, within one step "
          f"{np.mean(sim_steps < 1.5):.3f}; {measured['1']}")
    assert decrypted.scores.shape == (30, 16)
    assert np.mean(fhe_steps < 0.5) > 0.7 and np.mean(fhe_steps < 2.5) > 0.95
    assert abs(np.mean(fhe_steps < 0.5) - np.mean(sim_steps < 0.5)) < 0.1


def test_a_published_package_carries_its_layers(tmp_path):
    """The Hub folder of a model with a published layer holds the layer's zips, and loads."""
    from fhe_backend.hub.publish import publish_model

    result = publish_model(MLP, "o/mlp", dry_run=True, out=tmp_path / "hub")
    assert set(representation_zips("1")) <= set(result.files)
    assert ModelPackage.load(result.folder).manifest.representations["1"]["width"] == 16


def test_a_run_of_one_circuit_is_not_decrypted_as_another(audited):
    """Keys for a layer's circuit refuse a run of the model's circuit (and the reverse: the
    circuit is compared before any ciphertext is read)."""
    from fhe_backend.auditor.client import Auditor
    from fhe_backend.errors import MismatchError

    auditor = Auditor(audited.package, audited.keys)
    auditor.circuit = "representation:1"
    with pytest.raises(MismatchError, match="run is of the 'model' circuit; these keys decrypt "
                                            "the 'representation:1' circuit's"):
        auditor.decrypt(audited.run)


def test_the_split_encrypt_command_refuses_the_kind_before_any_key(tmp_path, capsys):
    from fhe_backend import cli

    code = cli.main(["encrypt", "--model", MLP, "--benchmark", ADULT, "--audits",
                     "representation", "--keys", str(tmp_path / "keys"), "--out",
                     str(tmp_path / "enc"), "--limit", "5"])
    assert code == 2 and not (tmp_path / "keys").exists()
    assert "which only the audit command encrypts so far" in capsys.readouterr().err


def test_a_layer_circuit_is_vetted_like_the_models(tmp_path):
    """The zoo's published layers pass the MLIR allow-list; a layer whose circuit calls out of
    the allow-list is refused before compilation, before any key exists."""
    from hostile import edit_member, resign_package

    from fhe_backend.auditor.layers import LayerAuditor
    from fhe_backend.hub.references import resolve_model
    from fhe_backend.untrusted.mlir_policy import check_mlir
    from fhe_backend.untrusted.sandbox import read_circuit

    for model in (MLP, "digits-cnn"):
        layer_mlir, _ = read_circuit(representation_view(resolve_model(model), "1").server_zip)
        shape = check_mlir(layer_mlir.decode("utf-8"))
        assert shape.n_inputs == 1 and shape.n_outputs == 1, model
    package = resolve_model(MLP)
    mlir, _ = read_circuit(representation_view(package, "1").server_zip)
    copy = shutil.copytree(package.path, tmp_path / "pkg")
    hostile = mlir.decode("utf-8").replace("module {", "module {\n  llvm.func @system(i64) -> i32",
                                           1)
    edit_member(copy / representation_zips("1")[1], "circuit.mlir", hostile.encode("utf-8"))
    resign_package(copy)
    with pytest.raises(ArtifactError, match="refused before compilation"):
        LayerAuditor(ModelPackage.load(copy), tmp_path / "keys", "1").keygen()
    assert not (tmp_path / "keys").exists() or not any((tmp_path / "keys").rglob("*.json"))


def test_the_bias_tab_offers_the_kind_only_for_a_model_that_publishes_a_layer():
    """The tab ticks every audit that fits by default: a model without a layer must not get
    one that can only refuse (nor the sealed mode's "untick ..." sentence grow a name)."""
    from fhe_backend.hub.references import resolve_benchmark, resolve_model
    from fhe_backend.ui import bias

    bench = resolve_benchmark(ADULT)
    assert "representation" not in bias.fitting_audits(bench, resolve_model("adult-income-logreg"))
    assert "representation" not in bias.fitting_audits(bench)
    assert bias.fitting_audits(bench, resolve_model(MLP))[-1] == "representation"
