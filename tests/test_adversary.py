"""Attacks on issue 11's defences, as a publisher of a package or an encrypted benchmark.

Each test is a defect found by attacking the allow-list, the sandbox, the key checks and the
configuration filter: it failed before its fix. The payloads are made the way a publisher can
(members edited, hashes made consistent: :mod:`hostile`).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hostile import edit_member, resign_package

from fhe_backend.errors import ArtifactError, AuditError
from fhe_backend.hub.references import resolve_model
from fhe_backend.untrusted import circuit, sandbox
from fhe_backend.untrusted.configuration import load_configuration
from fhe_backend.untrusted.keyset import check_evaluation_keys
from fhe_backend.untrusted.mlir_policy import check_mlir

REPO = Path(__file__).resolve().parent.parent
SECURITY_LEVEL = "concrete.fhe.compilation.configuration.SecurityLevel"


def zero_sized_key_list(field: int, count: int) -> bytes:
    """A 48-byte ServerKeyset whose list ``field`` holds ``count`` zero-sized structs: capnp
    charges nothing on the wire for them, so ``count`` can be 2**30 - 1."""
    words = [0] * 6
    words[0] = 3 << 48  # root: a struct of no data words and three pointers, right after
    words[1 + field] = 1 | ((4 - (2 + field)) << 2) | (7 << 32)  # composite list, 0 words
    words[4] = count << 2  # its tag: count elements of no data and no pointers
    return struct.pack("<II", 0, len(words)) + struct.pack(f"<{len(words)}Q", *words)


@pytest.mark.parametrize("field", [0, 1, 2])
def test_amplified_key_lists_are_refused_without_walking_them(field):
    """40 bytes used to make the server walk 2**30 keys in Python (~88 s per million here)."""
    specs = sandbox.vet(resolve_model("breast-cancer-logreg").server_zip).client_specs
    start = time.perf_counter()
    with pytest.raises(ArtifactError) as refused:
        check_evaluation_keys(zero_sized_key_list(field, 2**30 - 1), specs)
    assert time.perf_counter() - start < 10
    assert "\n" not in str(refused.value)


def hostile_configuration(tmp_path: Path, **changes: object) -> Path:
    package = Path(shutil.copytree(resolve_model("breast-cancer-logreg").path, tmp_path / "pkg"))
    server_zip = package / "server.zip"
    configuration = json.loads(zipfile.ZipFile(server_zip).read("configuration.json"))
    configuration.update(changes)
    edit_member(server_zip, "configuration.json", json.dumps(configuration).encode("utf-8"))
    resign_package(package)
    return package


UNDECODABLE = {
    "an enum with an unknown value": {"py/reduce": [{"py/type": SECURITY_LEVEL},
                                                    {"py/tuple": ["nope"]}]},
    "an enum without arguments": {"py/reduce": [{"py/type": SECURITY_LEVEL}]},
}


@pytest.mark.parametrize("value", list(UNDECODABLE))
def test_configuration_jsonpickle_cannot_decode_is_refused_in_one_sentence(value):
    raw = json.dumps({"security_level": UNDECODABLE[value]}).encode("utf-8")
    with pytest.raises(ArtifactError, match="configuration cannot be decoded") as refused:
        load_configuration(raw)
    assert "\n" not in str(refused.value)


def test_cli_keygen_refuses_an_undecodable_configuration(tmp_path):
    package = hostile_configuration(
        tmp_path, parameter_selection_strategy=UNDECODABLE["an enum with an unknown value"])
    result = subprocess.run(
        [sys.executable, "-m", "fhe_backend", "keygen", "--model", str(package),
         "--keys", str(tmp_path / "keys")],
        capture_output=True, text=True, cwd=REPO, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    (last,) = result.stderr.strip().splitlines()[-1:]
    assert last.startswith("error: ") and "configuration" in last, last


def test_the_bytes_vetted_are_the_bytes_compiled_in_process(tmp_path, monkeypatch):
    """A server.zip replaced after the sandbox vetted it must not be compiled unvetted."""
    from concrete import fhe

    package = Path(shutil.copytree(resolve_model("breast-cancer-logreg").path, tmp_path / "pkg"))
    server_zip = package / "server.zip"
    vetted_mlir = zipfile.ZipFile(server_zip).read("circuit.mlir").decode("utf-8")
    swapped = vetted_mlir.replace("module {", "module {\n  llvm.func @system(!llvm.ptr) -> i32")
    vet_circuit = sandbox.vet_circuit

    def vet_then_swap(mlir: bytes, configuration: bytes) -> sandbox.Vetted:
        vetted = vet_circuit(mlir, configuration)
        edit_member(server_zip, "circuit.mlir", swapped.encode("utf-8"))  # the race, won
        return vetted

    compiled: list[str] = []
    monkeypatch.setattr(sandbox, "vet_circuit", vet_then_swap)
    monkeypatch.setattr(fhe.Server, "create",
                        staticmethod(lambda text, *args, **kw: compiled.append(text)))
    circuit._compile.cache_clear()
    try:
        circuit.compile_server(server_zip, simulate=True)
    finally:
        circuit._compile.cache_clear()
    assert compiled == [vetted_mlir]


def test_the_simulator_is_compiled_in_a_child_before_in_process(monkeypatch):
    """The simulator's lowering is not the FHE one the vetting child compiled: a circuit that
    only crashes it would otherwise crash the Space's simulated audits in process."""
    from concrete import fhe

    events: list[str] = []
    call, create = sandbox._Child.call, fhe.Server.create

    def recorded_call(self, header, *args, **kwargs):
        events.append(f"child:{header['op']}")
        return call(self, header, *args, **kwargs)

    def recorded_create(text, configuration, is_simulated=False, **options):
        events.append(f"in-process:{'simulate' if is_simulated else 'fhe'}")
        return create(text, configuration, is_simulated=is_simulated, **options)

    monkeypatch.setattr(sandbox._Child, "call", recorded_call)
    monkeypatch.setattr(fhe.Server, "create", staticmethod(recorded_create))
    circuit._compile.cache_clear()
    sandbox.vet_simulation.cache_clear()
    try:
        circuit.compile_server(resolve_model("breast-cancer-logreg").server_zip, simulate=True)
    finally:
        circuit._compile.cache_clear()
    assert "in-process:simulate" in events
    assert "child:simulate" in events[:events.index("in-process:simulate")]


