"""Untrusted artifacts never run code, crash the process or weaken the auditor's encryption.

The payloads are those of issue 11, tried as an attacker would on the zoo's packages: edited
circuits, foreign evaluation keys and client specs with other crypto parameters, each published
with consistent hashes. Every one must be refused in one sentence before Concrete sees it, with
no marker file created and this process alive.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hostile import hostile_package, replace_evaluation_keys
from support import FAST_BENCHMARK

from fhe_backend.auditor.client import Auditor
from fhe_backend.errors import ArtifactError, CiphertextError, SandboxCrash
from fhe_backend.formats.artifacts import EncryptedBenchmark, ModelPackage
from fhe_backend.hub.references import resolve_benchmark, resolve_model
from fhe_backend.hub.zoo import model_ids
from fhe_backend.server.run import FHEServer
from fhe_backend.untrusted.keyset import read_evaluation_keys
from fhe_backend.untrusted.mlir_policy import MAX_MLIR_BYTES, check_mlir
from fhe_backend.untrusted.sandbox import IsolatedCircuit, _Child, read_circuit, vet

REPO = Path(__file__).resolve().parent.parent


def base_mlir() -> tuple[str, str]:
    """The zoo logreg's circuit, and its return line (the payloads are spliced around it)."""
    text = zipfile.ZipFile(resolve_model("breast-cancer-logreg").server_zip).read("circuit.mlir")
    text = text.decode("utf-8")
    found = re.findall(r"^    return %\d+ : tensor<[^\n]*>$", text, re.M)
    assert len(found) == 1, found
    return text, found[0]


def payloads(marker: Path) -> dict[str, str]:
    base, ret = base_mlir()
    arg = re.search(r"%arg0: tensor<[^>]*>", base).group(0)
    command = f'llvm.mlir.global internal constant @cmd("touch {marker}\\00")'
    system = "  llvm.func @system(!llvm.ptr) -> i32\n"
    call = ("    %p = llvm.mlir.addressof @cmd : !llvm.ptr\n"
            "    %r = llvm.call @system(%p) : (!llvm.ptr) -> i32\n")
    found = {
        "llvm.call system": base.replace("module {", f"module {{\n  {command}\n{system}")
                                .replace(ret, call + ret),
        "global constructor": base.replace("module {", (
            f"module {{\n  {command}\n{system}"
            "  llvm.mlir.global_ctors {ctors = [@init], priorities = [0 : i32]}\n"
            "  llvm.func @init() {\n" + call + "    llvm.return\n  }\n")),
        "func.call exit": base.replace("module {", "module {\n  func.func private @exit(i32)")
                              .replace(ret, "    %c = arith.constant 1 : i32\n"
                                               "    func.call @exit(%c) : (i32) -> ()\n" + ret),
        "second function": base.replace("module {", (
            "module {\n  func.func @other(%a: tensor<1x1x!FHE.eint<19>>) -> "
            "tensor<1x1x!FHE.eint<19>> {\n    return %a : tensor<1x1x!FHE.eint<19>>\n  }")),
        "symbol in an attribute": base.replace(
            "{axes = [1], keep_dims = true}",
            "{axes = [1], keep_dims = true, hook = @inference_to_compile}"),
        "unregistered dialect": base.replace(ret, '    "evil.op"() : () -> ()\n' + ret),
        "deep nesting": base.replace("module {", "module {\n" + "[" * 5000 + "]" * 5000),
        "memref argument": base.replace(arg, f"{arg}, %m: memref<4xi8>"),
    }
    unchanged = [name for name, text in found.items() if text == base]
    assert not unchanged, f"the zoo circuit changed: {unchanged} no longer splice"
    return found


