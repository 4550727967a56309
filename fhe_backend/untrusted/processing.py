"""Keyless processing of a model package: quantize inputs, dequantize and post-process outputs.

Concrete ML's ``FHEModelClient`` decodes ``client.zip``'s ``serialized_processing.json`` with its
own JSON decoder: the model class, a hex-encoded skops type node, goes to ``skops.io.loads`` and
is instantiated, in the process that holds the auditor's secret key. Here the document is read
as plain data with a strict, bounded schema: the model family from an allow-list, the input and
output quantizers' parameters, nothing else; no byte of it reaches skops or pickle and nothing
is instantiated. What Concrete ML 1.9.0 does with those parameters (``quantize_input``,
``dequantize_output``, ``post_processing`` of each family) is reproduced in numpy, operation for
operation, so results are bit-identical (checked against the stock client in the tests).

Everything here is keyless: the simulator, the importer and the auditor share it.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactError
from ..formats.artifacts import ModelPackage
from ..formats.hashing import sha256_file

PROCESSING = "serialized_processing.json"

# Bounds. The zoo's documents are 2-20 KB (a tree model has one quantizer per feature); a
# 784-feature tree model would be ~0.5 MB. A skops type node is a few hundred bytes.
MAX_PROCESSING_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 16
MAX_QUANTIZERS = 16_384
MAX_ARRAY_ELEMENTS = 65_536
MAX_TYPE_NODE_BYTES = 4096
MAX_INT_DIGITS = 20
MAX_INT = 2**48  # zero points of linear accumulators reach ~2**20
MAX_N_BITS = 32
MAX_FLOAT = 1e30

INT_DTYPES = frozenset({"int64", "int32"})
FLOAT_DTYPES = frozenset({"float64", "float32"})

OUTPUT_KINDS = ("probabilities", "logits")

TOP_KEYS = frozenset({"model_type", "model_post_processing_params", "input_quantizers",
                      "output_quantizers", "is_training", "ciphertext_format"})
QUANTIZER_KEYS = frozenset({"is_signed", "is_symmetric", "is_qat", "is_narrow",
                            "is_precomputed_qat", "rmax", "rmin", "scale", "zero_point",
                            "offset", "no_clipping"})
QUANTIZER_FLAGS = ("is_signed", "is_symmetric", "is_qat", "is_narrow", "is_precomputed_qat",
                   "no_clipping")
TYPE_NODE_KEYS = frozenset({"__class__", "__module__", "__loader__", "__id__", "protocol",
                            "_skops_version"})


# What reading a damaged or hostile zip member can raise (bad CRC or header, corrupt deflate
# stream, unsupported compression or encryption).
ZIP_ERRORS = (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError,
              zlib.error)


class _Refused(Exception):
    """Raised inside the JSON parser's hooks; turned into one ArtifactError sentence."""


# --------------------------------------------------------------------------------------------
# Concrete ML 1.9.0's numerics, operation for operation


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # concrete.ml.onnx.ops_impl.numpy_sigmoid
    return np.exp(-np.logaddexp(0, -x))


def _softmax(x: np.ndarray) -> np.ndarray:
    # concrete.ml.onnx.ops_impl.numpy_softmax (axis=1, keepdims=True), in place like it
    x = np.exp(x)
    x /= np.sum(x, axis=1, keepdims=True)
    return x


def _classifier(y: np.ndarray) -> np.ndarray:
    """``BaseClassifier.post_processing``: sigmoid for two classes (one column becomes
    ``[1 - p, p]``), softmax otherwise."""
    n_classes = y.shape[1] if y.ndim > 1 and y.shape[1] > 1 else 2
    if n_classes == 2:
        y = _sigmoid(y)
        if y.ndim == 1 or y.shape[1] == 1:
            y = y.flatten()
            return np.vstack([1 - y, y]).T
        return y
    return _softmax(y)


