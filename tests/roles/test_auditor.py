"""Keyless processing read from client.zip as data, against Concrete ML's stock client.

The stock ``FHEModelClient`` (which hands client.zip to skops) is used here only as the
reference, on trusted packages: the zoo's, and copies of them whose model class we set
ourselves. Hostile client.zips are refused in one sentence with nothing instantiated.
"""

from __future__ import annotations

import importlib
import io
import json
import pickle
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io
from concrete.ml.deployment import FHEModelClient

from fhe_backend.auditor.client import Auditor
from fhe_backend.errors import ArtifactError
from fhe_backend.formats.artifacts import MANIFEST, ModelPackage, model_fingerprint
from fhe_backend.formats.hashing import sha256_bytes, sha256_file
from fhe_backend.hub.references import resolve_benchmark, resolve_model
from fhe_backend.hub.zoo import benchmarks_for, model_ids
from fhe_backend.server.run import FHEServer
from fhe_backend.untrusted.circuit import SimulatedCircuit
from fhe_backend.untrusted.processing import (
    FAMILIES,
    MAX_DEPTH,
    PROCESSING,
    parse_processing,
    processing_of,
    to_probabilities,
)

ZOO = model_ids()
LOGREG, XGB, MLP = "breast-cancer-logreg", "breast-cancer-xgb", "adult-income-mlp"


def zoo_doc(model: str) -> dict[str, Any]:
    with zipfile.ZipFile(resolve_model(model).client_zip) as archive:
        return json.loads(archive.read(PROCESSING))


def type_node(cls: type) -> dict[str, str]:
    """How Concrete ML writes a model class (trusted: our own bytes, made here)."""
    return {"type_name": "type", "serialized_value": skops.io.dumps(cls).hex()}


def node_schema(schema: dict[str, Any]) -> dict[str, str]:
    """A type node zip holding the given schema.json."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("schema.json", json.dumps(schema))
    return {"type_name": "type", "serialized_value": buffer.getvalue().hex()}


def write_client_zip(src: Path, dst: Path, processing: bytes) -> None:
    """``src`` with its serialized_processing.json replaced, every other member kept."""
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w") as new:
        for info in old.infolist():
            data = processing if info.filename == PROCESSING else old.read(info)
            new.writestr(info.filename, data)


def repackaged(model: str, root: Path, processing: bytes) -> ModelPackage:
    """A copy of a zoo package with another serialized_processing.json, its manifest hashes
    and fingerprint recomputed (as any publisher of a package can)."""
    src = resolve_model(model).path
    dst = root / f"{model}-edited"
    shutil.copytree(src, dst)
    write_client_zip(src / "client.zip", dst / "client.zip", processing)
    manifest = json.loads((dst / MANIFEST).read_text())
    manifest["files"]["client.zip"] = sha256_file(dst / "client.zip")
    manifest["fingerprint"] = model_fingerprint(dst)
    (dst / MANIFEST).write_text(json.dumps(manifest))
    return ModelPackage.load(dst)


def stock_model(doc: dict[str, Any], src_model: str, root: Path) -> Any:
    """Concrete ML's own client-side model object for ``doc`` (the reference; trusted)."""
    folder = root / "stock"
    folder.mkdir()
    write_client_zip(resolve_model(src_model).client_zip, folder / "client.zip",
                     json.dumps(doc).encode())
    return FHEModelClient(str(folder), key_dir=str(root / "stock-keys")).model


def plausible_outputs(processing: Any, shape: tuple[int, ...], n: int = 64) -> np.ndarray:
    """Integers as the circuit could output them: around the output zero point, spanning about
    +-8 in dequantized value (wider would only overflow exp() in both implementations)."""
    rng = np.random.default_rng(0)
    zero = np.round(np.asarray(processing.output.zero_point, dtype=np.float64)).astype(np.int64)
    span = max(2, int(8 / float(np.max(processing.output.scale))))
    return np.broadcast_to(zero, (n, *shape)) + rng.integers(-span, span, size=(n, *shape))


def one_sentence(message: str) -> bool:
    return "\n" not in message and message.endswith(".") and "Traceback" not in message


# -- the allow-list --------------------------------------------------------------------------


