"""Turning a validated ``server.zip`` into a Concrete circuit, safely.

Concrete's ``Server.load`` unpacks the zip with ``shutil.unpack_archive`` and decodes
``configuration.json`` with ``jsonpickle``, which can instantiate any importable class. We read
the members ourselves from a zip that passed :func:`check_zip`, refuse any jsonpickle tag that
is not one of Concrete's own configuration enums, pin the security level at 128 bits, and
compile the MLIR with ``Server.create`` only after a sandboxed child has checked it against the
operation allow-list and compiled it once (:func:`fhe_backend.untrusted.sandbox.vet`).
The same MLIR compiled with ``is_simulated=True`` gives Concrete's simulator of the very circuit
that runs in FHE: that is our ``simulate`` mode and the clear reference. The sealed total's
module compiles with the composition rules of our registry (``composition.py``), never the zip's.

:class:`FHECircuit` evaluates in the calling process: for the model owner's own measurements
and Dask workers. A server evaluating ciphertexts and keys published by others uses
:class:`fhe_backend.untrusted.sandbox.IsolatedCircuit`, whose crashes cannot take it down.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactError
from .composition import concrete_rules
from .configuration import load_configuration
from .evaluation import evaluate


def compile_server(server_zip: Path, simulate: bool = False) -> Any:
    """Compile the MLIR of a server.zip into a ``concrete.fhe.Server`` (cached per circuit)."""
    from .sandbox import check_declared_composition, read_circuit, vet_circuit

    # Read once: the bytes the child vets are the bytes compiled here. Reading the file again
    # after vetting would compile whatever replaced it in between.
    mlir, raw_configuration = read_circuit(Path(server_zip))
    check_declared_composition(Path(server_zip), vet_circuit(mlir, raw_configuration).functions)
    return _compile(mlir, raw_configuration, simulate)


@lru_cache(maxsize=8)
def _compile(mlir: bytes, raw_configuration: bytes, simulate: bool) -> Any:
    from concrete import fhe

    from .sandbox import vet_circuit, vet_simulation

    # The allow-list and a first compile of the same pipeline, in a child: refused before we
    # compile. A module compiles with the registry's composition rules, as in the child.
    vetted = (vet_simulation if simulate else vet_circuit)(mlir, raw_configuration)
    configuration = load_configuration(raw_configuration)
    try:
        return fhe.Server.create(mlir.decode("utf-8"), configuration, is_simulated=simulate,
                                 composition_rules=concrete_rules(vetted.functions))
    except Exception as exc:  # the MLIR compiler raises plain RuntimeError on bad input
        raise ArtifactError(f"server.zip's circuit does not compile ({exc}).") from exc


class FHECircuit:
    """One compiled model circuit, evaluated sample by sample on serialized ciphertexts."""

    def __init__(self, server_zip: Path):
        self.server = compile_server(server_zip)

    def run(self, ciphertext: bytes, evaluation_keys: Any, function: str | None = None,
            clear: Sequence[int] | None = None) -> bytes:
        """Evaluate one serialized input ciphertext (through ``function`` of a module, with its
        ``clear`` argument if it takes one); returns the serialized output."""
        return evaluate(self.server, ciphertext, evaluation_keys, function, clear)


def load_evaluation_keys(raw: bytes, server_zip: Path) -> Any:
    """Evaluation keys checked against the circuit's keyset, then handed to Concrete."""
    from concrete import fhe

    from .keyset import check_evaluation_keys
    from .sandbox import vet

    check_evaluation_keys(raw, vet(server_zip).client_specs)
    try:
        return fhe.EvaluationKeys.deserialize(raw)
    except Exception as exc:
        raise ArtifactError(f"the evaluation keys cannot be deserialized ({exc}).") from exc


class SimulatedCircuit:
    """Concrete's simulator of the same MLIR: clear integers in, clear integers out."""

    def __init__(self, server_zip: Path):
        from concrete import fhe

        self.server = compile_server(server_zip, simulate=True)
        self.client = fhe.Client(self.server.client_specs, is_simulated=True)

    def run(self, quantized: np.ndarray) -> np.ndarray:
        try:
            value = self.client.simulate_encrypt(quantized)
        except ValueError as exc:  # Concrete checks the integers against the circuit's input
            raise ArtifactError(f"A quantized sample does not fit the circuit's input "
                                f"({exc}).") from exc
        return np.asarray(self.client.simulate_decrypt(self.server.run(value)))