HUGE_SPLAT = """module {
  func.func @main(%arg0: tensor<1x30x!FHE.esint<19>>) -> tensor<1x1x!FHE.esint<19>> {
    %c = arith.constant dense<1> : tensor<30x50000000xi20>
    %0 = "FHELinalg.matmul_eint_int"(%arg0, %c) : (tensor<1x30x!FHE.esint<19>>,
      tensor<30x50000000xi20>) -> tensor<1x50000000x!FHE.esint<19>>
    %1 = tensor.extract_slice %0[0, 0] [1, 1] [1, 1] : tensor<1x50000000x!FHE.esint<19>>
      to tensor<1x1x!FHE.esint<19>>
    return %1 : tensor<1x1x!FHE.esint<19>>
  }
}
"""


def test_a_huge_tensor_is_refused_before_compilation():
    """Every op is allowed, but a 40-byte splat constant makes 1.5e9 elements: the compiler ran
    past 5 minutes and 700 MB here before it was stopped, in the child, then in the parent."""
    with pytest.raises(ArtifactError, match=r"refused before compilation.*elements") as refused:
        check_mlir(HUGE_SPLAT)
    assert "\n" not in str(refused.value)


def test_a_quantizer_that_overflows_int64_is_one_sentence(tmp_path):
    """A scale of 1e-300 without clipping sends every sample to +-inf; numpy then casts it to
    an arbitrary integer (with a warning), and the simulator raised a bare ValueError."""
    from fhe_backend.formats.artifacts import ModelPackage
    from fhe_backend.untrusted.processing import processing_of

    package = Path(shutil.copytree(resolve_model("breast-cancer-logreg").path, tmp_path / "pkg"))
    client_zip = package / "client.zip"
    processing = json.loads(zipfile.ZipFile(client_zip).read("serialized_processing.json"))
    processing["input_quantizers"][0]["serialized_value"].update(
        scale={"type_name": "numpy_float", "serialized_value": 1e-300, "dtype": "float64"},
        no_clipping=True)
    edit_member(client_zip, "serialized_processing.json", json.dumps(processing).encode("utf-8"))
    resign_package(package)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "invalid value encountered in cast" on the way
        with pytest.raises(ArtifactError, match="quantizer") as refused:
            processing_of(ModelPackage.load(package)).quantize(np.ones((1, 30)))
    assert "\n" not in str(refused.value)


