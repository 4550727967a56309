"""The trust boundary takes the sealed total's module (issue 22: one total per run) and runs
any of its three functions in the sandbox.

A tiny module of the same shape as the production one (``count``, ``add``, ``noise`` wired as
in ``untrusted/composition.py``; 6-bit counters, batches of 4) is compiled here in under a
second and its keys made in ~2 s (measured on the shared 2-core machine), so the whole file runs
real FHE in seconds. What is checked: the allow-list accepts exactly that module and refuses
its near misses; the client specs the sandbox derives (with the registry's composition rules)
equal the owner's; a planted ``composition_rules.json`` is refused; a chain count, count, add,
noise through :class:`IsolatedCircuit` and :class:`FHECircuit` decrypts to the expected totals;
a bad call is refused in one sentence and the child lives on.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fhe_backend.errors import ArtifactError, CiphertextError
from fhe_backend.formats.artifacts import installed_versions
from fhe_backend.formats.bundle import pack_values
from fhe_backend.untrusted.composition import SEALED_TOTAL
from fhe_backend.untrusted.keyset import check_client_specs, check_evaluation_keys
from fhe_backend.untrusted.mlir_policy import check_mlir
from fhe_backend.untrusted.sandbox import IsolatedCircuit, vet
from tests.hostile import edit_member

BITS = 6  # counters: keys in ~2 s instead of the production 11 bits' minute
BATCH = 4
BATCH_1 = (np.array([1, 2, 3, 3]), np.array([3, 3, 3, 0]))  # q + code = 4 5 6 3: counts 3, 1
BATCH_2 = (np.array([0, 1, 2, 3]), np.array([0, 3, 3, 3]))  # 0 4 5 6: counts 3, 1


def compile_module():
    from concrete import fhe

    @fhe.module()
    class Total:
        @fhe.function({"q": "encrypted", "code": "encrypted"})
        def count(q, code):
            x = q + code
            return fhe.hint(fhe.array([
                np.sum(fhe.univariate(lambda v: (v > 3).astype(np.int64))(x)),
                np.sum(fhe.univariate(lambda v: (v > 5).astype(np.int64))(x))]), bit_width=BITS)

        @fhe.function({"a": "encrypted", "b": "encrypted"})
        def add(a, b):
            return fhe.refresh(fhe.hint(a + b, bit_width=BITS))

        @fhe.function({"a": "encrypted", "n": "clear"})
        def noise(a, n):
            return fhe.hint(a + n, bit_width=BITS)

        # The registry's wiring (a comprehension sees the class body's names only through its
        # first iterable).
        composition = fhe.Wired({
            fhe.Wire(fhe.Output(f[a], i), fhe.Input(f[b], j))
            for f in [{"count": count, "add": add, "noise": noise}]
            for a, i, b, j in SEALED_TOTAL.wires})

    rng = np.random.default_rng(0)
    top = 2 ** BITS - 1
    return Total.compile(
        {"count": [tuple(rng.integers(0, 4, (2, BATCH))) for _ in range(10)],
         "add": [tuple(rng.integers(0, top // 2 + 1, (2, 2))) for _ in range(10)],
         "noise": [tuple(rng.integers(0, top // 2, (2, 2))) for _ in range(10)]},
        fhe.Configuration(compress_input_ciphertexts=True, compress_evaluation_keys=True))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The compiled module and its sealed_server.zip, as the owner would publish them."""
    module = compile_module()
    folder = tmp_path_factory.mktemp("module")
    module.server.save(folder / "saved.zip", via_mlir=True)
    with zipfile.ZipFile(folder / "saved.zip") as saved_zip:
        members = {name: saved_zip.read(name) for name in saved_zip.namelist()}
    members["versions.json"] = json.dumps(installed_versions()).encode()
    with zipfile.ZipFile(folder / "sealed_server.zip", "w", zipfile.ZIP_DEFLATED) as out:
        for name, data in members.items():
            out.writestr(name, data)
    return module, folder / "sealed_server.zip"


@pytest.fixture(scope="module")
def keyed(saved):
    module, server_zip = saved
    module.keygen()
    return module, server_zip, module.keys.evaluation.serialize()


def test_the_registry_wires_only_counter_ports():
    for a, i, b, j in SEALED_TOTAL.wires:
        assert {(a, "out", i), (b, "in", j)} <= SEALED_TOTAL.counters