@pytest.mark.parametrize("name", [
    "breast-cancer-logreg", "breast-cancer-xgb", "adult-income-logreg", "adult-income-mlp",
    "german-credit-logreg", "digits-cnn",
])
def test_every_zoo_circuit_passes_the_allow_list(name):
    if name not in model_ids():
        pytest.skip(f"the zoo has no {name}")
    mlir, _ = read_circuit(resolve_model(name).server_zip)
    shape = check_mlir(mlir.decode("utf-8"))
    assert shape.n_inputs == 1 and shape.n_outputs == 1
    assert set(shape.op_counts) >= {"builtin.module", "func.func", "func.return"}


@pytest.mark.parametrize("payload", list(payloads(Path("/tmp/x"))))
def test_hostile_circuits_are_refused_before_compilation(tmp_path, payload):
    marker = tmp_path / "marker"
    source = resolve_model("breast-cancer-logreg").path
    package = ModelPackage.load(hostile_package(source, tmp_path / "pkg",
                                                mlir=payloads(marker)[payload]))
    with pytest.raises(ArtifactError, match="refused before compilation") as refused:
        vet(package.server_zip)
    assert "\n" not in str(refused.value)
    with pytest.raises(ArtifactError, match="refused before compilation"):
        Auditor(package, tmp_path / "keys").keygen()
    assert not (tmp_path / "keys").exists() or not any((tmp_path / "keys").rglob("*.json"))
    assert not marker.exists()


def test_oversized_circuit_is_refused():
    with pytest.raises(ArtifactError, match="larger than"):
        check_mlir(base_mlir()[0] + " " * MAX_MLIR_BYTES)


