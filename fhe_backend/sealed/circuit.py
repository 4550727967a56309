"""Sealed audits: the metric is computed under FHE and only one total of counts per run is
decrypted.

The model owner compiles, next to the stock per-sample circuit, a *sealed* circuit with plain
``concrete.fhe``: a Concrete module of three functions sharing one keyset,

- ``count(q, code)`` takes a batch of B quantized samples and one small code per sample (0 for
  padding or a masked row, else ``1 + label + 2 * group``), runs the fitted model's own quantized
  inference (binary built-in linear or tree classifier, or a single-input torch module with two
  outputs), takes the class decision, and counts, over the batch, how many samples of each
  (group, true label) cell were predicted positive: one ``TOTAL_BITS``-bit counter per cell;
- ``add(a, b)`` = ``refresh(a + b)`` adds two such count tensors (the refresh, one bootstrap per
  bit of each counter, is what lets the sum come back as an input: Concrete refuses the
  composition otherwise);
- ``noise(a, n)`` = ``a + n`` adds a clear vector that only the server knows (differential
  privacy for a privately served model, :mod:`fhe_backend.sealed.dp`); linear, no bootstrap.

Wired count -> add, add -> add and both -> noise (:data:`fhe_backend.untrusted.composition`'s
registry holds that wiring; it is never read from the package). The server runs ``count`` per
batch, adds the batches up along a chain and publishes only the run's total: the key holder can
decrypt one count per (group, true label) cell per run, never a batch's. Per-batch counts were
what the earlier design opened, and they leak: an auditor that keeps its shuffle pins 45-77%
of the predictions from them, against 1-10% from one total (:mod:`fhe_backend.sealed.leak`,
``bench --sealed-leak``). One total does not stop an auditor that chooses its codes (one real
row per cell, the rest masked, reveals ``2 * n_groups`` predictions per run): only noise
drawn by a server the auditor does not control, with a budget, bounds that (the README's threat
table). With the auditor's own label and group totals the counts give the confusion matrix
and, per group, the binary confusion counts, hence accuracy, balanced accuracy, precision,
recall, F1 and the fairlearn gaps (ROC-AUC needs scores and is not available).

Package files (hashed in the manifest, covered by the fingerprint)::

    sealed_client.zip  client.specs.json, sealed.json (layout + input quantizer), versions.json
    sealed_server.zip  circuit.mlir (the three functions), configuration.json,
                       client.specs.json, versions.json

Key directory of the auditor: ``KEYS/<fingerprint[:16]>-sealed/`` (its own keyset).
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import AuditError, MismatchError, NotFoundError
from ..formats.artifacts import ModelPackage, installed_versions
from ..untrusted.safezip import read_member

SEALED_CLIENT = "sealed_client.zip"
SEALED_SERVER = "sealed_server.zip"
SEALED_ZIPS = (SEALED_CLIENT, SEALED_SERVER)
LAYOUT = "sealed.json"
CIRCUIT = "sealed"  # the encrypted benchmark's and transcript's name for this circuit
DEFAULT_BATCH_SIZE = 16
DEFAULT_GROUPS = 2
MAX_GROUPS = 16
MAX_BATCH_SIZE = 256
# Width of each counter of the total. A cell counts at most MAX_CELL rows per run (adult-income-
# test has 1,000), and the server's clear noise argument lies in [0, NOISE_RANGE): the noisy total
# stays below 2 ** TOTAL_BITS, so no counter overflows whatever noise was drawn.
TOTAL_BITS = 11
MAX_CELL = 2 ** (TOTAL_BITS - 1) - 1
NOISE_RANGE = 2 ** (TOTAL_BITS - 1)
# The module's functions (the untrusted side's registry names the same three and their wiring).
COUNT, ADD, NOISE = "count", "add", "noise"
# Bits kept by the exact truncation of a linear model's accumulator before its sign lookup:
# each bit removed is one PBS, each bit kept makes the keys bigger. For the zoo's 4-bit logistic
# regression (12-bit accumulator), measured at a load of 5-8 on 2 cores: 5 bits kept -> 9 PBS
# per sample, 84 MB of keys, 0.76 s/sample; 6 -> 8 PBS, 177 MB, 0.61 s; 7 -> 7 PBS, 299 MB,
# 64 s of keygen, 0.50 s.
LINEAR_KEPT_BITS = 6
# Per-lookup error rate of the sealed module. Each ``add`` refreshes every 11-bit counter bit by
# bit, and one wrong bit there moves a count by a power of two (the zoo's XGBoost at its package's
# 1e-3 once decrypted counts above the rows encrypted), so the module is compiled at 1e-9, not at
# the package's own rate (breast-cancer-xgb: 1.27 + 0.49 GB of bootstrap and key-switching keys
# uncompressed at 1e-9, against 0.93 + 0.30 at 1e-3; logistic regressions: the same keys as
# Concrete's default).
SEALED_P_ERROR = 1e-9
# A torch model's decision needs wide lookups: at 1e-6 the zoo's MLP took 4.95 + 2.27 GB of keys
# uncompressed, so it stays at 1e-4 per lookup (2.85 + 1.20 GB): a refresh error is possible
# (README, "Sealed audits"); a count above the rows encrypted is refused at decryption.
NEURAL_P_ERROR = 1e-4
ZIP_DATE = (2020, 1, 1, 0, 0, 0)  # fixed member times: the same circuit gives the same zip


# --------------------------------------------------------------------------------------------
# Layout: what the circuit counts


@dataclass(frozen=True)
class SealedLayout:
    batch_size: int
    n_groups: int
    total_bits: int
    input_shape: list[int]
    quantizer: dict[str, Any]

    @classmethod
    def make(cls, batch_size: int, n_groups: int, input_shape: list[int],
             quantizer: dict[str, Any]) -> SealedLayout:
        return cls(batch_size, n_groups, TOTAL_BITS, input_shape, quantizer)

    @property
    def n_counters(self) -> int:
        return 2 * self.n_groups  # predicted positive, per (group, true label)

    def counts(self, predictions: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """What ``count`` computes for each batch, shape (n_batches, n_counters), in numpy."""
        predictions = np.asarray(predictions, dtype=np.int64).reshape(-1, self.batch_size)
        codes = np.asarray(codes, dtype=np.int64).reshape(-1, self.batch_size)
        return np.stack([np.sum((predictions == 1) & (codes == c + 1), axis=1)
                         for c in range(self.n_counters)], axis=1)

    def cells(self, counters: np.ndarray) -> np.ndarray:
        """Counters, shape (n_groups, 2), from the decrypted vector."""
        return np.asarray(counters, dtype=np.int64).reshape(self.n_groups, 2)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SealedLayout:
        try:
            layout = cls(**{k: data[k] for k in cls.__dataclass_fields__})
        except (KeyError, TypeError) as exc:
            raise AuditError("The sealed circuit's layout is missing or malformed (a package "
                             "built before one total per run must be rebuilt).") from exc
        if not (1 <= int(layout.batch_size) <= MAX_BATCH_SIZE
                and 1 <= int(layout.n_groups) <= MAX_GROUPS
                and layout.total_bits == TOTAL_BITS):
            raise AuditError("The sealed circuit's layout is out of bounds.")
        return layout


def quantize(X: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """Concrete ML's ``UniformQuantizer.quant`` in plain numpy (one quantizer per feature or
    one for all): ``rint(x / scale + zero_point)`` clipped to the n-bit range."""
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    scale = np.asarray(params["scale"], dtype=np.float64)
    zero_point = np.asarray(params["zero_point"], dtype=np.float64)
    q = np.rint(X / scale + zero_point)
    low, high = input_box(params)
    clip = ~np.asarray(params["no_clipping"], dtype=bool)
    q = np.where(clip, np.clip(q, low, high), q)
    return q.astype(np.int64)


def input_box(params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest quantized value of each input (or of all, for one quantizer)."""
    low = -np.asarray(params["offset"]) + np.asarray(params["is_narrow"], dtype=np.int64)
    high = 2 ** np.asarray(params["n_bits"]) - 1 - np.asarray(params["offset"])
    return low.astype(np.int64), high.astype(np.int64)