def test_allow_list_names_the_concrete_ml_classes():
    for ref, family in FAMILIES.items():
        module, name = ref.rsplit(".", 1)
        cls = getattr(importlib.import_module(module), name)
        assert f"{cls.__module__}.{cls.__name__}" == ref
        is_classifier = hasattr(cls, "predict_proba")
        assert is_classifier == (family.output_kind == "probabilities"), ref


# -- bit-identical to the stock client on every zoo model ------------------------------------


@pytest.fixture(scope="module", params=ZOO)
def zoo_case(request, tmp_path_factory) -> tuple[str, np.ndarray, Any, np.ndarray]:
    """A zoo model's benchmark rows, its stock client-side model and a few circuit outputs
    from Concrete's simulator of its circuit."""
    model = request.param
    package = resolve_model(model)
    bench = resolve_benchmark(benchmarks_for(model)[0])
    X = package.manifest.input_schema.transform(bench.frame)
    root = tmp_path_factory.mktemp(model)
    stock = FHEModelClient(str(package.path), key_dir=str(root / "keys")).model
    circuit = SimulatedCircuit(package.server_zip)
    q = stock.quantize_input(X[:8])
    outputs = np.concatenate([circuit.run(q[i : i + 1]) for i in range(len(q))])
    return model, X, stock, outputs


def test_quantize_equals_the_stock_client_on_the_benchmark(zoo_case):
    model, X, stock, _ = zoo_case
    expected = stock.quantize_input(X)
    mine = processing_of(resolve_model(model)).quantize(X)
    assert mine.dtype == expected.dtype == np.int64
    np.testing.assert_array_equal(mine, expected)


def test_dequantize_and_post_process_equal_the_stock_client(zoo_case):
    model, _, stock, outputs = zoo_case
    processing = processing_of(resolve_model(model))
    # The circuit's outputs, and more integers in the same shape.
    for q in (outputs, plausible_outputs(processing, outputs.shape[1:])):
        expected = stock.post_processing(stock.dequantize_output(q))
        mine = processing.post_process(processing.dequantize(q))
        assert mine.dtype == expected.dtype
        np.testing.assert_array_equal(mine, expected)


# -- the other supported families, set on copies of zoo documents ----------------------------


def _family_cases() -> list[tuple[str, str, Callable[[dict], None], tuple[int, ...]]]:
    from concrete.ml.sklearn import (
        DecisionTreeClassifier,
        LinearSVC,
        LogisticRegression,
        NeuralNetClassifier,
        RandomForestClassifier,
        XGBClassifier,
    )

    def as_class(cls: type, scalar_zero_point: bool = False) -> Callable[[dict], None]:
        def edit(doc: dict) -> None:
            doc["model_type"] = type_node(cls)
            doc["is_fitted"] = True
            if scalar_zero_point:  # the zoo MLP's is per output (2 of them)
                doc["output_quantizers"][0]["serialized_value"]["zero_point"] = {
                    "type_name": "numpy_integer", "serialized_value": 3, "dtype": "int64"}
        return edit

    def brevitas_form(doc: dict) -> None:
        """What FHEModelDev writes for a NeuralNetClassifier (seen on test_byo's): n_bits as a
        0-d float32 array, a plain zero point, QAT flags, a null ciphertext format."""
        as_class(NeuralNetClassifier)(doc)
        doc["ciphertext_format"] = None
        doc["input_quantizers"][0]["serialized_value"].update(
            n_bits={"type_name": "numpy_array", "serialized_value": 3.0, "dtype": "float32"},
            zero_point=0, offset=4, is_signed=True, is_qat=True, is_precomputed_qat=True,
            scale={"type_name": "numpy_float", "serialized_value": 1.0, "dtype": "float64"})

    # (zoo document, edit, circuit output shape per sample)
    return [
        ("linear-svc", LOGREG, as_class(LinearSVC), (1,)),
        ("logreg-3-classes", LOGREG, as_class(LogisticRegression), (3,)),
        ("xgb-3-classes", XGB, as_class(XGBClassifier), (3, 10)),
        ("decision-tree", XGB, as_class(DecisionTreeClassifier), (2, 1)),
        ("random-forest", XGB, as_class(RandomForestClassifier), (2, 10)),
        ("random-forest-3-classes", XGB, as_class(RandomForestClassifier), (3, 10)),
        ("neural-net-2-outputs", MLP, as_class(NeuralNetClassifier), (2,)),
        ("neural-net-3-outputs", MLP, as_class(NeuralNetClassifier, True), (3,)),
        ("neural-net-as-brevitas-writes-it", MLP, brevitas_form, (2,)),
    ]