def test_the_simulator_refuses_integers_outside_the_circuits_input(tmp_path):
    simulated = circuit.SimulatedCircuit(resolve_model("breast-cancer-logreg").server_zip)
    with pytest.raises(ArtifactError, match="does not fit the circuit's input") as refused:
        simulated.run(np.full((1, 30), 2**40, dtype=np.int64))
    assert "\n" not in str(refused.value)


def test_a_package_that_kills_the_vetting_child_is_not_vetted_again(tmp_path, monkeypatch):
    """A circuit that crashes or stalls the compiler (up to the 600 s bound) used to be
    compiled again on every request for it: a hostile package named on the Space's server tab
    could keep a core busy for as long as it was asked for."""
    package = Path(shutil.copytree(resolve_model("breast-cancer-logreg").path, tmp_path / "pkg"))
    server_zip = package / "server.zip"
    mlir = zipfile.ZipFile(server_zip).read("circuit.mlir").decode("utf-8")
    # Different bytes from the zoo's circuit, so no earlier verdict is reused.
    edit_member(server_zip, "circuit.mlir", (mlir + "\n// stalls\n").encode("utf-8"))
    started: list[int] = []
    init = sandbox._Child.__init__

    def counted(self) -> None:
        started.append(1)
        init(self)

    monkeypatch.setattr(sandbox._Child, "__init__", counted)
    monkeypatch.setattr(sandbox, "VET_TIMEOUT_S", 0.01)  # stands in for a stalled compile
    for _ in range(2):
        with pytest.raises(AuditError, match="no answer within") as refused:
            sandbox.vet(server_zip)
        assert "\n" not in str(refused.value)
    assert len(started) == 1


FUNCTION_ATTRIBUTES = {
    "passthrough": 'passthrough = ["naked"]',  # an LLVM function attribute: no prologue
    "linkage": "llvm.linkage = #llvm.linkage<weak>",
    "section": 'section = ".init_array"',  # the function's code read as constructor pointers
}


@pytest.mark.parametrize("attribute", list(FUNCTION_ATTRIBUTES))
def test_lowering_attributes_on_the_function_are_refused(attribute):
    """Every op was allowed, but attributes of the function that lowering may carry into the
    LLVM function passed the allow-list and a compile in the child."""
    mlir = zipfile.ZipFile(resolve_model("breast-cancer-logreg").server_zip).read("circuit.mlir")
    text = mlir.decode("utf-8")
    (line,) = [line for line in text.splitlines() if "func.func" in line]
    hostile = text.replace(line, line.replace(
        " {", f" attributes {{{FUNCTION_ATTRIBUTES[attribute]}}} {{", 1))
    with pytest.raises(ArtifactError, match="refused before compilation") as refused:
        check_mlir(hostile)
    assert "\n" not in str(refused.value)


def test_the_child_sees_no_credential_by_any_common_name(monkeypatch):
    """HF_TOKEN was kept out, but GITHUB_PAT or DB_PASSWD reached the child."""
    for name in ("HF_TOKEN", "GITHUB_PAT", "DB_PASSWD", "HTTP_AUTH", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "credential")
    env = sandbox._child_env()
    assert not any(value == "credential" for value in env.values())
    assert "PATH" in env
