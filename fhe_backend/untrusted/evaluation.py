"""One serialized ciphertext through a compiled Concrete server, with one-sentence errors.

Shared by :class:`fhe_backend.untrusted.circuit.FHECircuit` (this process, Dask workers) and the
sandbox's evaluation child, so transcripts say the same thing whichever executor ran a sample.
"""

from __future__ import annotations

from typing import Any

from ..errors import CiphertextError
from ..formats.bundle import arguments


def evaluate(server: Any, ciphertext: bytes, evaluation_keys: Any) -> bytes:
    """One serialized ciphertext through a compiled server; the same sentences wherever it runs
    (this process, a Dask worker, the sandbox), so transcripts agree across executors."""
    from concrete import fhe

    try:
        # A sealed audit batch carries several arguments in one bundle (see bundle.py).
        values = [fhe.Value.deserialize(blob) for blob in arguments(ciphertext)]
    except Exception as exc:
        raise CiphertextError(f"the ciphertext cannot be deserialized ({_first_line(exc)}).") \
            from exc
    expected = len(server.client_specs.program_info.input_signs())
    if len(values) != expected:
        raise CiphertextError(f"the circuit takes {expected} encrypted argument(s), the "
                              f"ciphertext holds {len(values)}.")
    try:
        result = server.run(*values, evaluation_keys=evaluation_keys)
    except Exception as exc:
        raise CiphertextError(f"the circuit rejected the ciphertext ({_first_line(exc)}).") \
            from exc
    if isinstance(result, tuple):
        raise CiphertextError("the circuit has several outputs; packages must have one.")
    return result.serialize()


def _first_line(exc: Exception) -> str:
    """Concrete's messages can run to many lines with stack addresses: keep the first."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