@pytest.mark.parametrize("name,model,edit,shape", _family_cases(),
                         ids=[c[0] for c in _family_cases()])
def test_every_supported_family_equals_the_stock_client(tmp_path, name, model, edit, shape):
    doc = zoo_doc(model)
    edit(doc)
    mine = parse_processing(json.dumps(doc).encode())
    stock = stock_model(doc, model, tmp_path)
    package = resolve_model(model)
    X = package.manifest.input_schema.transform(
        resolve_benchmark(benchmarks_for(model)[0]).frame)
    np.testing.assert_array_equal(mine.quantize(X), stock.quantize_input(X))
    q = plausible_outputs(mine, shape)
    expected = stock.post_processing(stock.dequantize_output(q))
    got = mine.post_process(mine.dequantize(q))
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


# -- hostile client.zip ----------------------------------------------------------------------


def _outside(doc: dict) -> None:
    node = json.loads(zipfile.ZipFile(io.BytesIO(bytes.fromhex(
        doc["model_type"]["serialized_value"]))).read("schema.json"))
    doc["model_type"] = node_schema({**node, "__module__": "os", "__class__": "system"})


def _sklearn_class(doc: dict) -> None:
    from sklearn.linear_model import LogisticRegression

    doc["model_type"] = type_node(LogisticRegression)


def _object_node(doc: dict) -> None:
    node = json.loads(zipfile.ZipFile(io.BytesIO(bytes.fromhex(
        doc["model_type"]["serialized_value"]))).read("schema.json"))
    doc["model_type"] = node_schema({**node, "__loader__": "ObjectNode", "content": {}})


def _two_members(doc: dict) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("schema.json", "{}")
        archive.writestr("payload.npy", b"\x80\x04")
    doc["model_type"]["serialized_value"] = buffer.getvalue().hex()


def _nested(depth: int) -> Callable[[dict], None]:
    def edit(doc: dict) -> None:
        value: Any = 1
        for _ in range(depth):
            value = [value]
        doc["input_quantizers"][0]["serialized_value"]["rmax"] = {
            "type_name": "numpy_array", "serialized_value": value, "dtype": "float64"}
    return edit


def _set_zero_point(value: Any) -> Callable[[dict], None]:
    def edit(doc: dict) -> None:
        doc["input_quantizers"][0]["serialized_value"]["zero_point"] = value
    return edit


