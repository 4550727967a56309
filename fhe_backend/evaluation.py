"""One serialized ciphertext through a compiled Concrete server, with one-sentence errors.

Shared by :class:`fhe_backend.circuit.FHECircuit` (this process, Dask workers) and the sandbox's
evaluation child, so transcripts say the same thing whichever executor ran a sample.
"""

from __future__ import annotations

from typing import Any

from .errors import CiphertextError


def evaluate(server: Any, ciphertext: bytes, evaluation_keys: Any) -> bytes:
    """One serialized ciphertext through a compiled server; the same sentences wherever it runs
    (this process, a Dask worker, the sandbox), so transcripts agree across executors."""
    from concrete import fhe

    try:
        value = fhe.Value.deserialize(ciphertext)
    except Exception as exc:
        raise CiphertextError(f"the ciphertext cannot be deserialized ({_first_line(exc)}).") \
            from exc
    try:
        result = server.run(value, evaluation_keys=evaluation_keys)
    except Exception as exc:
        raise CiphertextError(f"the circuit rejected the ciphertext ({_first_line(exc)}).") \
            from exc
    if isinstance(result, tuple):
        raise CiphertextError("the circuit has several outputs; packages must have one.")
    return result.serialize()


def _first_line(exc: Exception) -> str:
    """Concrete's messages can run to many lines with stack addresses: keep the first."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
