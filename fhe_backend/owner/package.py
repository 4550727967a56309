"""Model owner: compile a model with Concrete ML and write its FHE model package.

The package is ``client.zip`` + ``server.zip`` as ``FHEModelDev.save(via_mlir=True)`` writes
them, rewritten to be reproducible (same model, same bytes, same fingerprint), plus a manifest
(input schema, class names, compile settings, versions, hashes, fingerprint, validation accuracy,
PBS count and, optionally, a measured FHE latency). The weights are in clear inside
``server.zip``'s MLIR: whoever runs the server sees the model.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AuditError, MismatchError
from ..formats import atomic
from ..formats.artifacts import (
    LAYER_NAME,
    MANIFEST,
    PACKAGE_ZIPS,
    ModelPackage,
    machine_info,
    now_iso,
    representation_zips,
    write_json,
    write_model_manifest,
)
from ..formats.schema import InputSchema, numeric_schema
from ..untrusted.processing import read_processing
from ..untrusted.safezip import read_member

# Every zip member gets the zip format's earliest time and plain file permissions: Concrete ML
# stamps the build's clock and the umask into them, which changed the fingerprint of every rebuild.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
ZIP_MODE = 0o644 << 16
# serialized_processing.json nodes that hold a skops dump (hex of a small zip).
SKOPS_NODES = ("type", "sklearn_model")
_SKOPS_ID = re.compile(rb'"__id__": (\d+)')


def _is_torch_module(model: Any) -> bool:
    try:
        import torch
    except ImportError:  # torch is a concrete-ml dependency; kept defensive for clarity
        return False
    return isinstance(model, torch.nn.Module)


def compile_model(model: Any, calibration_X: np.ndarray, settings: dict[str, Any]) -> Any:
    """Compile a fitted built-in or a torch module; returns the object FHEModelDev saves."""
    from concrete.ml.quantization import QuantizedModule

    if _is_torch_module(model):
        from concrete.ml.torch.compile import compile_torch_model

        return compile_torch_model(
            model,
            calibration_X.astype(np.float32),
            n_bits=settings.get("n_bits", 8),
            rounding_threshold_bits=settings.get("rounding_threshold_bits"),
            p_error=settings.get("p_error"),
        )
    if isinstance(model, QuantizedModule):
        if model.fhe_circuit is None:
            raise AuditError("A QuantizedModule must be compiled before packaging.")
        return model
    if not hasattr(model, "compile"):
        raise AuditError(
            f"Cannot package a {type(model).__name__}: pass a Concrete ML built-in, a "
            "QuantizedModule or a torch.nn.Module."
        )
    if getattr(model, "fhe_circuit", None) is None:
        model.compile(calibration_X, p_error=settings.get("p_error"))
    return model


def clear_predict(compiled: Any, X: np.ndarray) -> np.ndarray:
    """Class indices from the quantized model run in clear (``fhe="disable"``)."""
    from concrete.ml.quantization import QuantizedModule

    if isinstance(compiled, QuantizedModule):
        return np.argmax(compiled.forward(X.astype(np.float32), fhe="disable"), axis=1)
    return np.argmax(compiled.predict_proba(X, fhe="disable"), axis=1)


def circuit_figures(compiled: Any) -> dict[str, Any]:
    circuit = compiled.fhe_circuit
    stats = circuit.statistics
    return {
        "pbs_count": int(stats.get("programmable_bootstrap_count", 0)),
        "max_bit_width": int(circuit.graph.maximum_integer_bit_width()),
        "size_of_bootstrap_keys": int(stats.get("size_of_bootstrap_keys", 0)),
        "size_of_keyswitch_keys": int(stats.get("size_of_keyswitch_keys", 0)),
    }


def schema_from_steps(steps: Sequence[dict[str, Any]]) -> InputSchema:
    """A schema from preprocessing steps as in the manifest; the raw columns are the ones the
    steps read, categorical (with the step's categories) for one-hot and ordinal steps."""
    columns: dict[str, dict[str, Any]] = {}
    for step in steps:
        categorical = step.get("op") in ("one_hot", "ordinal")
        name = str(step.get("column"))
        columns.setdefault(name, {"name": name,
                                  "type": "categorical" if categorical else "numeric",
                                  "categories": step.get("categories", []) if categorical else []})
    return InputSchema.from_dict({"columns": list(columns.values()), "preprocessing": list(steps)})


def choose_schema(
    input_schema: InputSchema | None,
    preprocessing: Sequence[dict[str, Any]] | InputSchema | None,
    feature_names: list[str] | None,
    sample_shape: tuple[int, ...],
) -> InputSchema:
    """The package's input schema from whichever of the three the caller gave; it must yield
    exactly the features of one calibration sample, or encryption would fail much later."""
    if input_schema is not None and preprocessing is not None:
        raise AuditError("Pass input_schema or preprocessing, not both.")
    given = input_schema if input_schema is not None else preprocessing
    n_features = int(np.prod(sample_shape))
    if given is None:
        schema = numeric_schema(feature_names or [f"x{i}" for i in range(n_features)],
                                sample_shape)
    else:
        schema = given if isinstance(given, InputSchema) else schema_from_steps(given)
    if schema.n_features != n_features:
        raise AuditError(f"The input schema yields {schema.n_features} features, but a "
                         f"calibration sample has {n_features}.")
    return schema


def package_model(
    model: Any,
    calibration_X: np.ndarray,
    out_dir: Path,
    *,
    model_id: str,
    class_names: list[str],
    input_schema: InputSchema | None = None,
    preprocessing: Sequence[dict[str, Any]] | InputSchema | None = None,
    feature_names: list[str] | None = None,
    compile_settings: dict[str, Any] | None = None,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    float_accuracy: float | None = None,
    description: str = "",
    dataset: str = "",
    license: str = "",
    measure_samples: int = 0,
    sealed: bool | dict[str, Any] | None = None,
    representations: Sequence[str] = (),
) -> ModelPackage:
    """Compile (if needed) and write a model package to ``out_dir`` (created, must be empty).

    ``model`` is a fitted Concrete ML built-in (linear, tree, neural net), a compiled
    ``QuantizedModule`` or a ``torch.nn.Module`` (compiled with ``compile_settings``: n_bits,
    rounding_threshold_bits, p_error). The auditor's raw columns reach the model through
    ``input_schema``, or ``preprocessing`` (steps as in the manifest, e.g. ``{"op":
    "standardize", "column": "age", "mean": 38.6, "scale": 13.6}``), or ``feature_names``
    (numeric columns passed through as they are).

    ``validation`` is the owner's held-out split (preprocessed X, class indices y); its
    quantized-clear accuracy goes in the manifest. ``measure_samples`` > 0 runs that many
    validation samples in real FHE and records the measured seconds per sample.

    ``sealed`` (True, or options ``batch_size``, ``n_groups``) also compiles the sealed audit
    circuit (:mod:`fhe_backend.sealed.circuit`); where it cannot be built, the manifest says why.

    ``representations`` (torch modules only) names hidden layers to publish: for each, a
    circuit returning that layer's quantized activations (:func:`build_representations`).
    """
    from concrete.ml.deployment import FHEModelDev

    settings = dict(compile_settings or {})
    calibration_X = np.asarray(calibration_X)
    input_schema = choose_schema(input_schema, preprocessing, feature_names,
                                 tuple(calibration_X.shape[1:]))
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise AuditError(f"{out_dir} is not empty; choose a new folder for the package.")

    compiled = compile_model(model, calibration_X, settings)
    if "n_bits" not in settings and hasattr(compiled, "n_bits"):
        settings["n_bits"] = compiled.n_bits
    metrics: dict[str, Any] = {"accuracy_float": float_accuracy}
    if validation is not None:
        X_val, y_val = validation
        predicted = clear_predict(compiled, np.asarray(X_val))
        metrics["accuracy_quantized_clear"] = float(np.mean(predicted == np.asarray(y_val)))
        metrics["n_validation"] = len(y_val)

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent) as tmp:
        FHEModelDev(str(Path(tmp) / "dev"), compiled).save(via_mlir=True)
        for name in PACKAGE_ZIPS:
            shutil.move(str(Path(tmp) / "dev" / name), out_dir / name)
    make_reproducible(out_dir)
    sealed_entry: dict[str, Any] = {}
    if sealed:
        from ..sealed.circuit import build_sealed

        options = sealed if isinstance(sealed, dict) else {}
        sealed_entry = build_sealed(compiled, calibration_X, out_dir, **options)

    layers = build_representations(model, calibration_X, out_dir, representations, settings)

    package = write_model_manifest(
        out_dir,
        model_id=model_id,
        class_names=[str(c) for c in class_names],
        # What the auditor will read: a class outside its allow-list is refused here already.
        output_kind=read_processing(out_dir / "client.zip").output_kind,
        input_schema=input_schema,
        compile_settings=settings,
        metrics=metrics,
        circuit=circuit_figures(compiled),
        description=description,
        dataset=dataset,
        license=license,
        sealed=sealed_entry,
        representations=layers,
    )
    if measure_samples and validation is not None:
        record_latency(package, np.asarray(validation[0])[:measure_samples])
    return package