def _tree_sum(y: np.ndarray) -> np.ndarray:
    """``BaseTreeEstimatorMixin.post_processing`` (ensembling in the clear, the default): the
    sum over trees, a single column squeezed."""
    y = np.sum(y, axis=-1)
    if y.ndim == 2 and y.shape[1] == 1:
        return y.ravel()
    return y


def _squeeze(y: np.ndarray) -> np.ndarray:
    """Linear and tree ``dequantize_output``: an (n, 1) result becomes (n,)."""
    if y.ndim == 2 and y.shape[1] == 1:
        return y.ravel()
    return y


@dataclass(frozen=True)
class Family:
    """What a Concrete ML model class does around its circuit in the clear."""

    name: str
    output_kind: str
    per_feature: bool  # trees: one input quantizer per feature column
    shape_output: Callable[[np.ndarray], np.ndarray]  # after dequantization
    post_process: Callable[[np.ndarray], np.ndarray]


LINEAR = Family("linear", "probabilities", False, _squeeze, _classifier)
BOOSTED_TREES = Family("boosted-trees", "probabilities", True, _squeeze,
                       lambda y: _classifier(_tree_sum(y)))
TREES = Family("trees", "probabilities", True, _squeeze, _tree_sum)
# NeuralNetClassifier: QuantizedTorchEstimatorMixin casts to float32 before BaseClassifier's.
NEURAL_NET = Family("neural-net", "probabilities", False, np.array,
                    lambda y: _classifier(y.astype(np.float32)))
TORCH_MODULE = Family("torch-module", "logits", False, np.array, lambda y: y)

# The model classes the project audits, as ``module.Class`` (checked against Concrete ML in the
# tests). Left out on purpose: regressors (the audits score classes), KNeighborsClassifier
# (its post-processing needs training data the client does not hold) and SGDClassifier (the
# stock client post-processes it with the default loss, whatever loss it was trained with).
FAMILIES: dict[str, Family] = {
    "concrete.ml.sklearn.linear_model.LogisticRegression": LINEAR,
    "concrete.ml.sklearn.svm.LinearSVC": LINEAR,
    "concrete.ml.sklearn.xgb.XGBClassifier": BOOSTED_TREES,
    "concrete.ml.sklearn.tree.DecisionTreeClassifier": TREES,
    "concrete.ml.sklearn.rf.RandomForestClassifier": TREES,
    "concrete.ml.sklearn.qnn.NeuralNetClassifier": NEURAL_NET,
    "concrete.ml.quantization.quantized_module.QuantizedModule": TORCH_MODULE,
}
QUANTIZED_MODULE = "concrete.ml.quantization.quantized_module.QuantizedModule"

Number = int | float | np.generic | np.ndarray


@dataclass(frozen=True)
class Quantizer:
    """A ``UniformQuantizer``'s parameters, with the numpy types Concrete ML's decoder gives."""

    scale: Number
    zero_point: Number
    offset: int | None
    n_bits: int | None
    is_narrow: bool
    no_clipping: bool

    def quant(self, values: np.ndarray) -> np.ndarray:
        """``UniformQuantizer.quant`` with ``dtype=int64`` (rounding half to even)."""
        q = np.rint(values / self.scale + self.zero_point)
        if not self.no_clipping:
            low = -self.offset
            if self.is_narrow:
                low += 1
            q = q.clip(low, 2 ** self.n_bits - 1 - self.offset)
        # Unclipped, a tiny scale sends samples to +-inf, which numpy casts to an arbitrary
        # integer; no circuit input is that wide anyway.
        if not np.all(np.abs(q) < 2**62):  # NaN fails too
            raise ArtifactError("client.zip's input quantizer maps the samples beyond 64-bit "
                                "integers.")
        return q.astype(np.int64)

    def dequant(self, q: np.ndarray) -> np.ndarray:
        """``UniformQuantizer.dequant``."""
        return self.scale * (q - np.asarray(self.zero_point, dtype=np.float64))