def test_the_module_is_vetted_with_its_functions_and_the_owners_specs(saved):
    module, server_zip = saved
    vetted = vet(server_zip)
    assert vetted.functions == ("add", "count", "noise")
    assert set(vetted.pbs_counts) == {"add", "count", "noise"}
    assert vetted.pbs_counts["noise"] == 0 and vetted.pbs_counts["count"] > 0
    assert vetted.pbs_count == sum(vetted.pbs_counts.values())
    # Derived with the registry's composition rules: without them the compiler picks other
    # parameters and the owner's specs would be refused here.
    check_client_specs(module.server.client_specs.serialize(), vetted.client_specs)
    # Every function's call fits the byte bounds the readers use.
    q, code = module.count.encrypt(*BATCH_1)
    assert len(pack_values([q.serialize(), code.serialize()])) <= vetted.input_bytes
    assert len(json.loads(vetted.client_specs)["circuits"]) == 3
    shape = check_mlir(zipfile.ZipFile(server_zip).read("circuit.mlir").decode())
    assert shape.sealed_module and shape.get("noise").clear.bounds == (-32, 63)


def test_the_module_with_keys_runs_each_function_in_the_sandbox(keyed):
    from concrete import fhe

    module, server_zip, keys = keyed
    check_evaluation_keys(keys, vet(server_zip).client_specs)
    batches = [pack_values([v.serialize() for v in module.count.encrypt(*b)])
               for b in (BATCH_1, BATCH_2)]
    with IsolatedCircuit(server_zip, keys) as circuit:
        counts = [circuit.run(batch, function="count") for batch in batches]
        total = circuit.run(pack_values(counts), function="add")
        noisy = circuit.run(total, function="noise", clear=[5, -1])
        for call, why in (
            (lambda: circuit.run(total, function="noise", clear=[64, 0]), "from -32 to 63"),
            (lambda: circuit.run(total, function="noise", clear=[1, 2, 3]), "2 integers"),
            (lambda: circuit.run(total, function="noise", clear=[1.5, 0]), "2 integers"),
            (lambda: circuit.run(total, function="noise", clear=[2**70, 0]), "from -32 to 63"),
            (lambda: circuit.run(total, function="noise"), "takes a clear argument"),
            (lambda: circuit.run(pack_values(counts), function="add", clear=[1, 1]),
             "takes no clear argument"),
            (lambda: circuit.run(total, function="system"), "no function 'system'"),
            (lambda: circuit.run(batches[0], function="add"), "rejected the ciphertext"),
            (lambda: circuit.run(batches[0]), "a call must name one"),
        ):
            with pytest.raises(CiphertextError) as refused:
                call()
            assert why in str(refused.value) and "\n" not in str(refused.value)
        # The refusals did not end the child: the same chain runs on.
        again = circuit.run(pack_values([total, counts[0]]), function="add")
        assert circuit.crashes == 0
    vetted = vet(server_zip)  # the bounds the readers of every call's bundle and output use
    assert max(len(b) for b in (*batches, pack_values(counts))) <= vetted.input_bytes
    assert max(len(b) for b in (*counts, total, noisy, again)) <= vetted.output_bytes

    def decrypt(blob: bytes) -> list[int]:
        return module.add.decrypt(fhe.Value.deserialize(blob)).tolist()

    assert [decrypt(c) for c in counts] == [[3, 1], [3, 1]]
    assert decrypt(total) == [6, 2]
    assert decrypt(noisy) == [11, 1]
    assert decrypt(again) == [9, 3]


def test_the_module_runs_in_process_for_dask_workers(keyed):
    from concrete import fhe

    from fhe_backend.untrusted.circuit import FHECircuit

    module, server_zip, keys = keyed
    circuit = FHECircuit(server_zip)
    batch = pack_values([v.serialize() for v in module.count.encrypt(*BATCH_2)])
    evaluation_keys = fhe.EvaluationKeys.deserialize(keys)
    count = circuit.run(batch, evaluation_keys, function="count")
    noisy = circuit.run(count, evaluation_keys, function="noise", clear=np.array([0, 2]))
    assert module.noise.decrypt(fhe.Value.deserialize(noisy)).tolist() == [3, 3]


@pytest.mark.parametrize("rules, accepted", [
    (None, True),  # as Concrete saved it
    (b'[[["count", 0], ["add", 0]]]', False),  # fewer wires
    (b'[[["count", 0], ["noise", 1]], [["add", 0], ["add", 1]], [["count", 0], ["add", 0]], '
     b'[["count", 0], ["add", 1]], [["add", 0], ["add", 0]], [["add", 0], ["noise", 0]], '
     b'[["count", 0], ["noise", 0]]]', False),  # one more
    (b"null", False),  # not ours for a module
    (b"{", False),
])
def test_a_planted_composition_rules_file_is_refused(saved, tmp_path, rules, accepted):
    _, server_zip = saved
    planted = Path(shutil.copy(server_zip, tmp_path / "sealed_server.zip"))
    if rules is not None:
        edit_member(planted, "composition_rules.json", rules)
    if accepted:
        assert vet(planted).functions == ("add", "count", "noise")
        return
    with pytest.raises(ArtifactError, match=r"composition_rules\.json") as refused:
        vet(planted)
    assert "\n" not in str(refused.value)
    with pytest.raises(ArtifactError, match=r"composition_rules\.json"):
        IsolatedCircuit(planted, b"")