HOSTILE: list[tuple[str, Callable[[dict], None] | bytes | str, str]] = [
    ("a type outside the allow-list", _outside, "class 'os.system'"),
    ("a real class outside the allow-list", _sklearn_class,
     "class 'sklearn.linear_model._logistic.LogisticRegression'"),
    ("not hex", lambda d: d["model_type"].update(serialized_value="zz" * 10), "not a skops"),
    ("not a zip", lambda d: d["model_type"].update(serialized_value=b"junk".hex()),
     "not a skops"),
    ("a skops object node", _object_node, "unexpected field"),
    ("a type node with a second member", _two_members, "exactly one schema.json"),
    ("a sklearn_model node", lambda d: d["model_type"].update(type_name="sklearn_model"),
     "not a skops type node"),
    ("not JSON", b"\x80\x04\x95 pickle", "not valid JSON"),
    ("deep nesting", _nested(MAX_DEPTH + 4), "nested more than"),
    ("nesting past the parser's limit", b"[" * 100_000 + b"]" * 100_000, "nested more than"),
    ("a huge integer", _set_zero_point(10**30), "digits"),
    ("a 5000-digit integer", "9" * 5000, "digits"),
    ("an integer beyond its bound", _set_zero_point(
        {"type_name": "numpy_integer", "serialized_value": 2**60, "dtype": "int64"}),
     "out of range"),
    ("an infinite float", _set_zero_point(float("inf")), "not a number"),
    ("a NaN scale", lambda d: d["input_quantizers"][0]["serialized_value"].update(
        scale=float("nan")), "not a number"),
    ("a zero scale", lambda d: d["input_quantizers"][0]["serialized_value"].update(
        scale={"type_name": "numpy_float", "serialized_value": 0.0, "dtype": "float64"}),
     "positive"),
    ("an object dtype", _set_zero_point(
        {"type_name": "numpy_array", "serialized_value": [1], "dtype": "object"}),
     "dtype 'object'"),
    ("a ragged array", _set_zero_point(
        {"type_name": "numpy_array", "serialized_value": [[1, 2], [3]], "dtype": "int64"}),
     "rectangular"),
    ("another quantizer class", lambda d: d["input_quantizers"][0].update(
        type_name="QuantizedArray"), "only UniformQuantizer"),
    ("a missing field", lambda d: d["input_quantizers"][0]["serialized_value"].pop("offset"),
     "lacks offset"),
    ("an extra field", lambda d: d.update(__reduce__="os.system"), "unexpected field"),
    ("a flag of the wrong type", lambda d: d["input_quantizers"][0]["serialized_value"].update(
        is_narrow="yes"), "true or false"),
    ("post-processing parameters", lambda d: d.update(
        model_post_processing_params={"link": "log"}), "post-processing parameters"),
    ("a training circuit", lambda d: d.update(is_training=True), "training circuit"),
    ("a TFHE-rs ciphertext format", lambda d: d.update(ciphertext_format="tfhe_rs"),
     "ciphertext format"),
    ("an unfitted model", lambda d: d.update(is_fitted=False), "not fitted"),
    ("two output quantizers", lambda d: d["output_quantizers"].append(
        d["output_quantizers"][0]), "2 output quantizers"),
    ("a fractional n_bits", lambda d: d["input_quantizers"][0]["serialized_value"].update(
        n_bits={"type_name": "numpy_float", "serialized_value": 3.5, "dtype": "float32"}),
     "whole number"),
    ("too many n_bits", lambda d: d["input_quantizers"][0]["serialized_value"].update(
        n_bits=4096), "n_bits must be an integer from 1 to 32"),
]


def _hostile_bytes(edit: Callable[[dict], None] | bytes | str) -> bytes:
    """The whole document (bytes), the zoo's with an edit, or with a zero point's raw text."""
    if isinstance(edit, bytes):
        return edit
    doc = zoo_doc(LOGREG)
    if isinstance(edit, str):
        _set_zero_point("PLACEHOLDER")(doc)
        return json.dumps(doc).replace('"PLACEHOLDER"', edit).encode()
    edit(doc)
    return json.dumps(doc).encode()


