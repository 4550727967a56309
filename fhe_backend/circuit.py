"""Turning a validated ``server.zip`` into a Concrete circuit, safely.

Concrete's ``Server.load`` unpacks the zip with ``shutil.unpack_archive`` and decodes
``configuration.json`` with ``jsonpickle``, which can instantiate any importable class. We read
the members ourselves from a zip that passed :func:`check_zip`, refuse any jsonpickle tag that
is not one of Concrete's own configuration enums, pin the security level at 128 bits, and
compile the MLIR with ``Server.create`` only after a sandboxed child has checked it against the
operation allow-list and compiled it once (:func:`fhe_backend.sandbox.vet`).
The same MLIR compiled with ``is_simulated=True`` gives Concrete's simulator of the very circuit
that runs in FHE: that is our ``simulate`` mode and the clear reference.

:class:`FHECircuit` evaluates in the calling process: for the model owner's own measurements
and Dask workers. A server evaluating ciphertexts and keys published by others uses
:class:`fhe_backend.sandbox.IsolatedCircuit`, whose crashes cannot take it down.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .bundle import arguments
from .errors import ArtifactError, CiphertextError

# Configuration fields that are classes in concrete-python 2.10; nothing else may carry a tag.
_ALLOWED_TYPES = {
    "concrete.fhe.compilation.configuration.ParameterSelectionStrategy",
    "concrete.fhe.compilation.configuration.MultiParameterStrategy",
    "concrete.fhe.compilation.configuration.Exactness",
    "concrete.fhe.compilation.configuration.ApproximateRoundingConfig",
    "concrete.fhe.compilation.configuration.SecurityLevel",
    "concrete.fhe.compilation.configuration.ComparisonStrategy",
    "concrete.fhe.compilation.configuration.BitwiseStrategy",
    "concrete.fhe.compilation.configuration.MultivariateStrategy",
    "concrete.fhe.compilation.configuration.MinMaxStrategy",
}
_TAGS_WITH_TYPES = {"py/type", "py/object"}
_HARMLESS_TAGS = {"py/reduce", "py/tuple", "py/id"}
# Options that would make loading write files or print internals; never taken from a zip.
_FORCED = {
    "use_insecure_key_cache": False,
    "insecure_key_cache_location": None,
    "dump_artifacts_on_unexpected_failures": False,
    "verbose": False,
    "show_mlir": False,
    "show_graph": None,
    "show_progress": False,
    "show_statistics": None,
    "show_optimizer": None,
    "compiler_debug_mode": False,
    "compiler_verbose_mode": False,
    "additional_pre_processors": [],
    "additional_post_processors": [],
}


def _check_tags(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key.startswith("py/"):
                if key in _TAGS_WITH_TYPES:
                    if value not in _ALLOWED_TYPES:
                        raise ArtifactError(
                            f"server.zip configuration names a disallowed type {value!r}."
                        )
                elif key not in _HARMLESS_TAGS:
                    raise ArtifactError(f"server.zip configuration uses a disallowed tag {key!r}.")
            _check_tags(value)
    elif isinstance(node, list):
        for item in node:
            _check_tags(item)


def load_configuration(raw: bytes) -> Any:
    """Decode a Concrete configuration.json without letting it name arbitrary classes."""
    import jsonpickle
    from concrete import fhe
    from concrete.fhe.compilation.configuration import SecurityLevel

    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ArtifactError("server.zip configuration.json is not an object.")
        _check_tags(data)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, ValueError) as exc:
        raise ArtifactError("server.zip has an unreadable configuration.json.") from exc
    known = set(fhe.Configuration().__dict__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ArtifactError(f"server.zip configuration has unknown options: {', '.join(unknown)}.")
    try:
        options = jsonpickle.loads(raw.decode("utf-8"))
    except (TypeError, ValueError, AttributeError, LookupError) as exc:
        # An allowed type with arguments it refuses (py/reduce of an enum with an unknown value).
        raise ArtifactError(f"server.zip configuration cannot be decoded ({exc}).") from exc
    options.update(_FORCED)
    # The owner chooses correctness (p_error), never security: keys and encryption parameters
    # are always those of 128-bit security, whatever the configuration says.
    options["security_level"] = SecurityLevel.SECURITY_128_BITS
    options["enable_unsafe_features"] = False
    try:
        return fhe.Configuration().fork(**options)
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"server.zip configuration is invalid ({exc}).") from exc


def compile_server(server_zip: Path, simulate: bool = False) -> Any:
    """Compile the MLIR of a server.zip into a ``concrete.fhe.Server`` (cached per circuit)."""
    from .sandbox import read_circuit

    # Read once: the bytes the child vets are the bytes compiled here. Reading the file again
    # after vetting would compile whatever replaced it in between.
    return _compile(*read_circuit(Path(server_zip)), simulate)


@lru_cache(maxsize=8)
def _compile(mlir: bytes, raw_configuration: bytes, simulate: bool) -> Any:
    from concrete import fhe

    from .sandbox import vet_circuit, vet_simulation

    # The allow-list and a first compile of the same pipeline, in a child: refused before we
    # compile.
    (vet_simulation if simulate else vet_circuit)(mlir, raw_configuration)
    configuration = load_configuration(raw_configuration)
    try:
        return fhe.Server.create(mlir.decode("utf-8"), configuration, is_simulated=simulate)
    except Exception as exc:  # the MLIR compiler raises plain RuntimeError on bad input
        raise ArtifactError(f"server.zip's circuit does not compile ({exc}).") from exc


class FHECircuit:
    """One compiled model circuit, evaluated sample by sample on serialized ciphertexts."""

    def __init__(self, server_zip: Path):
        self.server = compile_server(server_zip)

    def run(self, ciphertext: bytes, evaluation_keys: Any) -> bytes:
        """Evaluate one serialized input ciphertext; returns the serialized output."""
        return evaluate(self.server, ciphertext, evaluation_keys)


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