@dataclass(frozen=True)
class Processing:
    """What the auditor needs from ``client.zip``, read as data."""

    model_class: str
    family: Family
    inputs: tuple[Quantizer, ...]
    output: Quantizer

    @property
    def output_kind(self) -> str:
        return self.family.output_kind

    def quantize(self, X: np.ndarray) -> np.ndarray:
        """The model's ``quantize_input`` on preprocessed samples, shape (n, *input_shape)."""
        X = np.asarray(X)
        try:
            if not self.family.per_feature:
                return self.inputs[0].quant(X)
            if X.ndim != 2 or X.shape[1] != len(self.inputs):
                raise ArtifactError(
                    f"client.zip quantizes {len(self.inputs)} features one by one, but the "
                    f"samples have shape {list(X.shape[1:])}.")
            q = np.zeros_like(X, dtype=np.int64)
            for i, quantizer in enumerate(self.inputs):
                q[:, i] = quantizer.quant(X[:, i])
            return q
        except (ValueError, TypeError) as exc:  # broadcasting of array parameters
            raise ArtifactError(f"client.zip's input quantizer does not fit the samples "
                                f"({exc}).") from exc

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """The model's ``dequantize_output`` on the circuit's integer outputs."""
        try:
            return self.family.shape_output(self.output.dequant(np.asarray(q)))
        except (ValueError, TypeError) as exc:
            raise ArtifactError(f"client.zip's output quantizer does not fit the circuit's "
                                f"outputs ({exc}).") from exc

    def post_process(self, y: np.ndarray) -> np.ndarray:
        """The model's ``post_processing`` (sigmoid/softmax, sum over trees, or nothing)."""
        return self.family.post_process(y)

    def scores(self, q: np.ndarray, output_kind: str) -> np.ndarray:
        """Class probabilities, shape (n, n_classes), of the circuit's integer outputs."""
        return to_probabilities(self.post_process(self.dequantize(q)), output_kind)