@pytest.fixture
def no_deserializers(monkeypatch) -> list[str]:
    """skops, pickle and Concrete ML's client raise if anything reaches them; the calls made
    are recorded (the test then asserts there were none)."""
    import concrete.ml.common.serialization.decoder as decoder

    calls: list[str] = []

    def refuse(name: str) -> Callable[..., Any]:
        def called(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            raise AssertionError(f"{name} was called")
        return called

    for target, name in ((skops.io, "loads"), (skops.io, "load"), (pickle, "loads"),
                         (pickle, "load"), (decoder, "pickle_or_skops_loads")):
        monkeypatch.setattr(target, name, refuse(f"{target.__name__}.{name}"))
    monkeypatch.setattr(FHEModelClient, "__init__", refuse("FHEModelClient"))
    return calls


@pytest.mark.parametrize("name,edit,words", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_processing_is_refused_in_one_sentence(name, edit, words, no_deserializers):
    with pytest.raises(ArtifactError) as refused:
        parse_processing(_hostile_bytes(edit))
    message = str(refused.value)
    assert one_sentence(message), message
    assert words in message, message
    assert no_deserializers == []


@pytest.mark.parametrize("name,edit,words", HOSTILE[:2] + HOSTILE[3:4],
                         ids=[c[0] for c in HOSTILE[:2] + HOSTILE[3:4]])
def test_hostile_package_makes_no_key(tmp_path, name, edit, words, no_deserializers):
    """The auditor refuses the package before any key exists."""
    package = repackaged(LOGREG, tmp_path, _hostile_bytes(edit))
    with pytest.raises(ArtifactError, match=r"client\.zip") as refused:
        Auditor(package, tmp_path / "keys").keygen()
    assert one_sentence(str(refused.value))
    assert not (tmp_path / "keys").exists()
    assert no_deserializers == []


def test_the_stock_client_hands_the_owners_bytes_to_skops(tmp_path, monkeypatch):
    """Why processing.py exists: Concrete ML's client gives client.zip's type node to skops, in
    the process that holds the secret key."""
    import concrete.ml.common.serialization.decoder as decoder

    received: list[bytes] = []

    def recording(blob: bytes, **kwargs: Any) -> Any:
        received.append(blob)
        raise RuntimeError("stopped before skops")

    monkeypatch.setattr(decoder, "pickle_or_skops_loads", recording)
    doc = zoo_doc(LOGREG)
    _outside(doc)
    with pytest.raises(RuntimeError, match="stopped before skops"):
        stock_model(doc, LOGREG, tmp_path)
    assert received == [bytes.fromhex(doc["model_type"]["serialized_value"])]


# -- the auditor's whole path, in real FHE ---------------------------------------------------


@pytest.mark.parametrize("model", [LOGREG, pytest.param(MLP, marks=pytest.mark.slow)])
def test_auditor_path_never_deserializes_and_matches_the_stock_client(
        tmp_path, model, no_deserializers, monkeypatch):
    """keygen -> encrypt -> server -> decrypt with skops, pickle and FHEModelClient disabled;
    then the stock client, on the same keyset cache, decrypts the same outputs to the same
    probabilities (and so existing key directories keep working)."""
    package = resolve_model(model)
    X = package.manifest.input_schema.transform(
        resolve_benchmark(benchmarks_for(model)[0]).head(3).frame)
    auditor = Auditor(package, tmp_path / "keys")
    evaluation_keys = auditor.keygen()
    ciphertexts = [auditor.encrypt_array(X[i : i + 1]) for i in range(len(X))]
    server = FHEServer(package)
    keys = server.load_keys(evaluation_keys)
    outputs = [server.circuit.run(c, keys) for c in ciphertexts]
    mine = np.concatenate([auditor.decrypt_output(o) for o in outputs])
    assert no_deserializers == []
    assert np.allclose(mine.sum(axis=1), 1)

    monkeypatch.undo()  # the stock client, as the reference, needs skops back
    stock = FHEModelClient(str(package.path), key_dir=str(auditor.dir / "cache"))
    stock.generate_private_and_evaluation_keys(force=False)
    recorded = json.loads((auditor.dir / "keyset.json").read_text())["keyset_sha256"]
    assert sha256_bytes(stock.client.keys.serialize()) == recorded
    expected = np.concatenate([
        to_probabilities(stock.deserialize_decrypt_dequantize(o), package.manifest.output_kind)
        for o in outputs])
    np.testing.assert_array_equal(mine, expected)
    # And an output of the stock client's ciphertext decrypts alike through ours.
    output = server.circuit.run(stock.quantize_encrypt_serialize(X[:1]), keys)
    np.testing.assert_array_equal(auditor.decrypt_output(output), to_probabilities(
        stock.deserialize_decrypt_dequantize(output), package.manifest.output_kind))


def test_auditor_client_is_private(fast_package, tmp_path):
    auditor = Auditor(fast_package, tmp_path / "keys")
    assert not hasattr(auditor, "client")


def test_quantized_values_outside_the_circuit_input_are_one_sentence(tmp_path):
    """An input quantizer that does not clip (the owner's choice) can give integers the
    circuit's input type cannot hold: refused in one sentence, not a raw Concrete error."""
    doc = zoo_doc(LOGREG)
    doc["input_quantizers"][0]["serialized_value"]["no_clipping"] = True
    package = repackaged(LOGREG, tmp_path, json.dumps(doc).encode())
    auditor = Auditor(package, tmp_path / "keys")
    X = package.manifest.input_schema.transform(
        resolve_benchmark(benchmarks_for(LOGREG)[0]).head(1).frame)
    with pytest.raises(ArtifactError, match="does not fit the circuit's input") as refused:
        auditor.encrypt_array(X * 1e6)
    assert one_sentence(str(refused.value))
