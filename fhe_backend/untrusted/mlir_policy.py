"""The operation allow-list every package circuit passes before anything compiles it.

Concrete's compiler lowers whatever dialects an MLIR text contains, the LLVM dialect included,
into native code that is loaded into the compiling process: an ``llvm.call @system`` in a
``server.zip`` would run in the server. So a circuit is parsed with the MLIR Python bindings that
concrete-python ships and every operation is checked against the list below, which holds only
what Concrete ML's own circuits are made of: the ``FHE`` and ``FHELinalg`` dialects (arithmetic
on encrypted integers, no side effects), ``arith.constant``, pure ``tensor`` reshaping and
slicing, one public ``func.func`` and its ``func.return``. No call, no declaration, no other
symbol, no pointer or memory type. The one exception to "one function" is the sealed total's
module (:mod:`fhe_backend.untrusted.composition`): exactly its functions, each with the
signature its wiring needs, and one clear integer input (``noise``'s) where the registry
names it. :func:`check_mlir` runs in a sandboxed child process
(:mod:`fhe_backend.untrusted.sandbox`): the parser itself reads attacker text.

The list was derived from the circuits of every model family the project supports (the zoo, and
the built-in linear, tree and neural-net families and torch modules compiled in
``tests/test_mlir_policy.py``, which fails when a supported family needs an op not listed here).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ArtifactError
from .composition import SEALED_TOTAL, Module, Port, module_of

if TYPE_CHECKING:
    from mlir import ir

ALLOWED_DIALECTS = frozenset({"FHE", "FHELinalg"})
ALLOWED_OPS = frozenset({
    "builtin.module",
    "func.func",
    "func.return",
    "arith.constant",
    "tensor.from_elements",
    "tensor.expand_shape",
    "tensor.collapse_shape",
    "tensor.extract",
    "tensor.extract_slice",
    "tensor.insert",
    "tensor.insert_slice",
    "tensor.empty",
    "tensor.concat",
})
# Attributes the function may carry. Lowering copies the others into the LLVM function
# (``passthrough``, ``section``, ``llvm.*``), where they change how the native code behaves.
FUNCTION_ATTRIBUTES = frozenset({"sym_name", "function_type", "sym_visibility"})
# Values crossing the circuit's boundary: encrypted integers, or tensors of them.
_BOUNDARY_TYPE = re.compile(r"(tensor<(\d+x)*)?!FHE\.e(s)?(int|bool)(<\d+>)?>?")
MAX_MLIR_BYTES = 64 * 1024 * 1024
# Brackets nest as deep as a constant's rank plus a few levels of structure; a text nested far
# deeper is refused before the parser (a recursive descent) could exhaust its stack.
MAX_NESTING = 64
MAX_OPERATIONS = 1_000_000
# Elements of any one tensor value. A splat constant of a few bytes can declare billions of
# elements, which the compiler materializes (minutes and gigabytes, in the child, then in every
# process that compiles the circuit). The zoo's largest tensor has 1,392 elements; a CNN on
# 3x224x224 images or a 784x512 layer stays far below this bound.
MAX_TENSOR_ELEMENTS = 2**22
# Encrypted values a circuit returns per sample. Each is an LWE ciphertext of 4-16 KB that every
# reader holds; the zoo's classifiers return 1 to 10 (a forest returns one per tree and class).
# A 1x139,810 output (870 MB a sample) would otherwise be found only after minutes of
# compiling; the exact byte bound follows at vetting (untrusted/keyset.py check_sizes).
MAX_OUTPUT_ELEMENTS = 4096
_TENSOR_SHAPE = re.compile(r"tensor<((?:[0-9?]+x)+)")
# A registered module's clear argument (the sealed total's noise): a static tensor of integers,
# which travel as int64.
_CLEAR_TYPE = re.compile(r"tensor<((?:\d+x)+)i(\d+)>")
MAX_CLEAR_BITS = 63


@dataclass(frozen=True)
class ClearInput:
    """A function's clear argument: a tensor of plain integers of ``bits`` bits (MLIR ``iN``)."""

    position: int
    shape: tuple[int, ...]
    bits: int

    @property
    def bounds(self) -> tuple[int, int]:
        """The integers an ``iN`` holds: MLIR integers are signless, so an N-bit pattern read
        as signed or unsigned (added to a counter modulo its width either way)."""
        return -(2 ** (self.bits - 1)), 2 ** self.bits - 1