def test_cli_run_refuses_a_hostile_package_in_one_sentence(tmp_path, audited):
    marker = tmp_path / "marker"
    package = hostile_package(audited.package.path, tmp_path / "pkg",
                              mlir=payloads(marker)["llvm.call system"])
    # The benchmark names the package it was encrypted for: point it at the hostile copy.
    encrypted = tmp_path / "enc"
    import shutil

    shutil.copytree(audited.encrypted.path, encrypted)
    manifest = json.loads((encrypted / "manifest.json").read_text())
    manifest["model_fingerprint"] = ModelPackage.load(package).fingerprint
    (encrypted / "manifest.json").write_text(json.dumps(manifest))
    result = subprocess.run(
        [sys.executable, "-m", "fhe_backend", "run", "--model", str(package),
         "--encrypted", str(encrypted), "--out", str(tmp_path / "run")],
        capture_output=True, text=True, cwd=REPO, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "refused before compilation" in last, last
    assert "llvm" in last and "Traceback" not in result.stderr
    assert not marker.exists()


# ---- foreign evaluation keys ----------------------------------------------------------------


def foreign_keys() -> bytes:
    """Evaluation keys of a small bootstrapped circuit that is not any zoo model's."""
    from concrete import fhe

    circuit = fhe.compiler({"x": "encrypted"})(lambda x: (x * x) % 8).compile(range(8))
    circuit.keygen()
    return circuit.keys.evaluation.serialize()


@pytest.fixture(scope="module")
def xgb_encrypted(tmp_path_factory) -> tuple[ModelPackage, Path, Path]:
    if "breast-cancer-xgb" not in model_ids():
        pytest.skip("the zoo has no breast-cancer-xgb")
    root = tmp_path_factory.mktemp("xgb")
    package = resolve_model("breast-cancer-xgb")
    benchmark = resolve_benchmark(FAST_BENCHMARK)
    benchmark.frame = benchmark.frame.head(2)
    Auditor(package, root / "keys").encrypt(benchmark, root / "enc")
    return package, root / "enc", root


def test_foreign_evaluation_keys_are_refused_before_running(tmp_path, xgb_encrypted):
    package, source, _ = xgb_encrypted
    import shutil

    encrypted = Path(shutil.copytree(source, tmp_path / "enc"))
    replace_evaluation_keys(encrypted, foreign_keys())
    with pytest.raises(ArtifactError, match="made for another circuit") as refused:
        FHEServer(package).run(EncryptedBenchmark.load(encrypted), tmp_path / "run")
    assert "\n" not in str(refused.value)
    replace_evaluation_keys(encrypted, b"\x00" * 64 + os.urandom(4096))
    with pytest.raises(ArtifactError, match="not a readable Concrete keyset"):
        FHEServer(package).run(EncryptedBenchmark.load(encrypted), tmp_path / "run2")


def test_a_crash_in_the_evaluation_child_fails_one_sample_not_the_process(xgb_encrypted):
    """The issue's crash (another circuit's keys reach the runtime) happens in the child."""
    package, encrypted, _ = xgb_encrypted
    (_, ciphertext), *_ = EncryptedBenchmark.load(encrypted).ciphertexts()
    mlir, configuration = read_circuit(package.server_zip)
    with _Child() as child:  # bypass the key check on purpose: the sandbox is the last line
        child.call({"op": "compile"}, [mlir, configuration], timeout=600, crashed="compile")
        child.call({"op": "keys"}, [foreign_keys()], timeout=600, crashed="crashed on keys")
        with pytest.raises((SandboxCrash, CiphertextError)):
            child.call({"op": "run"}, [ciphertext], timeout=600, crashed="crashed on the sample")
    # A circuit whose child dies between samples fails that sample and recovers on the next.
    raw_keys = read_evaluation_keys(EncryptedBenchmark.load(encrypted).evaluation_keys_path,
                                    vet(package.server_zip).client_specs)
    with IsolatedCircuit(package.server_zip, raw_keys) as circuit:
        first = circuit.run(ciphertext)
        assert circuit._child is not None
        os.kill(circuit._child.proc.pid, signal.SIGSEGV)
        with pytest.raises(CiphertextError, match=r"crashed .*SIGSEGV"):
            circuit.run(ciphertext)
        assert len(circuit.run(ciphertext)) == len(first)


# ---- the auditor's encryption parameters ----------------------------------------------------


def specs_of(package: ModelPackage) -> dict:
    return json.loads(zipfile.ZipFile(package.client_zip).read("client.specs.json"))


def weaken_variance(specs: dict) -> None:
    specs["circuits"][0]["inputs"][0]["typeInfo"]["lweCiphertext"]["encryption"]["variance"] = 0.0


def shrink_dimension(specs: dict) -> None:
    specs["keyset"]["lweSecretKeys"][0]["params"]["lweDimension"] = 256
    encryption = specs["circuits"][0]["inputs"][0]["typeInfo"]["lweCiphertext"]["encryption"]
    encryption["lweDimension"] = 256


def change_bootstrap_key(specs: dict) -> None:
    specs["keyset"]["lweBootstrapKeys"][0]["params"]["baseLog"] += 1


@pytest.mark.parametrize(("model", "weaken"), [
    ("breast-cancer-logreg", weaken_variance),
    ("breast-cancer-logreg", shrink_dimension),
    ("breast-cancer-xgb", change_bootstrap_key),
])
def test_client_specs_other_than_the_circuits_are_refused_before_any_key(tmp_path, model,
                                                                         weaken):
    if model not in model_ids():
        pytest.skip(f"the zoo has no {model}")
    honest = resolve_model(model)
    specs = specs_of(honest)
    weaken(specs)
    package = ModelPackage.load(hostile_package(honest.path, tmp_path / "pkg",
                                                client_specs=specs))
    keys = tmp_path / "keys"
    with pytest.raises(ArtifactError, match="encryption parameters differ") as refused:
        Auditor(package, keys).encrypt(resolve_benchmark(FAST_BENCHMARK), tmp_path / "enc")
    assert "\n" not in str(refused.value)
    assert not keys.exists() or not any(p.is_file() for p in keys.rglob("*"))
    assert not (tmp_path / "enc").exists()


def test_sealed_client_specs_other_than_the_circuits_are_refused_before_any_key(tmp_path):
    """The sealed circuit's client.specs.json is the owner's too: weakened, it is refused before
    a key exists, as for the per-sample circuit (it used to set the sealed encryption)."""
    from fhe_backend.auditor.sealed import SealedAuditor
    from fhe_backend.sealed.circuit import SEALED_CLIENT, has_sealed

    honest = resolve_model("breast-cancer-logreg")
    if not has_sealed(honest):
        pytest.skip("the zoo's breast-cancer-logreg has no sealed circuit")
    specs = json.loads(zipfile.ZipFile(honest.path / SEALED_CLIENT).read("client.specs.json"))
    weaken_variance(specs)
    package = ModelPackage.load(hostile_package(honest.path, tmp_path / "pkg",
                                                sealed_client_specs=specs))
    keys = tmp_path / "keys"
    with pytest.raises(ArtifactError, match="encryption parameters differ") as refused:
        SealedAuditor(package, keys).encrypt(resolve_benchmark(FAST_BENCHMARK).head(16),
                                             tmp_path / "enc")
    assert "\n" not in str(refused.value)
    assert not keys.exists() or not any(p.is_file() for p in keys.rglob("*"))
    assert not (tmp_path / "enc").exists()


def test_honest_client_specs_are_the_derived_ones():
    from fhe_backend.untrusted.sandbox import trusted_client_specs

    package = resolve_model("breast-cancer-logreg")
    derived = json.loads(trusted_client_specs(package.client_zip, package.server_zip))
    theirs = specs_of(package)
    assert derived["keyset"] == theirs["keyset"] and derived["circuits"] == theirs["circuits"]
    variance = derived["circuits"][0]["inputs"][0]["typeInfo"]["lweCiphertext"]["encryption"]
    assert np.isfinite(variance["variance"]) and variance["variance"] > 0


def test_warm_spares_are_fresh_children_never_reused(audited):
    """A long-lived server keeps a compiled spare ready; each run gets a child of its own."""
    import time

    from fhe_backend.untrusted import sandbox

    (_, ciphertext), *_ = audited.encrypted.ciphertexts()
    raw_keys = read_evaluation_keys(audited.encrypted.evaluation_keys_path,
                                    vet(audited.package.server_zip).client_specs)
    sandbox.keep_warm()
    try:
        pids = []
        for _ in range(2):
            with IsolatedCircuit(audited.package.server_zip, raw_keys) as circuit:
                output = circuit.run(ciphertext)
                assert circuit._child is not None
                pids.append(circuit._child.proc.pid)
            deadline = time.monotonic() + 300
            while not sandbox._spares._ready and time.monotonic() < deadline:
                time.sleep(0.2)
            (spare,) = sandbox._spares._ready.values()
            assert spare.proc.pid not in pids
        assert pids[1] != pids[0] and output == dict(audited.run.outputs())[
            audited.encrypted.ciphertexts()[0][0]]
    finally:
        sandbox.keep_warm(False)
    assert not sandbox._spares._ready


def test_evaluation_keys_that_are_a_fifo_are_refused_at_once(tmp_path):
    """A FIFO swapped in for evaluation_keys.bin after the folder was loaded: the open blocked
    until someone wrote to it (a desk or server hung); now refused as not a regular file."""
    import threading

    from fhe_backend.errors import ArtifactError

    fifo = tmp_path / "evaluation_keys.bin"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            read_evaluation_keys(fifo, vet(resolve_model("breast-cancer-logreg").server_zip)
                                 .client_specs)
        except BaseException as exc:  # the test reads what was raised
            outcome.append(exc)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(30)
    if thread.is_alive():  # unblock the open so the thread ends
        with open(fifo, "wb"):
            pass
        thread.join(5)
        pytest.fail("read_evaluation_keys blocked on a FIFO")
    assert len(outcome) == 1 and isinstance(outcome[0], ArtifactError)
    assert "not a regular file" in str(outcome[0])