def truncated_module(model: Any, layer: str) -> Any:
    """The prefix of torch ``model`` that returns the output of ``layer``: a submodule's
    qualified name (``"1"`` in an ``nn.Sequential``, ``"encoder.fc1"``) or a traced node's name.
    Traced with torch.fx, so that any module whose forward is a plain graph can be cut."""
    import torch.fx

    try:
        traced = torch.fx.symbolic_trace(model)
    except Exception as exc:  # torch raises many kinds on data-dependent control flow
        raise AuditError(f"The model cannot be traced to cut it at a hidden layer ({exc}).") \
            from exc
    graph, copies = torch.fx.Graph(), {}
    for node in traced.graph.nodes:
        if node.op == "output":
            break
        copies[node] = graph.node_copy(node, lambda n: copies[n])
        if (node.op == "call_module" and node.target == layer) or node.name == layer:
            graph.output(copies[node])
            return torch.fx.GraphModule(traced, graph)
    names = [str(n.target) for n in traced.graph.nodes if n.op == "call_module"]
    raise AuditError(f"The model has no layer {layer!r}; name one of its submodules "
                     f"({', '.join(names[:12])}).")


def build_representations(model: Any, calibration_X: np.ndarray, out_dir: Path,
                          layers: Sequence[str], settings: dict[str, Any]) -> dict[str, Any]:
    """Compile, for each named hidden layer of torch ``model``, the circuit of the prefix that
    returns its quantized activations (same compile settings and calibration as the model, so
    the same quantizers up to that layer), saved as two reproducible zips in ``out_dir``.
    Returns the manifest's ``representations`` entry: per layer, its module, width, PBS count
    and key sizes. Publishing a layer reveals its activations' meaning to whoever holds a key,
    as the model's outputs do (README "Hidden layers")."""
    from concrete.ml.deployment import FHEModelDev

    if layers and not _is_torch_module(model):
        raise AuditError("Only torch modules publish hidden layers; this model is a "
                         f"{type(model).__name__}.")
    entries: dict[str, Any] = {}
    for layer in layers:
        if not LAYER_NAME.fullmatch(layer):
            raise AuditError(f"A layer name is letters, digits, '_' and '.'; {layer[:40]!r} is "
                             "not one.")
        prefix = truncated_module(model, layer)
        compiled = compile_model(prefix, calibration_X, settings)
        with tempfile.TemporaryDirectory(dir=out_dir.parent) as tmp:
            FHEModelDev(str(Path(tmp) / "dev"), compiled).save(via_mlir=True)
            for name, target in zip(PACKAGE_ZIPS, representation_zips(layer), strict=True):
                data = (Path(tmp) / "dev" / name).read_bytes()
                (out_dir / target).write_bytes(canonical_zip(data, _canonical_member))
        shape = compiled.forward(np.asarray(calibration_X[:1], dtype=np.float32),
                                 fhe="disable").shape[1:]
        module = dict(model.named_modules()).get(layer)
        entries[layer] = {"module": type(module).__name__ if module is not None else layer,
                          "width": int(np.prod(shape)), "shape": [int(d) for d in shape],
                          **circuit_figures(compiled)}
    return entries


