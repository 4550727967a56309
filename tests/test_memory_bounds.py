"""Hostile files cannot buy memory (issue 21, part 1): small files that would make a reader
allocate gigabytes are refused (or bounded) within 400 MB of the honest command's peak, in one
sentence, exit status 2.

Each case runs the public CLI in a subprocess and reads the peak resident memory of its whole
process tree (sandbox children included) from a fresh helper process. The bombs are built
sparse or compressed, on the fast linear model with 6 samples, so each test takes seconds.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hostile import (
    bomb_ciphertexts,
    bomb_outputs,
    edit_member,
    hostile_package,
    resign_package,
    sparse_evaluation_keys,
    understate_footer,
    zeros_parquet,
)
from support import copy_tree, peak_memory

from fhe_backend.auditor.client import Auditor
from fhe_backend.challenge.identity import PRIVATE_KEY, Identity
from fhe_backend.errors import ArtifactError, AuditError
from fhe_backend.formats.artifacts import read_ciphertexts
from fhe_backend.server.run import FHEServer
from fhe_backend.untrusted import sandbox

# What a hostile file may add to the honest command's peak.
SLACK_MIB = 400
CELL = 64 * 1024**2  # the old per-cell limit: each cell was allowed, whatever the circuit


@pytest.fixture(scope="module")
def small(tmp_path_factory, fast_package, fast_benchmark):
    """Keys, an encrypted benchmark of 6 samples and its real-FHE run, made in-process."""
    root = tmp_path_factory.mktemp("small")
    keys = root / "keys"
    encrypted = Auditor(fast_package, keys).encrypt(fast_benchmark.head(6), root / "encrypted")
    run = FHEServer(fast_package).run(encrypted, root / "run")
    return root, keys, encrypted.path, run.path


@pytest.fixture(scope="module")
def honest(small, fast_package):
    """The honest commands' peaks (MiB), each measured once, as the hostile ones are."""
    root, keys, encrypted, run = small
    peaks: dict[str, int] = {}

    def peak(command: str) -> int:
        if command not in peaks:
            argv = {
                "run": ["run", "--model", fast_package.path, "--encrypted", encrypted, "--out",
                        root / f"honest-run-{len(peaks)}"],
                "decrypt": ["decrypt", "--model", fast_package.path, "--benchmark",
                            "breast-cancer-test", "--keys", keys, "--run", run],
                "keygen": ["keygen", "--model", fast_package.path, "--keys",
                           root / "honest-keys"],
            }[command]
            code, err, peaks[command] = peak_memory(*argv)
            assert code == 0, err
        return peaks[command]

    return peak


def within(peak: int, honest_peak: int) -> None:
    print(f"peak {peak} MiB, honest {honest_peak} MiB")  # pytest -s shows the figures
    assert peak <= honest_peak + SLACK_MIB, (peak, honest_peak)