@dataclass(frozen=True)
class FunctionShape:
    """One public function of an accepted circuit."""

    name: str
    n_inputs: int
    n_outputs: int
    clear: ClearInput | None  # only a registered module's function may take one


@dataclass(frozen=True)
class CircuitShape:
    """What the allow-list learnt of an accepted circuit: one function, or the functions of a
    registered module (:mod:`fhe_backend.untrusted.composition`)."""

    functions: tuple[FunctionShape, ...]
    sealed_module: bool
    op_counts: dict[str, int]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.functions)

    def get(self, name: str) -> FunctionShape | None:
        return next((f for f in self.functions if f.name == name), None)

    @property
    def n_inputs(self) -> int:
        """Inputs of a single-function circuit (a module has no one number)."""
        (only,) = self.functions
        return only.n_inputs

    @property
    def n_outputs(self) -> int:
        (only,) = self.functions
        return only.n_outputs


def _nesting_depth(text: str) -> int:
    depth = deepest = 0
    for char in text:
        if char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}":
            depth -= 1
    return deepest


def _check_size(value_type: object) -> None:
    for dims in _TENSOR_SHAPE.findall(str(value_type)):
        elements = 1
        for dim in dims.rstrip("x").split("x"):
            # A dynamic dimension has no bound: Concrete's circuits are all static.
            elements *= MAX_TENSOR_ELEMENTS + 1 if dim == "?" else int(dim)
        if elements > MAX_TENSOR_ELEMENTS:
            raise _refuse(f"a tensor of {str(value_type)[:80]!r} has more than "
                          f"{MAX_TENSOR_ELEMENTS} elements")


def _refuse(why: str) -> ArtifactError:
    return ArtifactError(f"server.zip's circuit is refused before compilation: {why}.")


def check_mlir(text: str) -> CircuitShape:
    """Parse ``text`` and accept it only if every operation is on the allow-list."""
    from concrete.lang import register_dialects
    from mlir import ir

    if len(text.encode("utf-8")) > MAX_MLIR_BYTES:
        raise _refuse(f"it is larger than {MAX_MLIR_BYTES // 2**20} MiB")
    if _nesting_depth(text) > MAX_NESTING:
        raise _refuse(f"it nests deeper than {MAX_NESTING} levels")
    context = ir.Context()
    register_dialects(context)
    # An op of a dialect this context does not know would parse as an opaque "unregistered"
    # operation if allowed; refuse it at parse time instead.
    context.allow_unregistered_dialects = False
    try:
        module = ir.Module.parse(text, context)
    except Exception as exc:  # the bindings raise MLIRError (or ValueError) on bad text
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else "parse error"
        raise _refuse(f"it is not valid MLIR ({first})") from exc

    counts: dict[str, int] = {}
    functions: list[ir.Operation] = []

    def visit(op: ir.Operation, depth: int) -> None:
        name = op.name
        if sum(counts.values()) >= MAX_OPERATIONS:
            raise _refuse(f"it has more than {MAX_OPERATIONS} operations")
        counts[name] = counts.get(name, 0) + 1
        if name not in ALLOWED_OPS and name.split(".", 1)[0] not in ALLOWED_DIALECTS:
            raise _refuse(f"operation {name!r} is not allowed")
        for attribute in op.attributes:
            # A symbol reference prints as @name, alone or inside an array or dictionary.
            if attribute.name != "sym_name" and "@" in str(attribute.attr):
                raise _refuse(f"operation {name!r} refers to a symbol ({attribute.name})")
            if "llvm" in attribute.name or "llvm" in str(attribute.attr) or (
                    name == "func.func" and attribute.name not in FUNCTION_ATTRIBUTES):
                raise _refuse(f"operation {name!r} carries the attribute "
                              f"{attribute.name[:40]!r}")
        if name == "func.func":
            if depth != 1:
                raise _refuse("a function is nested inside another operation")
            functions.append(op)
        elif name == "builtin.module" and (depth != 0 or len(op.attributes)):
            raise _refuse("a module is nested or carries attributes")
        for result in op.results:
            _check_size(result.type)
        for region in op.regions:
            for block in region.blocks:
                for argument in block.arguments:
                    _check_size(argument.type)
                for child in block.operations:
                    visit(child.operation, depth + 1)

    visit(module.operation, 0)
    top = [child.operation.name for child in module.body.operations]
    if set(top) != {"func.func"} or len(functions) != len(top):
        raise _refuse(f"it must hold functions and nothing else (found {top[:8]})")
    names = [ir.StringAttr(f.attributes["sym_name"]).value for f in functions]
    registered = module_of(names)
    if len(functions) != 1 and registered is None:
        raise _refuse(f"it must hold exactly one function, or the functions "
                      f"{', '.join(sorted(SEALED_TOTAL.functions))} of the sealed total "
                      f"(found {', '.join(sorted(names)[:8])[:200]})")
    shapes, ports = [], {}
    for name, function in zip(names, functions, strict=True):
        shape, signature = _check_function(name, function, registered)
        shapes.append(shape)
        ports.update({(name, "in", i): t for i, t in enumerate(signature.inputs)})
        ports.update({(name, "out", i): t for i, t in enumerate(signature.results)})
    if registered is not None:
        _check_module(registered, ports)
    return CircuitShape(tuple(shapes), registered is not None, counts)