def to_probabilities(raw: np.ndarray, output_kind: str) -> np.ndarray:
    """Built-ins already post-process to probabilities; torch circuits give logits."""
    raw = np.asarray(raw, dtype=np.float64).reshape(len(raw), -1)
    if output_kind == "probabilities":
        if raw.shape[1] == 1:  # a single sigmoid column: P(class 1)
            return np.hstack([1 - raw, raw])
        return raw
    shifted = np.exp(raw - raw.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------------------------
# Reading serialized_processing.json


def processing_of(package: ModelPackage) -> Processing:
    """The processing of a loaded package's ``client.zip`` (cached per file content)."""
    return read_processing(package.client_zip)


def read_processing(client_zip: Path) -> Processing:
    """Read ``serialized_processing.json`` from a ``client.zip`` that passed ``check_zip``."""
    return _read(Path(client_zip).resolve(), sha256_file(client_zip))


@lru_cache(maxsize=32)
def _read(client_zip: Path, digest: str) -> Processing:
    # ``digest`` is part of the cache key so a replaced file is read again.
    return parse_processing(_read_member(client_zip, PROCESSING, MAX_PROCESSING_BYTES))


def _read_member(path: Path, name: str, limit: int) -> bytes:
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(name)
            if info.file_size > limit:
                raise ArtifactError(f"client.zip's {name} is too large ({info.file_size} bytes).")
            with archive.open(info) as member:
                return member.read(limit + 1)
    except KeyError as exc:
        raise ArtifactError(f"client.zip lacks {name}.") from exc
    except ZIP_ERRORS as exc:
        raise ArtifactError(f"client.zip's {name} cannot be read ({exc}).") from exc


def parse_processing(raw: bytes) -> Processing:
    """The strict schema walk; anything unexpected is one ArtifactError sentence."""
    data = _load_json(raw, PROCESSING, MAX_PROCESSING_BYTES)
    what = f"client.zip's {PROCESSING}"
    _object(data, what, TOP_KEYS, optional={"is_fitted"})
    model_class = _model_class(data["model_type"])
    family = FAMILIES.get(model_class)
    if family is None:
        raise ArtifactError(f"client.zip holds a model of class {model_class[:120]!r}, which this "
                            f"project does not audit; supported: "
                            f"{', '.join(sorted(c.rsplit('.', 1)[-1] for c in FAMILIES))}.")
    if data["model_post_processing_params"] != {}:
        raise ArtifactError(f"{what} has post-processing parameters, which no supported "
                            "classifier uses.")
    if data["is_training"] is not False:
        raise ArtifactError(f"{what} describes a training circuit, not an inference one.")
    # NeuralNetClassifier writes null: the stock client then takes Concrete's format too.
    if data["ciphertext_format"] not in ("concrete", None):
        raise ArtifactError(f"{what} uses the ciphertext format "
                            f"{str(data['ciphertext_format'])[:40]!r}; only 'concrete' is "
                            "supported.")
    fitted = data.get("is_fitted")
    if model_class == QUANTIZED_MODULE:
        if fitted is not None and not isinstance(fitted, bool):
            raise ArtifactError(f"{what}: is_fitted must be true or false.")
    elif fitted is not True:
        raise ArtifactError(f"{what} describes a model that is not fitted.")
    inputs = _quantizers(data["input_quantizers"], "input", for_inputs=True)
    outputs = _quantizers(data["output_quantizers"], "output", for_inputs=False)
    if len(outputs) != 1:
        raise ArtifactError(f"{what} has {len(outputs)} output quantizers; the audited models "
                            "have one output.")
    if not family.per_feature and len(inputs) != 1:
        raise ArtifactError(f"{what} has {len(inputs)} input quantizers; the audited models "
                            "have one input.")
    return Processing(model_class, family, inputs, outputs[0])


def _load_json(raw: bytes, name: str, limit: int) -> Any:
    if len(raw) > limit:
        raise ArtifactError(f"client.zip's {name} is too large (over {limit} bytes).")
    try:
        data = json.loads(raw.decode("utf-8"), parse_int=_parse_int, parse_float=_parse_float,
                          parse_constant=_parse_constant)
        _check_depth(data)
        return data
    except _Refused as exc:
        raise ArtifactError(f"client.zip's {name} {exc}.") from None
    except RecursionError:  # the parser's own limit, far above ours
        raise ArtifactError(f"client.zip's {name} is nested more than {MAX_DEPTH} levels "
                            "deep.") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ArtifactError(f"client.zip's {name} is not valid JSON ({exc}).") from None


def _check_depth(data: Any) -> None:
    """Bound the nesting before anything walks the document recursively."""
    level = [data]
    for _ in range(MAX_DEPTH + 1):
        level = [child for node in level if isinstance(node, dict | list)
                 for child in (node.values() if isinstance(node, dict) else node)]
        if not level:
            return
    raise _Refused(f"is nested more than {MAX_DEPTH} levels deep")


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"holds an integer of {len(text)} digits")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > 64:
        raise _Refused("holds an overlong number")
    value = float(text)
    if not np.isfinite(value):
        raise _Refused("holds an infinite number")
    return value


def _parse_constant(text: str) -> float:
    raise _Refused(f"holds {text}, which is not a number")


def _object(value: Any, what: str, required: frozenset[str], optional: set[str] | None = None,
            ) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ArtifactError(f"{what} is not a JSON object.")
    missing = sorted(required - set(value))
    unknown = sorted(set(value) - required - (optional or set()))
    if missing:
        raise ArtifactError(f"{what} lacks {', '.join(missing)}.")
    if unknown:
        raise ArtifactError(f"{what} has unexpected field(s) "
                            f"{', '.join(repr(k[:40]) for k in unknown[:5])}.")
    return value


