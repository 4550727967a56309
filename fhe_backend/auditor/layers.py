"""The auditor of a published hidden layer: keys, encryption and decryption for the circuit
that returns one layer's quantized activations (:mod:`fhe_backend.formats.layers`).

It is the per-sample :class:`~fhe_backend.auditor.client.Auditor` on the package's view through
that layer's circuit, with three differences: its own keyset (the layer's circuit has its own
parameters), in ``KEYS/<fingerprint[:16]>-representation-<layer>/``; benchmarks named for that
circuit, so that a run of one circuit is never decrypted as the other's; and outputs decrypted
to the layer's dequantized activations, shape (1, width), instead of class scores. Its specs,
like the model's, are derived from the layer's circuit in the sandbox, never read from the
owner's zip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..formats.artifacts import ModelPackage
from ..formats.layers import circuit_name, representation_view
from .client import Auditor


class LayerAuditor(Auditor):
    """Keys, encryption and activations for the circuit of ``layer`` of ``package``; its
    ``decrypt`` gives a :class:`~fhe_backend.auditor.client.Decrypted` whose ``scores`` are the
    activations (one row per sample, the layer's width)."""

    def __init__(self, package: ModelPackage, keys_dir: Path, layer: str):
        super().__init__(representation_view(package, layer), keys_dir,
                         key_name=f"{package.fingerprint[:16]}-representation-{layer}")
        self.circuit = circuit_name(layer)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """The layer's activations, flat, of the circuit's integer outputs (keyless)."""
        values = np.asarray(self.processing.dequantize(q), dtype=np.float64)
        return values.reshape(len(values), -1)