def refused(code: int, err: str, fragment: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and fragment in last, last
    return last


def test_a_compressed_outputs_bomb_is_refused_before_decompression(tmp_path, small, honest,
                                                                   fast_package):
    """6 cells of 64 MiB of zeros (~13 KB of zstd), hashes recomputed by the server: decrypt
    refused them only after decompressing (a peak of GBs); now from the Parquet metadata."""
    _, keys, _, run = small
    hostile = copy_tree(run, tmp_path / "run")
    bomb_outputs(hostile, CELL)
    assert (hostile / "outputs.parquet").stat().st_size < 100_000
    code, err, peak = peak_memory("decrypt", "--model", fast_package.path, "--benchmark",
                                  "breast-cancer-test", "--keys", keys, "--run", hostile)
    refused(code, err, "before decompression")
    within(peak, honest("decrypt"))


def test_a_compressed_ciphertexts_bomb_is_refused_before_decompression(tmp_path, small, honest,
                                                                       fast_package):
    """The same bomb as an encrypted benchmark's ciphertexts (inputs hash recomputed by its
    publisher): run exited 0 at a peak of GBs; now refused from the metadata, status 2."""
    _, _, encrypted, _ = small
    hostile = copy_tree(encrypted, tmp_path / "encrypted")
    bomb_ciphertexts(hostile, CELL)
    code, err, peak = peak_memory("run", "--model", fast_package.path, "--encrypted", hostile,
                                  "--out", tmp_path / "run")
    refused(code, err, "before decompression")
    within(peak, honest("run"))


def test_sparse_evaluation_keys_are_refused_from_their_size(tmp_path, small, honest,
                                                            fast_package):
    """1 GiB of sparse zeros as evaluation_keys.bin (hash recomputed): it was read whole before
    being refused; the circuit's keyset fixes its size (64 bytes for a linear model)."""
    _, _, encrypted, _ = small
    hostile = copy_tree(encrypted, tmp_path / "encrypted")
    sparse_evaluation_keys(hostile, 1024**3)
    code, err, peak = peak_memory("run", "--model", fast_package.path, "--encrypted", hostile,
                                  "--out", tmp_path / "run")
    refused(code, err, "made for another circuit or forged")
    within(peak, honest("run"))


def huge_output_mlir() -> str:
    """A 30 x 139,810 matmul (just under the tensor-element limit): 139,810 encrypted outputs
    per sample, ~870 MB each time the circuit runs."""
    return """module {
  func.func @inference_to_compile(%arg0: tensor<1x30x!FHE.esint<10>>) -> tensor<1x139810x!FHE.eint<10>> {
    %cst = arith.constant dense<1> : tensor<30x139810xi2>
    %0 = "FHELinalg.to_unsigned"(%arg0) : (tensor<1x30x!FHE.esint<10>>) -> tensor<1x30x!FHE.eint<10>>
    %1 = "FHELinalg.matmul_eint_int"(%0, %cst) : (tensor<1x30x!FHE.eint<10>>, tensor<30x139810xi2>) -> tensor<1x139810x!FHE.eint<10>>
    return %1 : tensor<1x139810x!FHE.eint<10>>
  }
}
"""  # noqa: E501


def test_an_allow_listed_circuit_with_a_huge_output_is_refused_at_vetting(tmp_path, honest,
                                                                          fast_package):
    package = hostile_package(fast_package.path, tmp_path / "pkg", mlir=huge_output_mlir())
    code, err, peak = peak_memory("keygen", "--model", package, "--keys", tmp_path / "keys")
    refused(code, err, "139,810 encrypted values per sample")
    within(peak, honest("keygen"))
    assert not list((tmp_path / "keys").rglob("keyset.json"))


def test_a_quantizer_that_does_not_fit_the_circuit_is_refused_before_any_key(
        tmp_path, honest, fast_package):
    """An input quantizer of 16 bits for a circuit that takes 10-bit integers: keys were made
    (minutes and GBs for a sealed or tree circuit) before the first sample was refused."""
    processing = json.loads(zipfile.ZipFile(fast_package.client_zip).read(
        "serialized_processing.json"))
    hostile = copy.deepcopy(processing)
    hostile["input_quantizers"][0]["serialized_value"]["n_bits"] = 16
    package = hostile_package(fast_package.path, tmp_path / "pkg", processing=hostile)
    code, err, peak = peak_memory("keygen", "--model", package, "--keys", tmp_path / "keys")
    refused(code, err, "no key was made")
    within(peak, honest("keygen"))
    assert not [p for p in (tmp_path / "keys").rglob("*") if p.is_file()]


def test_an_identity_key_linked_to_a_huge_file_is_not_read(tmp_path):
    identity = Identity.open(tmp_path / "id")
    huge = tmp_path / "huge.pem"
    with open(huge, "wb") as handle:
        handle.truncate(1024**3)
    os.chmod(huge, 0o600)
    (identity.path / PRIVATE_KEY).unlink()
    (identity.path / PRIVATE_KEY).symlink_to(huge)
    load = ("import sys\n"
            "from pathlib import Path\n"
            "from fhe_backend.challenge.identity import Identity\n"
            "from fhe_backend.errors import AuditError\n"
            "try:\n    Identity.load(Path(sys.argv[1]))\n"
            "except AuditError as exc:\n    sys.exit(f'error: {exc}')\n")
    code, err, peak = peak_memory("-c", load, identity.path)
    assert code == 1 and "Traceback" not in err and "symbolic link" in err, err
    assert peak < SLACK_MIB, peak
    # A plain file that large is refused from its size, not read either.
    (identity.path / PRIVATE_KEY).unlink()
    shutil.move(huge, identity.path / PRIVATE_KEY)
    code, err, peak = peak_memory("-c", load, identity.path)
    assert code == 1 and "not a private key file" in err and peak < SLACK_MIB, (err, peak)


def test_a_footer_that_understates_its_pages_is_refused_from_the_page_headers(tmp_path):
    """A footer declaring 100 bytes over a page of 64 MiB of zeros: the footer check alone
    passes it, and Arrow would allocate the 64 MiB the page header declares."""
    path = tmp_path / "outputs.parquet"
    zeros_parquet(path, ["s0", "s1"], CELL)
    understate_footer(path, 100)
    assert pq.ParquetFile(path).metadata.row_group(0).column(1).total_uncompressed_size == 100
    with pytest.raises(ArtifactError, match=r"declares 67,10\d,\d+ bytes .*before decompression"):
        read_ciphertexts(path, "Run", max_cell_bytes=8192)


def test_parquet_rows_beyond_the_manifest_are_refused_before_reading(tmp_path):
    path = tmp_path / "c.parquet"
    zeros_parquet(path, [f"s{i}" for i in range(5)], 10)
    with pytest.raises(ArtifactError, match="over the 4 samples"):
        read_ciphertexts(path, "Encrypted benchmark", max_rows=4)
    assert len(read_ciphertexts(path, "Encrypted benchmark", max_rows=5)) == 5


def test_sandbox_children_run_under_memory_and_cpu_limits(monkeypatch):
    monkeypatch.setenv("FHE_AUDIT_SANDBOX_MEMORY", "6000")
    monkeypatch.setenv("FHE_AUDIT_SANDBOX_CPU", "77")
    with sandbox._Child() as child:
        # Any request sets the CPU budget; an unknown one is answered with an error.
        with pytest.raises(ArtifactError, match="unknown sandbox request"):
            child.call({"op": "nothing"}, [], timeout=60, crashed="the child crashed")
        text = Path(f"/proc/{child.proc.pid}/limits").read_text()
    data = next(line for line in text.splitlines() if line.startswith("Max data size"))
    cpu = next(line for line in text.splitlines() if line.startswith("Max cpu time"))
    assert data.split()[3] == str(6000 * 1024**2), data
    used = int(cpu.split()[3])
    assert 77 < used <= 77 + 60, cpu  # the budget on top of what the child has used


def test_a_child_over_its_memory_limit_fails_in_one_sentence(monkeypatch, fast_package):
    """The limit has teeth: at 200 MiB a child cannot even load the compiler (it takes 0.6 GB),
    and the package is refused in one sentence, this process unharmed."""
    monkeypatch.setenv("FHE_AUDIT_SANDBOX_MEMORY", "200")
    mlir, configuration = sandbox.read_circuit(fast_package.server_zip)
    with pytest.raises(AuditError) as refused:  # a new digest: no cached verdict
        sandbox.vet_circuit(mlir + b"\n// under a memory limit\n", configuration)
    assert "\n" not in str(refused.value)


def test_a_sealed_quantizer_that_does_not_fit_is_refused_before_the_sealed_keys(
        tmp_path, fast_package, fast_benchmark):
    """The sealed circuit's keys take ~180 MB and a minute here (1.2 GB for the MLP): every
    batch is checked against the circuit (without a key) before they are made."""
    from fhe_backend.auditor.sealed import SealedAuditor
    from fhe_backend.formats.artifacts import ModelPackage
    from fhe_backend.sealed.circuit import LAYOUT, SEALED_CLIENT

    package = copy_tree(fast_package.path, tmp_path / "pkg")
    layout = json.loads(zipfile.ZipFile(package / SEALED_CLIENT).read(LAYOUT))
    layout["quantizer"].update(n_bits=16, zero_point=5000)  # every sample far out of range
    edit_member(package / SEALED_CLIENT, LAYOUT, json.dumps(layout).encode("utf-8"))
    resign_package(package)
    auditor = SealedAuditor(ModelPackage.load(package), tmp_path / "keys")
    with pytest.raises(ArtifactError, match="no key was made") as refused:
        auditor.encrypt(fast_benchmark.head(4), tmp_path / "encrypted")
    assert "\n" not in str(refused.value)
    assert not [p for p in (tmp_path / "keys").rglob("*") if p.is_file()]


def test_a_page_header_of_nested_lists_is_refused_in_one_sentence(tmp_path):
    """Lists nest without a depth check (structs had one): a page header of nested lists was a
    RecursionError out of the page check."""
    from hostile import nest_page_header

    from fhe_backend.formats.artifacts import write_ciphertexts

    path = tmp_path / "outputs.parquet"
    # random cells: the chunk stays 16 KB compressed, 16,000 levels of nesting
    write_ciphertexts(path, [(f"s{i}", os.urandom(8192)) for i in range(2)])
    nest_page_header(path)
    with pytest.raises(ArtifactError, match="nested too deeply"):
        read_ciphertexts(path, "Run", max_cell_bytes=8192)


def test_a_page_header_map_of_bools_costs_a_byte_an_entry():
    """A map of 2^62 bools read no byte per entry: the page check looped for ever."""
    import io
    import threading

    from hostile import bool_map_page_header

    from fhe_backend.formats.pages import PageError, declared_uncompressed_bytes

    data = bool_map_page_header()
    outcome: list[BaseException] = []

    def parse() -> None:
        try:
            declared_uncompressed_bytes(io.BytesIO(data), 0, len(data), 10)
        except PageError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=parse, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive() and outcome, "the page check did not end on a map of bools"


def test_a_parquet_table_bomb_is_refused_before_decompression(tmp_path, capfd):
    """Tables (register-benchmark, --benchmark FILE, the Space's uploads) were read whole by
    pandas: a 17 KB upload declaring 512 MiB took 1.5 GB before its columns were checked."""
    import pyarrow as pa
    from hostile import parquet_table_bomb

    from fhe_backend import cli

    path = parquet_table_bomb(tmp_path / "bomb.parquet", 300)
    assert path.stat().st_size < 1024**2
    before = pa.total_allocated_bytes()
    code = cli.main(["audit", "--model", "breast-cancer-logreg", "--benchmark", str(path),
                     "--fhe", "simulate"])
    err = capfd.readouterr().err
    assert code == 2 and "refused before decompression" in err, err
    assert pa.total_allocated_bytes() - before < 16 * 1024**2