def _model_class(node: Any) -> str:
    """``module.Class`` named by the skops type node, read as JSON text: the node is a zip
    holding one ``schema.json`` (skops 0.5 ``TypeNode``); it is never handed to skops."""
    what = "client.zip's model_type"
    _object(node, what, frozenset({"type_name", "serialized_value"}))
    hex_text = node["serialized_value"]
    if node["type_name"] != "type" or not isinstance(hex_text, str):
        raise ArtifactError(f"{what} is not a skops type node.")
    if len(hex_text) > 2 * MAX_TYPE_NODE_BYTES:
        raise ArtifactError(f"{what} is too large for a skops type node.")
    try:
        blob = bytes.fromhex(hex_text)
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            infos = archive.infolist()
            if [i.filename for i in infos] != ["schema.json"]:
                raise ArtifactError(f"{what} is not a skops type node (it must hold exactly "
                                    "one schema.json).")
            if infos[0].file_size > MAX_TYPE_NODE_BYTES:
                raise ArtifactError(f"{what}'s schema.json is too large.")
            with archive.open(infos[0]) as member:
                raw = member.read(MAX_TYPE_NODE_BYTES + 1)
    except (ValueError, *ZIP_ERRORS) as exc:
        raise ArtifactError(f"{what} is not a skops type node ({exc}).") from None
    schema = _object(_load_json(raw, "model_type schema.json", MAX_TYPE_NODE_BYTES),
                     f"{what}'s schema.json", TYPE_NODE_KEYS)
    if schema["__loader__"] != "TypeNode" or schema["protocol"] != 0 or not all(
            isinstance(schema[k], str) and 0 < len(schema[k]) <= 200
            for k in ("__class__", "__module__", "_skops_version")) or not isinstance(
            schema["__id__"], int) or isinstance(schema["__id__"], bool):
        raise ArtifactError(f"{what} is not a skops 0.5 type node.")
    return f"{schema['__module__']}.{schema['__class__']}"


def _quantizers(value: Any, role: str, *, for_inputs: bool) -> tuple[Quantizer, ...]:
    what = f"client.zip's {role} quantizers"
    if not isinstance(value, list) or not value:
        raise ArtifactError(f"{what} are not a non-empty list.")
    if len(value) > MAX_QUANTIZERS:
        raise ArtifactError(f"{what} number {len(value)}, over {MAX_QUANTIZERS}.")
    return tuple(_quantizer(node, f"{what} (#{i})", for_inputs) for i, node in enumerate(value))


def _quantizer(node: Any, what: str, for_inputs: bool) -> Quantizer:
    _object(node, what, frozenset({"type_name", "serialized_value"}))
    if node["type_name"] != "UniformQuantizer":
        raise ArtifactError(f"{what}: only UniformQuantizer is supported.")
    fields = _object(node["serialized_value"], what, QUANTIZER_KEYS, optional={"n_bits"})
    for flag in QUANTIZER_FLAGS:
        if not isinstance(fields[flag], bool):
            raise ArtifactError(f"{what}: {flag} must be true or false.")
    for bound in ("rmin", "rmax"):  # calibration statistics: checked, not used
        if fields[bound] is not None:
            _number(fields[bound], f"{what} {bound}", floats=True, ints=True)
    scale = _number(fields["scale"], f"{what} scale", floats=True, ints=False)
    if not np.all(np.asarray(scale) > 0):
        raise ArtifactError(f"{what}: the scale must be positive.")
    zero_point = _number(fields["zero_point"], f"{what} zero_point", floats=True, ints=True)
    offset = _integer(fields["offset"], f"{what} offset", 0, 2**MAX_N_BITS, nullable=True)
    n_bits = _integer(fields.get("n_bits"), f"{what} n_bits", 1, MAX_N_BITS, nullable=True)
    no_clipping = fields["no_clipping"]
    if for_inputs and (offset is None or (n_bits is None and not no_clipping)):
        raise ArtifactError(f"{what}: an input quantizer needs n_bits and offset.")
    return Quantizer(scale=scale, zero_point=zero_point, offset=offset, n_bits=n_bits,
                     is_narrow=fields["is_narrow"], no_clipping=no_clipping)