def _quantizer_params(compiled: Any, n_features: int) -> dict[str, Any]:
    quantizers = compiled.input_quantizers
    keys = ("n_bits", "is_narrow", "scale", "zero_point", "offset", "no_clipping")
    if len(quantizers) == 1:
        q = quantizers[0]
        return {k: _plain(getattr(q, k)) for k in keys}
    if len(quantizers) != n_features:
        raise AuditError("the model's input quantizers do not match its features")
    return {k: [_plain(getattr(q, k)) for q in quantizers] for k in keys}


def _plain(value: Any) -> Any:
    value = np.asarray(value)
    if value.size != 1:
        raise AuditError("per-channel input quantizers are not supported by sealed audits")
    return value.item()


# --------------------------------------------------------------------------------------------
# Owner: the decision of each model family, and the compiled sealed circuit


@dataclass(frozen=True)
class Decision:
    """How a model family feeds the count lookups: ``index(q, code)`` is the traced value every
    count lookup reads, ``split`` recovers (class, code) from it in numpy (to fill the tables),
    ``score`` orders the calibration samples and ``corners`` are extra inputs the inputset must
    cover."""

    index: Callable[[Any, Any], Any]
    split: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    score: np.ndarray
    corners: np.ndarray


def _class_and_code(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return index % 2, index // 2


def _classes_of(compiled: Any, raw_q: np.ndarray) -> np.ndarray:
    """The per-sample path's class for quantized circuit outputs, computed exactly as the
    auditor's decryption does (dequantize, post-process, argmax of the probabilities)."""
    from ..untrusted.processing import to_probabilities

    raw = compiled.post_processing(compiled.dequantize_output(raw_q))
    return np.argmax(to_probabilities(raw, "probabilities"), axis=1)


def _threshold(values: np.ndarray, classes: np.ndarray) -> int:
    """The value from which on the class is 1, refused unless the classes are a threshold."""
    ones = np.flatnonzero(classes == 1)
    if len(ones) == 0 or not np.all(classes[ones[0]:] == 1) or np.any(classes[:ones[0]] == 1):
        raise AuditError("the model's decision is not a threshold on its output")
    return int(values[ones[0]])


def _linear_decision(compiled: Any, q_cal: np.ndarray, params: dict[str, Any],
                     input_shape: tuple[int, ...]) -> Decision:
    """Binary linear model: class 1 exactly when the accumulator is at least a threshold t,
    found from the model's own post-processing over every accumulator any input can give.

    The accumulator is affine in the quantized input, so its extremes over the quantizer's box
    are reached at two corners; those corners join the inputset, so no input, however far from
    the calibration data, can overflow the circuit's bit width."""
    from concrete import fhe

    n_features = q_cal.shape[1]
    low_q, high_q = (np.broadcast_to(b, (n_features,)) for b in input_box(params))
    if np.any(np.asarray(params["no_clipping"], dtype=bool)):
        raise AuditError("the model's inputs are not clipped, so its accumulator is unbounded")
    origin = compiled._inference(np.zeros((1, n_features), dtype=np.int64))[0, 0]
    weights = compiled._inference(np.eye(n_features, dtype=np.int64))[:, 0] - origin
    corners = np.stack([np.where(weights > 0, low_q, high_q), np.where(weights > 0, high_q, low_q)])
    acc_low, acc_high = (int(a) for a in compiled._inference(corners)[:, 0])
    values = np.arange(acc_low - 1, acc_high + 2, dtype=np.int64)
    threshold = _threshold(values, _classes_of(compiled, values.reshape(-1, 1)))
    # d = acc - threshold (class 1 iff d >= 0) lies in [acc_low - threshold, acc_high -
    # threshold]: too wide for one lookup. Shifted by ``offset``, a multiple of 2**lsbs, it
    # becomes e >= 0 with class 1 iff e >= offset; truncating the lsbs of e (a floor) keeps that
    # comparison exact, and the sign lookup then reads only the bits that are left.
    span_bits = (acc_high - acc_low + 1).bit_length()
    lsbs = max(0, span_bits - LINEAR_KEPT_BITS)
    offset = -((acc_low - threshold) >> lsbs << lsbs)

    def index(q: Any, code: Any) -> Any:
        e = compiled._inference(q)[:, 0] + (offset - threshold)
        if lsbs:
            e = fhe.truncate_bit_pattern(e, lsbs_to_remove=lsbs)
        return (e >= offset) + 2 * code

    return Decision(index, _class_and_code, compiled._inference(q_cal)[:, 0], corners)


def _tree_decision(compiled: Any, q_cal: np.ndarray, params: dict[str, Any],
                   input_shape: tuple[int, ...]) -> Decision:
    """Binary tree ensemble: the trees' integer outputs are summed, and one lookup gives the
    class of every possible sum, from the model's own post-processing."""
    from concrete import fhe

    out = compiled._inference(q_cal)
    if out.ndim != 3 or out.shape[1] != 1:
        raise AuditError("only binary tree ensembles are supported by sealed audits")
    n_trees = out.shape[2]
    oq = compiled.output_quantizers[0]
    q_low, q_high = -int(oq.offset), 2 ** int(oq.n_bits) - 1 - int(oq.offset)
    low, high = n_trees * q_low, n_trees * q_high  # every sum the trees can produce
    sums = np.arange(low, high + 1, dtype=np.int64)
    raw = np.full((len(sums), 1, n_trees), int(oq.zero_point), dtype=np.int64)
    raw[:, 0, 0] = sums - (n_trees - 1) * int(oq.zero_point)  # dequantization is linear
    classes = _classes_of(compiled, raw)
    # Every possible sum gets its class, so a sum no calibration sample reached is exact too.
    width = max(abs(low), abs(high)).bit_length() + 1

    def sum_class(total: Any) -> Any:
        return classes[np.clip(total - low, 0, len(classes) - 1)]

    def index(q: Any, code: Any) -> Any:
        total = fhe.hint(np.sum(compiled._inference(q), axis=(1, 2)), bit_width=width)
        return fhe.univariate(sum_class)(total) + 2 * code

    return Decision(index, _class_and_code, out.sum(axis=(1, 2)), q_cal[:0])


def _neural_decision(compiled: Any, q_cal: np.ndarray, params: dict[str, Any],
                     input_shape: tuple[int, ...]) -> Decision:
    """Torch module with two outputs sharing one output scale (their zero points may differ):
    the dequantization is the same increasing map up to a shift, so the argmax is class 1
    exactly when the difference of the integer outputs is at least a threshold, found from the
    model's own post-processing; one lookup on the difference decides."""
    def forward(q: Any) -> Any:  # the circuit takes flat features; the module its own shape
        return compiled._clear_forward(q.reshape((q.shape[0], *input_shape)))

    out = forward(q_cal)
    if out.ndim != 2 or out.shape[1] != 2:
        raise AuditError("sealed audits support binary classifiers only (the module has "
                         f"{out.shape[-1]} outputs)")
    if len(compiled.output_quantizers) != 1 or np.asarray(
            compiled.output_quantizers[0].scale).size != 1:
        raise AuditError("the module's two outputs do not share one output scale")
    diff = out[:, 1] - out[:, 0]
    # The classes cross where the dequantized outputs are equal: at the zero points' difference.
    zero_points = np.broadcast_to(np.asarray(compiled.output_quantizers[0].zero_point,
                                             dtype=np.float64).reshape(-1), (2,))
    cross = int(np.rint(zero_points[1] - zero_points[0]))
    values = np.arange(min(int(diff.min()), cross) - 2, max(int(diff.max()), cross) + 3,
                       dtype=np.int64)
    classes = _classes_of(compiled, np.stack([np.zeros_like(values), values], axis=1))
    threshold = _threshold(values, classes)

    def index(q: Any, code: Any) -> Any:
        y = forward(q)
        return (y[:, 1] - y[:, 0] >= threshold) + 2 * code

    return Decision(index, _class_and_code, diff, q_cal[:0])


DECISIONS = {"linear": _linear_decision, "tree": _tree_decision, "neural": _neural_decision}


def _forward(compiled: Any, q: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """The quantized circuit's integer outputs, in clear, for flat quantized features."""
    if hasattr(compiled, "_clear_forward"):
        return compiled._clear_forward(q.reshape((len(q), *input_shape)))
    return compiled._inference(q)


def _family(compiled: Any) -> str:
    from concrete.ml.quantization import QuantizedModule
    from concrete.ml.sklearn.base import BaseTreeClassifierMixin, SklearnLinearClassifierMixin

    if isinstance(compiled, SklearnLinearClassifierMixin):
        return "linear"
    if isinstance(compiled, BaseTreeClassifierMixin):
        return "tree"
    if isinstance(compiled, QuantizedModule) and len(compiled.input_quantizers) == 1:
        return "neural"
    return type(compiled).__name__


def build_sealed(compiled: Any, calibration_X: np.ndarray, out_dir: Path,
                 batch_size: int = DEFAULT_BATCH_SIZE, n_groups: int = DEFAULT_GROUPS,
                 ) -> dict[str, Any]:
    """Compile and save the sealed circuit of a fitted, compiled model into ``out_dir``.

    Returns the manifest's ``sealed`` entry: the layout and circuit figures, or ``refused``
    with the reason (Concrete's message when Concrete refuses) and no files."""
    try:
        return _build(compiled, np.asarray(calibration_X), Path(out_dir), int(batch_size),
                      int(n_groups))
    except AuditError as exc:
        return {"refused": str(exc)}
    except Exception as exc:  # Concrete raises plain RuntimeErrors/ValueErrors on refusal
        return {"refused": f"Concrete refused the sealed circuit: {exc}"}


@dataclass(frozen=True)
class Prepared:
    """What every sealed circuit of a model is traced from: its family's decision, the layout,
    the quantized calibration samples and the error rate to compile at."""

    family: str
    decision: Decision
    layout: SealedLayout
    q_cal: np.ndarray
    p_error: float


def prepare(compiled: Any, X: np.ndarray, batch_size: int, n_groups: int) -> Prepared:
    """The model's decision, refused unless it is the per-sample path's on every calibration
    sample (and the linear corners)."""
    if not (1 <= batch_size <= MAX_BATCH_SIZE and 1 <= n_groups <= MAX_GROUPS):
        raise AuditError(f"batch size must be 1-{MAX_BATCH_SIZE} and groups 1-{MAX_GROUPS}")
    family = _family(compiled)
    if family not in DECISIONS:
        raise AuditError(f"sealed audits support built-in linear and tree classifiers and "
                         f"single-input torch modules; {family} is not one of them")
    if len(getattr(compiled, "classes_", [0, 1])) != 2:
        raise AuditError("sealed audits support binary classifiers only")
    n_features = int(np.prod(X.shape[1:]))
    params = _quantizer_params(compiled, n_features)
    q_cal = quantize(X, params)
    if not np.array_equal(q_cal, np.asarray(compiled.quantize_input(X)).reshape(len(X), -1)):
        raise AuditError("the input quantizer could not be reproduced exactly")
    input_shape = tuple(int(d) for d in X.shape[1:])
    decision = DECISIONS[family](compiled, q_cal, params, input_shape)
    layout = SealedLayout.make(batch_size, n_groups, list(X.shape[1:]), params)
    # A package's circuit may be compiled with a loose error rate (1e-3 for the zoo's XGBoost,
    # 0.05 for its MLP): the sealed module is held to its own (see SEALED_P_ERROR).
    p_error = NEURAL_P_ERROR if family == "neural" else SEALED_P_ERROR
    # The decision must be the per-sample path's on every calibration sample.
    q_check = np.concatenate([q_cal, decision.corners])
    expected = _classes_of(compiled, _forward(compiled, q_check, input_shape))
    ones = np.ones(len(q_check), dtype=np.int64)
    predicted = decision.split(np.asarray(decision.index(q_check, ones)))[0]
    if not np.array_equal(predicted, expected):
        raise AuditError("the sealed decision differs from the model's prediction on "
                         f"{int(np.sum(predicted != expected))} calibration samples")
    return Prepared(family, decision, layout, q_cal, p_error)


def count_inputset(prep: Prepared) -> list[tuple[np.ndarray, np.ndarray]]:
    """Batches of (quantized samples, codes): random ones, the lowest and highest scores, the
    linear corners, and every code's extremes, so the bit widths cover what any input gives."""
    decision, layout, q_cal = prep.decision, prep.layout, prep.q_cal
    batch_size = layout.batch_size
    rng = np.random.default_rng(0)
    order = np.argsort(decision.score)

    def batch(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = np.resize(rows, batch_size)
        return q_cal[rows], rng.integers(0, 1 + layout.n_counters, batch_size)

    inputset = [batch(rng.choice(len(q_cal), batch_size)) for _ in range(24)]
    inputset += [batch(order[:batch_size]), batch(order[-batch_size:])]
    inputset += [(np.resize(corner, (batch_size, len(corner))), code)
                 for corner in decision.corners for _, code in inputset[-2:]]
    inputset += [(q, np.full(batch_size, c)) for q, _ in inputset[-2:]
                 for c in (0, layout.n_counters)]
    return inputset


def configuration(**options: Any) -> Any:
    """Compressed inputs and evaluation keys, as Concrete ML compiles its own circuits (without,
    a batch of 16 was 9 MB and the XGBoost sealed keys 724 MB)."""
    from concrete import fhe

    return fhe.Configuration(compress_input_ciphertexts=True, compress_evaluation_keys=True,
                             **options)


def module_inputsets(prep: Prepared) -> dict[str, list[Any]]:
    """Each function's inputset: ``count``'s batches, and for ``add`` and ``noise`` totals over
    the whole range a run can reach (every cell up to MAX_CELL, noise up to NOISE_RANGE - 1)."""
    rng = np.random.default_rng(0)
    k = prep.layout.n_counters
    top = np.full(k, MAX_CELL)
    totals = [rng.integers(0, MAX_CELL + 1, k) for _ in range(16)] + [top, top * 0]
    return {
        COUNT: count_inputset(prep),
        ADD: [(a, b) for a, b in zip(totals, totals[::-1], strict=True)],
        NOISE: [(t, rng.integers(0, NOISE_RANGE, k)) for t in totals]
        + [(top, np.full(k, NOISE_RANGE - 1)), (top * 0, top * 0)],
    }


def compile_module(prep: Prepared, simulate: bool = False) -> Any:
    """The count + add + noise module of a prepared model (see the module docstring)."""
    from concrete import fhe

    decision, layout, width = prep.decision, prep.layout, prep.layout.total_bits

    def counter(c: int) -> Callable[[np.ndarray], np.ndarray]:
        def hit(x: np.ndarray) -> np.ndarray:
            prediction, code = decision.split(x)
            return ((prediction == 1) & (code == c + 1)).astype(np.int64)

        return hit

    hits = [counter(c) for c in range(layout.n_counters)]

    @fhe.module()
    class Sealed:
        @fhe.function({"q": "encrypted", "code": "encrypted"})
        def count(q: Any, code: Any) -> Any:
            x = decision.index(q, code)
            return fhe.hint(fhe.array([np.sum(fhe.univariate(h)(x)) for h in hits]),
                            bit_width=width)

        @fhe.function({"a": "encrypted", "b": "encrypted"})
        def add(a: Any, b: Any) -> Any:
            return fhe.refresh(fhe.hint(a + b, bit_width=width))

        @fhe.function({"a": "encrypted", "n": "clear"})
        def noise(a: Any, n: Any) -> Any:
            return fhe.hint(a + n, bit_width=width)

        # The wiring is the boundary's registry: what every compile of the package will use.
        composition = fhe.Wired(_wires({COUNT: count, ADD: add, NOISE: noise}))

    # As Concrete ML does: a per-lookup error rate, no global one (the default global rate of
    # 1e-5 over a thousand lookups picked bootstrap keys ten times larger).
    return Sealed.compile(module_inputsets(prep), configuration(fhe_simulation=simulate),
                          p_error=prep.p_error, global_p_error=None)


def _wires(functions: dict[str, Any]) -> set[Any]:
    from concrete import fhe

    from ..untrusted.composition import SEALED_TOTAL

    return {fhe.Wire(fhe.Output(functions[a], i), fhe.Input(functions[b], j))
            for a, i, b, j in SEALED_TOTAL.wires}


def module_figures(module: Any, batch_size: int) -> dict[str, Any]:
    """PBS per function and per sample (one count per batch and one add per batch after the
    first), and key sizes, from Concrete's statistics."""
    pbs = {name: int(getattr(module, name).statistics.get("programmable_bootstrap_count", 0))
           for name in (COUNT, ADD, NOISE)}
    stats = module.statistics
    return {
        "pbs": pbs,
        "pbs_per_sample": (pbs[COUNT] + pbs[ADD]) / batch_size,
        "size_of_bootstrap_keys": int(stats.get("size_of_bootstrap_keys", 0)),
        "size_of_keyswitch_keys": int(stats.get("size_of_keyswitch_keys", 0)),
    }


def _build(compiled: Any, X: np.ndarray, out_dir: Path, batch_size: int, n_groups: int,
           ) -> dict[str, Any]:
    prep = prepare(compiled, X, batch_size, n_groups)
    module = compile_module(prep)
    out_dir.mkdir(parents=True, exist_ok=True)
    versions = json.dumps(installed_versions(), sort_keys=True).encode()
    with tempfile.TemporaryDirectory() as tmp:
        module.server.save(Path(tmp) / "server.zip", via_mlir=True)
        with zipfile.ZipFile(Path(tmp) / "server.zip") as saved:
            # Not composition_rules.json: the wiring is the verifier's registry, not the owner's.
            members = {n: saved.read(n) for n in ("circuit.mlir", "configuration.json",
                                                  "client.specs.json")}
    _write_zip(out_dir / SEALED_SERVER, {**members, "versions.json": versions})
    _write_zip(out_dir / SEALED_CLIENT, {
        "client.specs.json": members["client.specs.json"],
        LAYOUT: json.dumps(prep.layout.to_dict(), sort_keys=True).encode(),
        "versions.json": versions,
    })
    return {"family": prep.family, **prep.layout.to_dict(),
            **module_figures(module, batch_size), "max_cell": MAX_CELL, "p_error": prep.p_error}


def seal_package(package: ModelPackage, compiled: Any, calibration_X: np.ndarray,
                 replace: bool = False, **options: Any) -> ModelPackage:
    """Add the sealed circuit to an existing package, for an owner who still holds the fitted
    model: its stock circuit must be the package's (same MLIR), the stock zips stay as they are.
    The fingerprint changes, since it covers the sealed circuit too. ``replace`` rebuilds a
    sealed circuit the package has (one made before one total per run)."""
    from ..formats.artifacts import write_model_manifest

    mlir = read_member(package.server_zip, "circuit.mlir").decode("utf-8")
    if compiled.fhe_circuit is None or compiled.fhe_circuit.mlir.strip() != mlir.strip():
        raise MismatchError(f"The model given is not the one packaged as {package.model_id!r} "
                            "(its circuit differs).")
    if has_sealed(package) and not replace:
        raise AuditError(f"Model {package.model_id!r} already has a sealed circuit.")
    for name in SEALED_ZIPS:
        (package.path / name).unlink(missing_ok=True)
    entry = build_sealed(compiled, calibration_X, package.path, **options)
    m = package.manifest
    sealed_package = write_model_manifest(
        package.path, model_id=m.model_id, class_names=m.class_names, output_kind=m.output_kind,
        input_schema=m.input_schema, compile_settings=m.compile_settings, metrics=m.metrics,
        circuit=m.circuit, description=m.description, dataset=m.dataset, license=m.license,
        measured=m.measured, sealed=entry, representations=m.representations)
    return sealed_package


def _write_zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, members[name])


# --------------------------------------------------------------------------------------------
# Server: the same run, on the sealed circuit


@dataclass
class SealedPackage(ModelPackage):
    """A model package seen through its sealed module: the server, the Dask workers and the
    verifier use ``server_zip`` and run its ``count`` on each batch."""

    function: ClassVar[str | None] = COUNT

    @property
    def client_zip(self) -> Path:
        return self.path / SEALED_CLIENT

    @property
    def server_zip(self) -> Path:
        return self.path / SEALED_SERVER


def has_sealed(package: ModelPackage) -> bool:
    return SEALED_SERVER in package.manifest.files


def sealed_view(package: ModelPackage) -> SealedPackage:
    if not has_sealed(package):
        reason = package.manifest.sealed.get("refused")
        raise NotFoundError(f"Model {package.model_id!r} has no sealed audit circuit"
                            + (f" ({reason})." if reason else "; its owner did not build one."))
    return SealedPackage(path=package.path, manifest=package.manifest)


# --------------------------------------------------------------------------------------------
# Auditor: keys, encryption of batches, decryption of counts


SEALED_AUDITS = ("accuracy", "fairness")

