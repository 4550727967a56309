"""The chain that turns a sealed run's batch outputs into its one total.

The server runs it after the batches (:mod:`fhe_backend.server.run`), and the verifier and the
challenge's spot check run it again on their own re-executed batches: ``add`` along the batches
in the benchmark's order, then ``noise`` when the server adds some. Every step runs in the
sandboxed evaluation child of the package's sealed module (its ciphertexts and keys come from
others).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import AuditError
from ..formats.bundle import pack_values
from ..formats.hashing import sha256_bytes
from .circuit import ADD, COUNT, NOISE


@dataclass(frozen=True)
class Total:
    blob: bytes  # the serialized total, as published
    function: str  # the module function that made it (its output encoding)
    chain_sha256: list[str]  # the hash of each step's output, in order
    n_batches: int

    def record(self, dp: dict[str, Any] | None) -> dict[str, Any]:
        """The transcript's ``total`` entry (the noise mechanism, never the noise)."""
        return {"function": self.function, "chain_sha256": self.chain_sha256,
                "output_sha256": sha256_bytes(self.blob), "n_batches": self.n_batches, "dp": dp}


def add_up(circuit: Any, outputs: Iterable[bytes], noise: list[int] | None = None) -> Total:
    """``add(...add(add(b1, b2), b3)..., bK)`` then ``noise(total, noise)``; one batch is its
    own total. ``circuit``: an :class:`~fhe_backend.untrusted.sandbox.IsolatedCircuit` of the
    sealed module."""
    total, function, chain, n = b"", COUNT, [], 0
    for output in outputs:
        n += 1
        if n == 1:
            total = output
            continue
        total, function = circuit.run(pack_values([total, output]), function=ADD), ADD
        chain.append(sha256_bytes(total))
    if n == 0:
        raise AuditError("Every batch of the sealed run failed; there is no total to publish.")
    if noise is not None:
        total, function = circuit.run(pack_values([total]), function=NOISE, clear=noise), NOISE
        chain.append(sha256_bytes(total))
    return Total(total, function, chain, n)