def _integer(value: Any, what: str, low: int, high: int, *, nullable: bool) -> int | None:
    """A whole number within [low, high]: a plain JSON integer, or a numpy node holding one
    (Brevitas-trained quantizers store n_bits as a 0-d float32 array, e.g. 3.0)."""
    if value is None and nullable:
        return None
    if isinstance(value, dict):
        number = _number(value, what, floats=True, ints=True)
        if np.ndim(number) or float(number) != int(number):
            raise ArtifactError(f"{what} must be a single whole number.")
        value = int(number)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ArtifactError(f"{what} must be an integer from {low} to {high}.")
    return value


def _number(value: Any, what: str, *, floats: bool, ints: bool) -> Number:
    """A bounded number with the type Concrete ML's decoder would give it: a JSON number stays
    a Python number; ``numpy_integer``/``numpy_float``/``numpy_array`` become numpy values of
    their declared dtype."""
    if (_is_int(value) and ints) or (isinstance(value, float) and floats):
        _bounded(value, MAX_INT if _is_int(value) else MAX_FLOAT, what)
        return value
    if not isinstance(value, dict):
        raise ArtifactError(f"{what} must be a number.")
    _object(value, what, frozenset({"type_name", "serialized_value", "dtype"}))
    kind, dtype, raw = value["type_name"], value["dtype"], value["serialized_value"]
    allowed = (INT_DTYPES if ints else frozenset()) | (FLOAT_DTYPES if floats else frozenset())
    if dtype not in allowed:
        raise ArtifactError(f"{what} has dtype {str(dtype)[:20]!r}; allowed: "
                            f"{', '.join(sorted(allowed))}.")
    integers = dtype in INT_DTYPES
    limit = min(MAX_INT, int(np.iinfo(dtype).max)) if integers else MAX_FLOAT
    if kind == "numpy_integer" and integers and _is_int(raw):
        _bounded(raw, limit, what)
        return np.int64(raw).astype(dtype)
    if kind == "numpy_float" and not integers and _is_real(raw):
        _bounded(raw, limit, what)
        return np.float64(raw).astype(dtype)
    if kind == "numpy_array":
        _bounded(_array_values(raw, what, integers), limit, what)
        return np.asarray(raw).astype(dtype)
    raise ArtifactError(f"{what} is not a {', '.join(sorted(allowed))} value.")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, float) or _is_int(value)


def _array_values(raw: Any, what: str, integers: bool) -> list[Any]:
    """The numbers of a rectangular nested list (or of a 0-d array, a bare number), bounded in
    count (the depth is bounded already)."""
    array = np.asarray(raw if isinstance(raw, list) else [raw], dtype=object)
    if array.size == 0 or array.size > MAX_ARRAY_ELEMENTS:
        raise ArtifactError(f"{what} is not a bounded array of numbers.")
    values = list(array.flat)
    if not all(_is_int(x) if integers else _is_real(x) for x in values):
        raise ArtifactError(f"{what} is not a rectangular array of numbers.")
    return values


def _bounded(values: Any, limit: float, what: str) -> None:
    """Numbers within +-limit, checked before numpy converts them (no overflow, no inf)."""
    if not all(abs(x) <= limit for x in (values if isinstance(values, list) else [values])):
        raise ArtifactError(f"{what} is out of range (beyond {limit:.3g}).")


# --------------------------------------------------------------------------------------------
# The auditor's client specs


def auditor_client_specs(package: ModelPackage) -> Any:
    """The ``concrete.fhe.ClientSpecs`` the auditor generates keys and encrypts with: derived by
    compiling the allow-listed circuit at 128-bit security, after refusing a ``client.zip``
    whose specs say otherwise (:func:`fhe_backend.untrusted.sandbox.trusted_client_specs`)."""
    from concrete import fhe

    from .sandbox import trusted_client_specs

    return fhe.ClientSpecs.deserialize(
        trusted_client_specs(package.client_zip, package.server_zip))
