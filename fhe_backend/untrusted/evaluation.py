"""One serialized ciphertext through a compiled Concrete server, with one-sentence errors.

Shared by :class:`fhe_backend.untrusted.circuit.FHECircuit` (this process, Dask workers) and the
sandbox's evaluation child, so transcripts say the same thing whichever executor ran a sample.
A circuit that is the sealed total's module (:mod:`fhe_backend.untrusted.composition`) runs the
function a call names, and ``noise`` takes its clear argument as a list of integers checked
against the type the allow-list accepted.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from ..errors import CiphertextError
from ..formats.bundle import arguments
from .mlir_policy import CircuitShape, check_mlir


def evaluate(server: Any, ciphertext: bytes, evaluation_keys: Any, function: str | None = None,
             clear: Sequence[int] | None = None) -> bytes:
    """One serialized ciphertext (a bundle of the function's encrypted arguments, in order)
    through ``function`` of a compiled server (None: its only function), with ``clear`` the
    function's clear argument if it takes one; the same sentences wherever it runs (this
    process, a Dask worker, the sandbox), so transcripts agree across executors."""
    from concrete import fhe

    function = _function(server, function)
    gates = server.program_info.get_circuit(function).get_inputs()
    encrypted = sum(not gate.get_type_info().is_plaintext() for gate in gates)
    if (clear is None) != (encrypted == len(gates)):
        raise CiphertextError(f"the function {function!r} takes "
                              f"{'a' if encrypted < len(gates) else 'no'} clear argument, the "
                              f"call gives {'none' if clear is None else 'one'}.")
    try:
        # A sealed audit batch carries several arguments in one bundle (see bundle.py).
        values = [fhe.Value.deserialize(blob) for blob in arguments(ciphertext)]
    except Exception as exc:
        raise CiphertextError(f"the ciphertext cannot be deserialized ({_first_line(exc)}).") \
            from exc
    if len(values) != encrypted:
        raise CiphertextError(f"the circuit takes {encrypted} encrypted argument(s), the "
                              f"ciphertext holds {len(values)}.")
    if clear is not None:
        position, value = _clear_value(server, function, clear)
        values.insert(position, value)
    try:
        result = server.run(*values, evaluation_keys=evaluation_keys, function_name=function)
    except Exception as exc:
        raise CiphertextError(f"the circuit rejected the ciphertext ({_first_line(exc)}).") \
            from exc
    if isinstance(result, tuple):
        raise CiphertextError("the circuit has several outputs; packages must have one.")
    return result.serialize()


def _function(server: Any, function: str | None) -> str:
    names = sorted(circuit.get_name() for circuit in server.program_info.get_circuits())
    if function is None:
        if len(names) != 1:
            raise CiphertextError(f"the circuit is a module of the functions "
                                  f"{', '.join(names)}; a call must name one.")
        return names[0]
    if function not in names:
        raise CiphertextError(f"the circuit has no function {str(function)[:40]!r} (it has "
                              f"{', '.join(names)}).")
    return function


def _clear_value(server: Any, function: str, clear: Any) -> tuple[int, Any]:
    """The clear argument as Concrete takes it, after its length and range are checked against
    the ``tensor<Kx iN>`` the allow-list accepted (Concrete itself would wrap any int64)."""
    import numpy as np
    from concrete import fhe
    from concrete.compiler import ClientProgram
    from concrete.compiler import Value as CompilerValue

    # The text Server.create compiled: the vetted circuit's own.
    spec = _shape(server._mlir).get(function).clear
    assert spec is not None  # the specs' plaintext input is the one the allow-list accepted
    low, high = spec.bounds
    size = int(np.prod(spec.shape))
    values = np.asarray(clear)  # integers beyond int64 make an object array: refused
    if values.dtype.kind not in "iu" or values.shape != (size,) or not (
            low <= values.min() and values.max() <= high):
        raise CiphertextError(f"the clear argument of {function!r} must be {size} integers "
                              f"from {low} to {high}.")
    client = ClientProgram.create_simulated(server.client_specs.program_info)
    prepared = client.get_client_circuit(function).simulate_prepare_input(
        CompilerValue(values.astype(np.int64).reshape(spec.shape)), spec.position)
    return spec.position, fhe.Value(prepared)


@lru_cache(maxsize=8)
def _shape(mlir: str) -> CircuitShape:
    return check_mlir(mlir)


def _first_line(exc: Exception) -> str:
    """Concrete's messages can run to many lines with stack addresses: keep the first."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
