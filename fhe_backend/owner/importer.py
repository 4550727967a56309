"""Model owner: a model package from an existing Concrete ML deployment (``FHEModelDev`` output).

For owners who compiled and saved their model with plain Concrete ML: the deployment's
``client.zip`` and ``server.zip`` are copied byte for byte (the fingerprint is theirs), and a
schema file written by the owner says what the circuit's inputs mean. Nothing from the
deployment is unpickled or executed: both zips pass the member checks every package passes and
the Concrete version check, the circuit is compiled from its MLIR (which yields the PBS count),
and the model's kind and quantizers are read as data from ``client.zip`` (:mod:`.processing`:
the skops type node naming the model class is parsed as JSON, never handed to skops).

Schema file (JSON)::

    {"class_names": ["class_0", "class_1", "class_2"],      required, in output order
     "columns": [{"name": "alcohol", "type": "numeric"},   required: the raw columns
                 {"name": "region", "type": "categorical", "categories": ["north", "south"]}],
     "preprocessing": [{"op": "standardize", "column": "alcohol", "mean": 13.0, "scale": 0.8},
                       {"op": "one_hot", "column": "region", "categories": ["north", "south"]}],
                           optional: the steps, in the order of the circuit's input features;
                           default: every column passed through as it is
     "model_id": "...",    optional, default: the package folder's name
     "output_kind": "probabilities" | "logits",
                           optional: built-ins post-process to probabilities, torch circuits
                           give logits; read from client.zip when absent
     "input_shape": [13],  optional: the circuit's per-sample shape, read from client.zip
     "description": "...", "dataset": "...", "license": "...", "compile_settings": {...}}
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, get_origin, get_type_hints

import numpy as np

from ..auditor.benchmarks import PlainBenchmark
from ..auditor.keydirs import refuse_inside_key_dir
from ..errors import ArtifactError, AuditError
from ..formats.artifacts import (
    MANIFEST,
    PACKAGE_ZIPS,
    ModelPackage,
    check_concrete_zip,
    parse_fields,
    read_json,
    write_json,
    write_model_manifest,
)
from ..formats.schema import InputSchema
from ..untrusted.processing import OUTPUT_KINDS, Processing, read_processing
from ..untrusted.safezip import read_member
from ..untrusted.sandbox import vet


@dataclass
class SchemaFile:
    """What the owner declares about a deployment: classes, raw columns, preprocessing."""

    class_names: list[str]
    columns: list[Any]
    preprocessing: list[Any] = field(default_factory=list)
    input_shape: list[Any] = field(default_factory=list)
    model_id: str = ""
    output_kind: str = ""
    description: str = ""
    dataset: str = ""
    license: str = ""
    compile_settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> SchemaFile:
        what = f"Schema file {path}"
        data = read_json(path, what)
        types = {name: get_origin(hint) or hint for name, hint in get_type_hints(cls).items()}
        unknown = sorted(set(data) - set(types))
        if unknown:
            raise ArtifactError(f"{what} has unknown key(s) {', '.join(unknown)}; known keys: "
                                f"{', '.join(types)}.")
        # A hand-written value of the wrong type is refused, not silently replaced by a default.
        for key, value in data.items():
            if not isinstance(value, types[key]):
                raise ArtifactError(f"{what}: {key!r} must be a {types[key].__name__}.")
        spec = parse_fields(cls, data, what)
        spec.class_names = [str(c) for c in spec.class_names]
        if len(set(spec.class_names)) != len(spec.class_names) or len(spec.class_names) < 2:
            raise ArtifactError(f"{what} must list at least two distinct class_names.")
        if spec.output_kind and spec.output_kind not in OUTPUT_KINDS:
            raise ArtifactError(f"{what}: output_kind must be one of {', '.join(OUTPUT_KINDS)}.")
        return spec

    def input_schema(self) -> InputSchema:
        """Without declared steps the circuit takes every column's raw value, in order."""
        steps = self.preprocessing or [
            {"op": "passthrough", "column": c.get("name")} for c in self.columns
            if isinstance(c, dict)]
        return InputSchema.from_dict({"columns": self.columns, "preprocessing": steps,
                                      "input_shape": self.input_shape})


def check_deployment(deployment: Path) -> dict[str, Path]:
    """The deployment's two zips, checked member by member and for the Concrete versions."""
    zips = {name: deployment / name for name in PACKAGE_ZIPS}
    for name, path in zips.items():
        if not path.is_file():
            raise ArtifactError(f"Deployment {deployment} has no {name}; pass the folder that "
                                "FHEModelDev.save wrote.")
        check_concrete_zip(path, f"Deployment {deployment}")
    return zips