def test_a_single_function_circuit_must_not_claim_module_rules(tmp_path):
    from fhe_backend.hub.references import resolve_model

    planted = Path(shutil.copy(resolve_model("breast-cancer-logreg").server_zip,
                               tmp_path / "server.zip"))
    edit_member(planted, "composition_rules.json",
                json.dumps([[[a, i], [b, j]] for a, i, b, j in SEALED_TOTAL.wires]).encode())
    with pytest.raises(ArtifactError, match=r"composition_rules\.json"):
        vet(planted)


# --------------------------------------------------------------------------------------------
# The allow-list on hand-written modules (parsed, never compiled)

COUNTER = "tensor<2x!FHE.eint<6>>"
INPUT = "tensor<4x!FHE.eint<3>>"
BIG = "tensor<5000x!FHE.eint<6>>"  # over the allow-list's 4,096 outputs per call


def function(name: str, inputs: list[str], output: str = COUNTER) -> str:
    arguments = ", ".join(f"%arg{i}: {t}" for i, t in enumerate(inputs))
    return (f"  func.func @{name}({arguments}) -> {output} {{\n"
            f'    %0 = "FHE.zero_tensor"() : () -> {output}\n'
            f"    return %0 : {output}\n  }}\n")


def module_text(**functions: tuple[list[str], str]) -> str:
    signatures = {"count": ([INPUT, INPUT], COUNTER), "add": ([COUNTER, COUNTER], COUNTER),
                  "noise": ([COUNTER, "tensor<2xi6>"], COUNTER), **functions}
    return "module {\n" + "".join(function(name, inputs, output)
                                  for name, (inputs, output) in signatures.items()
                                  if inputs is not None) + "}\n"


def test_the_hand_written_module_passes():
    shape = check_mlir(module_text())
    assert shape.names == ("count", "add", "noise") and shape.sealed_module
    assert shape.get("noise").clear.shape == (2,) and shape.get("count").clear is None


@pytest.mark.parametrize("changes, why", [
    ({"extra": ([COUNTER], COUNTER)}, "exactly one function"),
    ({"count": (None, ""), "add": (None, ""), "noise": (None, ""),
      "first": ([INPUT], COUNTER), "second": ([INPUT], COUNTER)}, "exactly one function"),
    ({"add": ([COUNTER, "tensor<2xi6>"], COUNTER)}, "not an encrypted integer tensor"),
    ({"count": ([INPUT, "tensor<4xi3>"], COUNTER)}, "not an encrypted integer tensor"),
    ({"noise": ([COUNTER, "tensor<3xi6>"], COUNTER)}, "not the shape of the encrypted"),
    ({"noise": ([COUNTER, COUNTER], COUNTER)}, "not a tensor of integers"),
    ({"noise": ([COUNTER, "tensor<2xi64>"], COUNTER)}, "at most 63 bits"),
    ({"add": ([COUNTER, "tensor<2x!FHE.eint<7>>"], COUNTER)}, "do not have one type"),
    ({"add": ([COUNTER, COUNTER], "tensor<2x!FHE.eint<7>>")}, "do not have one type"),
    ({"noise": ([COUNTER, "tensor<2xi6>"], "tensor<2x!FHE.eint<7>>")}, "do not have one type"),
    ({"count": ([INPUT], COUNTER)}, "takes 1 input(s)"),
    ({"count": ([INPUT, INPUT], BIG), "add": ([BIG, BIG], BIG),
      "noise": ([BIG, "tensor<5000xi6>"], BIG)}, "returns 5,000 encrypted values per call"),
])
def test_near_misses_of_the_module_are_refused(changes, why):
    with pytest.raises(ArtifactError) as refused:
        check_mlir(module_text(**changes))
    assert why in str(refused.value) and "\n" not in str(refused.value)


def test_a_single_function_still_takes_no_clear_input():
    with pytest.raises(ArtifactError, match="not an encrypted integer tensor"):
        check_mlir("module {\n" + function("main", [COUNTER, "tensor<2xi6>"]) + "}\n")


def test_the_module_compiles_for_the_simulator_with_its_rules(saved):
    """Concrete's simulator is another lowering: it too takes the registry's rules."""
    from concrete import fhe

    from fhe_backend.untrusted.circuit import compile_server

    _, server_zip = saved
    server = compile_server(server_zip, simulate=True)
    client = fhe.Client(server.client_specs, is_simulated=True)
    counts = server.run(client.simulate_encrypt(*BATCH_1, function_name="count"),
                        function_name="count")
    total = server.run(counts, counts, function_name="add")
    assert client.simulate_decrypt(total, function_name="add").tolist() == [6, 2]