def _check_function(name: str, function: ir.Operation, registered: Module | None,
                    ) -> tuple[FunctionShape, ir.FunctionType]:
    from mlir import ir

    if "sym_visibility" in function.attributes and str(
        function.attributes["sym_visibility"]
    ) != '"public"':
        raise _refuse(f"its function {name[:40]!r} is not public")
    if len(function.regions[0].blocks) == 0:
        raise _refuse(f"its function {name[:40]!r} is only a declaration")
    signature = ir.FunctionType(ir.TypeAttr(function.attributes["function_type"]).value)
    if registered is not None and (len(signature.inputs) != registered.arity[name]
                                   or len(signature.results) != 1):
        raise _refuse(f"its function {name!r} takes {len(signature.inputs)} input(s) and "
                      f"returns {len(signature.results)}, not {registered.arity[name]} and 1")
    position, like = registered.clear.get(name, (None, None)) if registered else (None, None)
    clear = None
    for kind, types in (("input", signature.inputs), ("output", signature.results)):
        for i, value_type in enumerate(types):
            text = str(value_type)
            if kind == "input" and i == position:
                clear = _clear_input(name, i, text, str(signature.inputs[like]))
            elif not _BOUNDARY_TYPE.fullmatch(text):
                raise _refuse(f"an {kind} of its function {name[:40]!r} has the type "
                              f"{text[:80]!r}, not an encrypted integer tensor")
    for value_type in signature.results:  # static shapes: _check_size refused a "?"
        elements = math.prod(_dims(str(value_type)))
        if elements > MAX_OUTPUT_ELEMENTS:
            which, per = ("it", "sample") if registered is None else (f"its {name}", "call")
            raise _refuse(f"{which} returns {elements:,} encrypted values per {per}, over "
                          f"{MAX_OUTPUT_ELEMENTS:,}")
    return FunctionShape(name, len(signature.inputs), len(signature.results), clear), signature


def _dims(value_type: str) -> list[int]:
    return [int(d) for dims in _TENSOR_SHAPE.findall(value_type)
            for d in dims.rstrip("x").split("x")]


def _clear_input(name: str, position: int, text: str, encrypted: str) -> ClearInput:
    """The one clear argument a registered function takes: plain integers, shaped like the
    encrypted value they are added to."""
    match = _CLEAR_TYPE.fullmatch(text)
    if not match or not 1 <= int(match[2]) <= MAX_CLEAR_BITS:
        raise _refuse(f"input {position} of its function {name!r} has the type {text[:80]!r}, "
                      f"not a tensor of integers of at most {MAX_CLEAR_BITS} bits")
    shape = tuple(_dims(text))
    if not _BOUNDARY_TYPE.fullmatch(encrypted) or shape != tuple(_dims(encrypted)):
        raise _refuse(f"input {position} of its function {name!r} has the type {text[:80]!r}, "
                      f"not the shape of the encrypted value {encrypted[:80]!r}")
    return ClearInput(position, shape, int(match[2]))


def _check_module(registered: Module, ports: dict[Port, ir.Type]) -> None:
    """The wiring's two ends, and every port that carries the counters, have one type."""
    types = {str(ports[port]) for port in registered.counters}
    if len(types) != 1:
        raise _refuse(f"the counters of its module do not have one type "
                      f"(found {', '.join(sorted(t[:60] for t in types))})")