def publish_layers(package: ModelPackage, model: Any, calibration_X: np.ndarray,
                   layers: Sequence[str]) -> ModelPackage:
    """Add hidden-layer circuits to an existing package, for an owner who still holds the
    fitted torch module: it must compile to the package's circuit (same MLIR); the stock and
    sealed zips stay as they are. The fingerprint changes: it covers the layers too."""
    settings = package.manifest.compile_settings
    compiled = compile_model(model, np.asarray(calibration_X), settings)
    mlir = read_member(package.server_zip, "circuit.mlir").decode("utf-8")
    if compiled.fhe_circuit.mlir.strip() != mlir.strip():
        raise MismatchError(f"The model given is not the one packaged as {package.model_id!r} "
                            "(its circuit differs).")
    m = package.manifest
    entries = {**m.representations, **build_representations(
        model, np.asarray(calibration_X), package.path,
        [layer for layer in layers if layer not in m.representations], settings)}
    return write_model_manifest(
        package.path, model_id=m.model_id, class_names=m.class_names, output_kind=m.output_kind,
        input_schema=m.input_schema, compile_settings=m.compile_settings, metrics=m.metrics,
        circuit=m.circuit, description=m.description, dataset=m.dataset, license=m.license,
        measured=m.measured, sealed=m.sealed, representations=entries)