def circuit_input_shape(client_zip: Path) -> tuple[int, ...]:
    """The circuit's per-sample input shape (its single encrypted input, batch of one dropped)."""
    try:
        specs = json.loads(read_member(client_zip, "client.specs.json"))
        (circuit,) = specs["circuits"]
        (value,) = circuit["inputs"]
        dims = value["typeInfo"]["lweCiphertext"]["abstractShape"]["dimensions"]
        shape = tuple(int(d) for d in dims)
    except (KeyError, TypeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise ArtifactError("client.zip does not describe one circuit with one encrypted "
                            "input; only such models can be audited.") from exc
    if len(shape) < 2 or shape[0] != 1:
        raise ArtifactError(f"client.zip's circuit input has shape {list(shape)}, not one sample.")
    return shape[1:]


def output_kind(declared: str, processing: Processing) -> str:
    """Built-ins post-process to probabilities, a torch circuit (QuantizedModule) gives logits;
    a declaration that contradicts client.zip is refused rather than trusted."""
    inferred = processing.output_kind
    if declared and declared != inferred:
        raise ArtifactError(f"The schema file declares output_kind {declared!r}, but client.zip "
                            f"holds a {processing.model_class.rsplit('.', 1)[-1]}, whose outputs "
                            f"are {inferred}.")
    return inferred


def circuit_figures(server_zip: Path) -> dict[str, Any]:
    """What the compiled circuit tells without the model object. The bit width is read from
    the model's graph, which a deployment does not hold: recorded as unknown."""
    vetted = vet(server_zip)  # allow-list and compile in a sandboxed child
    return {
        "pbs_count": vetted.pbs_count,
        "max_bit_width": None,
        "size_of_bootstrap_keys": vetted.size_of_bootstrap_keys,
        "size_of_keyswitch_keys": vetted.size_of_keyswitch_keys,
    }


def fit_shape(schema: InputSchema, shape: tuple[int, ...]) -> InputSchema:
    """The schema with the circuit's input shape; refuses one that cannot fill it."""
    if schema.input_shape and schema.input_shape != shape:
        raise ArtifactError(f"The schema file's input_shape {list(schema.input_shape)} differs "
                            f"from the circuit's {list(shape)}.")
    if schema.n_features != int(np.prod(shape)):
        raise ArtifactError(f"The schema file's preprocessing yields {schema.n_features} "
                            f"features, but the circuit takes {int(np.prod(shape))} per sample.")
    return replace(schema, input_shape=shape)


def validation_metrics(package: ModelPackage, validation: PlainBenchmark) -> dict[str, Any]:
    """Accuracy on the owner's labelled rows of the compiled circuit in Concrete's simulator:
    without the model object, the simulator of the same MLIR is the clear model."""
    from ..audits import simulate_predictions  # audits pulls in the explainers

    predicted = simulate_predictions(package, validation).predictions
    truth = validation.labels(package.manifest.class_names)
    return {"accuracy_quantized_clear": float(np.mean(predicted == truth)),
            "n_validation": validation.n_samples, "validation": "concrete-simulation"}


def import_model(deployment: Path, schema_file: Path, out: Path, *,
                 validation: PlainBenchmark | None = None) -> ModelPackage:
    """Write a model package to ``out`` (new or empty) from a deployment and a schema file.

    Everything is checked before anything is written, and the package is assembled in a
    sibling folder and renamed into place, so a failure leaves no half package behind.
    """
    deployment, out = Path(deployment), Path(out)
    refuse_inside_key_dir(out, "a model package")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise AuditError(f"{out} is not empty; choose a new folder for the package.")
    spec = SchemaFile.read(Path(schema_file))
    zips = check_deployment(deployment)
    schema = fit_shape(spec.input_schema(), circuit_input_shape(zips["client.zip"]))
    kind = output_kind(spec.output_kind, read_processing(zips["client.zip"]))
    circuit = circuit_figures(zips["server.zip"])
    if validation is not None:
        validation.check_inputs(schema, spec.class_names)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        for name, path in zips.items():
            shutil.copyfile(path, staging / name)
        package = write_model_manifest(
            staging, model_id=spec.model_id or out.name, class_names=spec.class_names,
            output_kind=kind, input_schema=schema, compile_settings=spec.compile_settings,
            metrics={"accuracy_float": None}, circuit=circuit, description=spec.description,
            dataset=spec.dataset, license=spec.license)
        if validation is not None:
            package.manifest.metrics.update(validation_metrics(package, validation))
            write_json(staging / MANIFEST, package.manifest.to_dict())
        if out.exists():
            out.rmdir()  # checked empty above
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone after the rename; left on failure
    return ModelPackage.load(out)
