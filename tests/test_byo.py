"""Bring your own model and test set: import-model, package_model (torch, NeuralNetClassifier),
table benchmarks, the auditor's registry, one-sentence schema errors, the README walkthrough."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from concrete.ml.deployment import FHEModelDev
from concrete.ml.sklearn import LogisticRegression, NeuralNetClassifier
from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split

from fhe_backend.auditor.benchmarks import PlainBenchmark, TableColumns, benchmark_from_upload
from fhe_backend.cli import main
from fhe_backend.errors import ArtifactError, AuditError, MismatchError, SchemaError
from fhe_backend.formats.artifacts import ModelPackage
from fhe_backend.formats.hashing import sha256_files
from fhe_backend.hub.references import resolve_benchmark
from fhe_backend.hub.registry import register
from fhe_backend.orchestration import run_audit
from fhe_backend.owner.importer import import_model
from fhe_backend.owner.package import package_model, schema_from_steps

REPO = Path(__file__).resolve().parent.parent
REGIONS = ["north", "south"]


@dataclass
class Wine:
    """The owner's deployment and schema file, the auditor's test table, the imported package."""

    root: Path
    deployment: Path
    schema: dict
    test: pd.DataFrame  # raw features, a sensitive "region" the model does not take, label
    package: ModelPackage

    def write(self, frame: pd.DataFrame, name: str = "wine-test.csv", **options) -> Path:
        path = self.root / "tables" / name
        path.parent.mkdir(exist_ok=True)
        frame.to_csv(path, index=False, **options)
        return path


@pytest.fixture(autouse=True)
def audit_home(tmp_path, monkeypatch) -> Path:
    """Each test its own auditor registry."""
    monkeypatch.setenv("FHE_AUDIT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def wine_split() -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series, list[str]]:
    data = load_wine(as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.3, random_state=0, stratify=data.target)
    return X_train, X_test, y_train, y_test, [str(c) for c in data.target_names]


def standardize_steps(frame: pd.DataFrame) -> list[dict]:
    return [{"op": "standardize", "column": c, "mean": float(frame[c].mean()),
             "scale": float(frame[c].std(ddof=0))} for c in frame.columns]


def labelled(X: pd.DataFrame, y: pd.Series, classes: list[str]) -> pd.DataFrame:
    regions = np.random.default_rng(0).choice(REGIONS, len(X))
    return X.assign(region=regions, label=[classes[i] for i in y]).reset_index(drop=True)


@pytest.fixture(scope="module")
def wine(tmp_path_factory) -> Wine:
    """A logistic regression saved with plain Concrete ML (FHEModelDev), then imported."""
    root = tmp_path_factory.mktemp("wine")
    X_train, X_test, y_train, y_test, classes = wine_split()
    steps = standardize_steps(X_train)
    X = schema_from_steps(steps).transform(X_train)
    model = LogisticRegression(n_bits=8).fit(X, y_train)
    model.compile(X)
    FHEModelDev(str(root / "deployment"), model).save()
    schema = {"model_id": "wine-logreg", "class_names": classes,
              "columns": [{"name": c, "type": "numeric"} for c in X_train.columns],
              "preprocessing": steps}
    (root / "schema.json").write_text(json.dumps(schema))
    owner_rows = labelled(X_train, y_train, classes).drop(columns=["region"])
    owner_rows.to_csv(root / "owner-validation.csv", index=False)
    package = import_model(root / "deployment", root / "schema.json", root / "wine-logreg",
                           validation=PlainBenchmark.from_table(root / "owner-validation.csv"))
    return Wine(root, root / "deployment", schema, labelled(X_test, y_test, classes), package)


@pytest.fixture(scope="module")
def torch_package(tmp_path_factory) -> ModelPackage:
    """A plain torch.nn.Module on wine plus a categorical column, packaged with package_model."""
    X_train, _, y_train, _, classes = wine_split()
    frame = labelled(X_train, y_train, classes)
    steps = [*standardize_steps(X_train),
             {"op": "one_hot", "column": "region", "categories": REGIONS}]
    X = schema_from_steps(steps).transform(frame).astype(np.float32)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(X.shape[1], 8), torch.nn.ReLU(),
                              torch.nn.Linear(8, len(classes)))
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    inputs, targets = torch.tensor(X), torch.tensor(y_train.to_numpy())
    for _ in range(100):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(inputs), targets).backward()
        optimizer.step()
    return package_model(net, X, tmp_path_factory.mktemp("torch") / "pkg", model_id="wine-torch",
                         class_names=classes, preprocessing=steps,
                         compile_settings={"n_bits": 4, "rounding_threshold_bits": 6})


def cli(capfd, *args: object) -> tuple[int, str, str]:
    """The CLI in this process (its imports are paid once); returns code, stdout, stderr."""
    code = main([str(a) for a in args])
    out, err = capfd.readouterr()
    return code, out, err


def error_line(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: "), last
    return last


# -- import-model ----------------------------------------------------------------------------


def test_import_model_keeps_the_deployment_and_reads_what_it_tells(wine):
    m = wine.package.manifest
    assert wine.package.fingerprint == sha256_files(
        [wine.deployment / "client.zip", wine.deployment / "server.zip"])
    assert m.model_id == "wine-logreg" and m.output_kind == "probabilities"
    assert m.input_schema.input_shape == (13,) and m.input_schema.feature_names[0] == "alcohol"
    assert m.circuit["pbs_count"] == 0  # a linear circuit has no bootstrapping
    assert m.metrics["accuracy_quantized_clear"] > 0.95 and m.metrics["n_validation"] == 124
    assert m.metrics["accuracy_float"] is None  # no model object, no float accuracy


def test_import_model_infers_logits_for_a_torch_circuit(tmp_path, wine, torch_package):
    schema = {"class_names": wine.schema["class_names"],
              **{k: v for k, v in torch_package.manifest.input_schema.to_dict().items()
                 if k in ("columns", "preprocessing")}}
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    package = import_model(torch_package.path, tmp_path / "schema.json", tmp_path / "pkg")
    assert package.manifest.output_kind == "logits"
    assert package.manifest.circuit["pbs_count"] == torch_package.manifest.circuit["pbs_count"]


def rewrite_member(source: Path, target: Path, name: str, data: bytes) -> None:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            new.writestr(info, data if info.filename == name else old.read(info.filename))


def test_import_model_refuses_another_concrete_ml_version(tmp_path, capfd, wine):
    deployment = tmp_path / "deployment"
    deployment.mkdir()
    (deployment / "server.zip").write_bytes((wine.deployment / "server.zip").read_bytes())
    versions = {"concrete-python": "2.10.0", "concrete-ml": "1.8.0", "python": "3.11.7"}
    rewrite_member(wine.deployment / "client.zip", deployment / "client.zip", "versions.json",
                   json.dumps(versions).encode())
    code, _, err = cli(capfd, "import-model", "--deployment", deployment, "--schema",
                       wine.root / "schema.json", "--out", tmp_path / "pkg")
    line = error_line(code, err)
    assert "concrete-ml 1.8.0" in line and "concrete-ml 1.9.0" in line
    assert not (tmp_path / "pkg").exists()


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s.update(columns=s["columns"][:-1], preprocessing=s["preprocessing"][:-1]),
     "yields 12 features, but the circuit takes 13"),
    (lambda s: s.update(output_kind="logits"),
     "declares output_kind 'logits', but client.zip holds a LogisticRegression"),
    (lambda s: s.update(classes=["a", "b"]), "unknown key(s) classes"),
    (lambda s: s.update(preprocessing={}), "'preprocessing' must be a list"),
])
def test_import_model_refuses_a_schema_file_that_does_not_fit(tmp_path, wine, edit, message):
    schema = json.loads(json.dumps(wine.schema))
    edit(schema)
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    with pytest.raises(ArtifactError, match=re.escape(message)):
        import_model(wine.deployment, tmp_path / "schema.json", tmp_path / "pkg")
    assert not (tmp_path / "pkg").exists()
    assert not list(tmp_path.glob(".pkg-*"))  # no staging folder left behind


# -- package_model ---------------------------------------------------------------------------


def test_torch_module_packaged_with_preprocessing_as_data(wine, torch_package):
    m = torch_package.manifest
    assert m.output_kind == "logits" and m.circuit["pbs_count"] > 0
    region = next(c for c in m.input_schema.columns if c.name == "region")
    assert region.type == "categorical" and list(region.categories) == REGIONS
    bench = PlainBenchmark.from_table(wine.write(wine.test))
    report = run_audit(torch_package, bench, fhe_mode="simulate").report
    assert report["metrics"]["accuracy"] > 0.85


def test_neural_net_classifier_packaged(tmp_path, wine):
    X_train, _, y_train, _, classes = wine_split()
    X = schema_from_steps(wine.schema["preprocessing"]).transform(X_train).astype(np.float32)
    torch.manual_seed(0)
    model = NeuralNetClassifier(module__n_layers=2, module__n_w_bits=3, module__n_a_bits=3,
                                module__n_accum_bits=8, module__n_hidden_neurons_multiplier=1,
                                max_epochs=20, lr=0.1, verbose=0)
    model.fit(X, y_train.to_numpy().astype(np.int64))
    package = package_model(model, X, tmp_path / "pkg", model_id="wine-nn", class_names=classes,
                            preprocessing=wine.package.manifest.input_schema)
    assert package.manifest.output_kind == "probabilities"
    assert package.manifest.circuit["pbs_count"] > 0
    bench = PlainBenchmark.from_table(wine.write(wine.test), TableColumns(
        sensitive_columns=("region",)))
    report = run_audit(package, bench, fhe_mode="simulate", limit=20).report
    assert report["metrics"]["accuracy"] > 0.8


def test_package_model_refuses_a_schema_that_does_not_fit(tmp_path, wine):
    X = np.zeros((4, 13))
    schema = wine.package.manifest.input_schema
    with pytest.raises(AuditError, match="not both"):
        package_model(None, X, tmp_path / "p", model_id="m", class_names=["a", "b"],
                      input_schema=schema, preprocessing=schema)
    with pytest.raises(AuditError, match="yields 12 features, but a calibration sample has 13"):
        package_model(None, X, tmp_path / "p", model_id="m", class_names=["a", "b"],
                      preprocessing=wine.schema["preprocessing"][:-1])
    assert not (tmp_path / "p").exists()


# -- the auditor's tables --------------------------------------------------------------------


def test_csv_parquet_and_saved_datasets_read_alike(tmp_path, wine):
    import datasets

    csv = wine.write(wine.test)
    shuffled = wine.write(wine.test[wine.test.columns[::-1]], "shuffled.csv")
    wine.test.to_parquet(tmp_path / "wine-test.parquet", index=False)
    dataset = datasets.Dataset.from_pandas(wine.test)
    dataset.save_to_disk(str(tmp_path / "saved"))
    datasets.DatasetDict({"test": dataset}).save_to_disk(str(tmp_path / "saved-dict"))
    columns = TableColumns(sensitive_columns=("region",))
    schema = wine.package.manifest.input_schema
    expected = schema.transform(wine.test)
    for ref in (csv, shuffled, tmp_path / "wine-test.parquet", tmp_path / "saved",
                tmp_path / "saved-dict"):
        bench = resolve_benchmark(str(ref), columns)
        bench.check_inputs(schema, wine.package.manifest.class_names)  # order does not matter
        np.testing.assert_allclose(schema.transform(bench.frame), expected)
        assert bench.sample_ids()[:2] == ["row-0", "row-1"]
    datasets.DatasetDict({"a": dataset, "b": dataset}).save_to_disk(str(tmp_path / "two"))
    with pytest.raises(SchemaError, match="holds the splits a, b"):
        resolve_benchmark(str(tmp_path / "two"))


def test_cli_round_trip_on_a_csv_with_id_and_sensitive_columns(tmp_path, capfd, wine):
    """encrypt, run, decrypt with every audit's plumbing: the same as on a zoo benchmark."""
    csv = wine.write(wine.test.assign(wine_id=[f"w{i:03d}" for i in range(len(wine.test))]))
    table = ["--benchmark", csv, "--id-column", "wine_id", "--sensitive-columns", "region"]
    audits = ["--audits", "accuracy,fairness"]
    code, _, err = cli(capfd, "encrypt", "--model", wine.package.path, *table, *audits,
                       "--keys", tmp_path / "keys", "--out", tmp_path / "enc")
    assert code == 0, err
    code, _, err = cli(capfd, "run", "--model", wine.package.path, "--encrypted",
                       tmp_path / "enc", "--out", tmp_path / "run")
    assert code == 0, err
    code, out, err = cli(capfd, "decrypt", "--run", tmp_path / "run", "--keys", tmp_path / "keys",
                         "--model", wine.package.path, *table, *audits, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["benchmark"] == "wine-test" and report["n_samples"] == len(wine.test)
    assert report["metrics"]["accuracy"] > 0.9
    assert set(report["fairness"]["region"]["groups"]) == set(REGIONS)


def test_ids_from_a_column_or_generated(wine):
    bench = benchmark_from_upload(wine.write(wine.test), "label", "", " region , ")
    assert bench.id_column == "sample_id" and bench.sensitive_columns == ["region"]
    assert bench.sample_ids()[-1] == f"row-{len(wine.test) - 1}"
    repeated = wine.write(wine.test.assign(wine_id="same"), "repeated.csv")
    with pytest.raises(SchemaError, match="repeats sample id 'same'"):
        benchmark_from_upload(repeated, id_column="wine_id")
    clash = wine.write(wine.test.assign(sample_id="x"), "clash.csv")
    with pytest.raises(SchemaError, match="already has a column 'sample_id'"):
        benchmark_from_upload(clash)
    with pytest.raises(ArtifactError, match=re.escape("wine.xlsx is not a .csv or .parquet file")):
        benchmark_from_upload(wine.root / "wine.xlsx")


def test_registry_lists_resolves_and_refuses_an_edited_table(capfd, audit_home, wine):
    csv = wine.write(wine.test, "registered.csv")
    code, out, err = cli(capfd, "register-benchmark", csv, "--id", "my-wine",
                         "--sensitive-columns", "region", "--json")
    assert code == 0, err
    assert json.loads(out)["n_samples"] == len(wine.test)
    assert (audit_home / "benchmarks.json").is_file()
    code, out, _ = cli(capfd, "benchmarks", "--model", wine.package.path, "--json")
    listed = {b["id"]: b for b in json.loads(out)["benchmarks"]}
    assert listed["my-wine"]["source"] == "registered"
    assert "breast-cancer-test" not in listed  # zoo benchmarks fit their own models only
    assert resolve_benchmark("my-wine").sensitive_columns == ["region"]
    with pytest.raises(AuditError, match="names its own label"):
        resolve_benchmark("my-wine", TableColumns(label_column="label"))
    with pytest.raises(AuditError, match="id of a zoo benchmark"):
        register(csv, "breast-cancer-test")
    wine.write(wine.test.iloc[:10], "registered.csv")
    with pytest.raises(MismatchError, match="changed since it was registered as 'my-wine'"):
        resolve_benchmark("my-wine")


def _set(frame: pd.DataFrame, column: str, rows: list[int], value: object) -> pd.DataFrame:
    frame = frame.astype({column: object})
    frame.loc[rows, column] = value
    return frame


# Each problem: how the table is spoiled, the model it is for, and what the sentence says.
SCHEMA_ERRORS = {
    "missing column": (lambda f: f.drop(columns=["proline"]), "wine",
                       "lacks column(s) the model needs: proline"),
    "extra column": (lambda f: f.assign(notes="x"), "wine",
                     "column(s) the model does not take: notes"),
    "non-numeric": (lambda f: _set(f, "alcohol", [3], "thirteen"), "wine",
                    "Column 'alcohol' has missing or non-numeric values in rows 3."),
    "NaN": (lambda f: _set(f, "hue", [5, 7], np.nan), "wine",
            "Column 'hue' has missing or non-numeric values in rows 5, 7."),
    "unknown category": (lambda f: _set(f, "region", [2], "west"), "torch",
                         "Column 'region' has categories the model does not know (west) in "
                         "rows 2."),
    "label outside the classes": (lambda f: _set(f, "label", [0, 4], "class_9"), "wine",
                                  "Column 'label' has labels outside the model's classes "
                                  "(class_9) in rows 0, 4."),
}


@pytest.mark.parametrize("problem", list(SCHEMA_ERRORS))
def test_schema_error_is_one_sentence_and_nothing_is_encrypted(tmp_path, capfd, wine,
                                                                torch_package, problem):
    spoil, model, message = SCHEMA_ERRORS[problem]
    package = wine.package if model == "wine" else torch_package
    sensitive = [] if model == "torch" else ["--sensitive-columns", "region"]
    csv = wine.write(spoil(wine.test), f"{problem}.csv")
    code, _, err = cli(capfd, "encrypt", "--model", package.path, "--benchmark", csv,
                       *sensitive, "--keys", tmp_path / "keys", "--out", tmp_path / "enc")
    assert message in error_line(code, err)
    assert not (tmp_path / "enc").exists() and not (tmp_path / "keys").exists()


def test_columns_count_by_name_so_a_csv_needs_its_header(tmp_path, capfd, wine):
    csv = wine.write(wine.test, "no-header.csv", header=False)
    code, _, err = cli(capfd, "audit", "--model", wine.package.path, "--benchmark", csv,
                       "--out", tmp_path / "audit")
    assert ("Benchmark 'no-header' has no column 'label' (its columns: 13.77, 1.9, 2.68, 17.1, "
            "…)") in error_line(code, err)
    assert not (tmp_path / "audit").exists()
    renamed = wine.write(wine.test.rename(columns=lambda c: "x_" + c if c != "label" else c),
                         "renamed.csv")
    m = wine.package.manifest
    with pytest.raises(SchemaError, match=r"none of the model's columns \(its columns: x_alcohol"):
        PlainBenchmark.from_table(renamed).check_inputs(m.input_schema, m.class_names)


# -- the README walkthrough ------------------------------------------------------------------


def readme_blocks() -> list[tuple[str, str]]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Audit your own model", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", section, re.DOTALL)


def test_readme_walkthrough_runs_as_written(tmp_path, audit_home):
    """Package, encrypt, run (real FHE), decrypt, publish: the README's commands, verbatim."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "FHE_AUDIT_HOME": str(audit_home),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    blocks = readme_blocks()
    assert [kind for kind, _ in blocks] == ["python", "bash"]
    for kind, code in blocks:
        if kind == "python":  # the block names the script the commands run
            (tmp_path / code.split("\n", 1)[0].split()[1].rstrip(":")).write_text(code)
            continue
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["fhe_mode"] == "execute" and metrics["n_samples"] == 54
    assert metrics["metrics"]["accuracy"] > 0.9
    for kind in ("model", "benchmark", "run"):
        assert (tmp_path / "publish" / kind / "README.md").is_file()
    assert ModelPackage.load(tmp_path / "wine-package-py").manifest.model_id == "wine-logreg"