def make_reproducible(out_dir: Path) -> None:
    """Rewrite client.zip and server.zip so that the same model always gives the same bytes:
    members sorted, fixed times and modes, and the skops type node's object ids numbered in
    order. Member contents are otherwise unchanged, so Concrete ML loads them as before."""
    for name in PACKAGE_ZIPS:
        path = out_dir / name
        with atomic.replacing(path) as tmp:
            tmp.write_bytes(canonical_zip(path.read_bytes(), _canonical_member))


def canonical_zip(data: bytes, member: Callable[[str, bytes], bytes] = lambda _, b: b) -> bytes:
    """The zip ``data`` rewritten with sorted members, fixed times and modes, each member's
    content passed through ``member(name, content)`` and stored as it was (deflated or not)."""
    with zipfile.ZipFile(io.BytesIO(data)) as source:
        members = [(i.filename, i.compress_type, source.read(i)) for i in source.infolist()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for name, compress_type, content in sorted(members):
            info = zipfile.ZipInfo(name, ZIP_TIME)
            info.compress_type, info.external_attr, info.create_system = compress_type, ZIP_MODE, 3
            target.writestr(info, member(name, content))
    return buffer.getvalue()


def _canonical_member(name: str, content: bytes) -> bytes:
    if name != "serialized_processing.json":
        return content
    # Edited as text, not re-dumped: every other byte stays as Concrete ML wrote it.
    text = content.decode("utf-8")
    for node in _skops_nodes(json.loads(text)):
        old = node["serialized_value"]
        text = text.replace(f'"{old}"', f'"{canonical_zip(bytes.fromhex(old), _number_ids).hex()}"')
    return text.encode("utf-8")


def _skops_nodes(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, list):
        return [node for item in value for node in _skops_nodes(item)]
    if not isinstance(value, dict):
        return []
    if value.get("type_name") in SKOPS_NODES and isinstance(value.get("serialized_value"), str):
        return [value]
    return [node for item in value.values() for node in _skops_nodes(item)]


def _number_ids(name: str, content: bytes) -> bytes:
    """skops names each node by the ``id()`` of the object it was dumped from, to tie repeated
    references together within one dump. Numbering them 1, 2, ... in order of appearance keeps
    every tie (same id, same number; skops ignores an id of 0, hence from 1)."""
    if not name.endswith(".json"):
        return content
    numbers: dict[bytes, int] = {}

    def renumber(match: re.Match[bytes]) -> bytes:
        number = numbers.setdefault(match.group(1), len(numbers) + 1)
        return b'"__id__": %d' % number

    return _SKOPS_ID.sub(renumber, content)


def record_latency(package: ModelPackage, X: np.ndarray) -> dict[str, Any]:
    """Measure real FHE seconds per sample on ``X`` and store it in the manifest.

    The figure feeds cost estimates in the CLI and the app; the machine it came from is kept
    beside it. The manifest is not covered by the fingerprint, so this does not change the model.
    """
    from ..auditor.client import Auditor
    from ..server.run import FHEServer

    with tempfile.TemporaryDirectory() as tmp:
        auditor = Auditor(package, Path(tmp) / "keys")
        keygen_start = time.perf_counter()
        evaluation_keys = auditor.keygen()
        keygen_s = time.perf_counter() - keygen_start
        ciphertexts = [auditor.encrypt_array(x[None, ...]) for x in X]
        server = FHEServer(package)
        keys = server.load_keys(evaluation_keys)
        server.circuit.run(ciphertexts[0], keys)  # warm-up: first call pays one-off set-up
        times = []
        for ciphertext in ciphertexts:
            start = time.perf_counter()
            server.circuit.run(ciphertext, keys)
            times.append(time.perf_counter() - start)
    measured = {
        "fhe_s_per_sample": float(np.mean(times)),
        "n_samples": len(times),
        "keygen_s": keygen_s,
        "evaluation_keys_bytes": len(evaluation_keys),
        "input_bytes_per_sample": int(np.mean([len(c) for c in ciphertexts])),
        "machine": machine_info(),
        "measured_at": now_iso(),
    }
    package.manifest.measured = measured
    write_json(package.path / MANIFEST, package.manifest.to_dict())
    return measured
