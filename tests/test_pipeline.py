"""The three roles end to end in real FHE, role separation, verification and resume."""

from __future__ import annotations

import shutil

import pytest
from support import copy_tree

from fhe_backend.auditor.client import Auditor
from fhe_backend.audits import score, simulate_predictions
from fhe_backend.errors import AuditError
from fhe_backend.formats.artifacts import OUTPUTS, EncryptedBenchmark, RunResult, write_ciphertexts
from fhe_backend.server.run import PARTIAL, FHEServer
from fhe_backend.verifier.verify import verify_run


def test_full_breast_cancer_test_set_in_fhe(audited):
    """Every sample of the held-out set, real FHE, decrypted and scored by the auditor."""
    run = audited.run.transcript
    assert run.mode == "execute"
    assert run.n_samples == audited.benchmark.n_samples == 171
    assert run.n_failed == 0
    decrypted = Auditor(audited.package, audited.keys).decrypt(audited.run)
    metrics = score(decrypted, audited.benchmark, audited.package)
    assert metrics["accuracy"] > 0.9
    assert sum(map(sum, metrics["confusion_matrix"])) == 171
    # A linear circuit has no PBS, so FHE and the clear circuit agree on every label.
    reference = simulate_predictions(audited.package, audited.benchmark)
    by_source = dict(zip(decrypted.sources, decrypted.predictions, strict=True))
    assert [by_source[s] for s in reference.sources] == list(reference.predictions)


def test_encrypted_benchmark_holds_no_plaintext_nor_secret(audited):
    folder = audited.encrypted.path
    assert sorted(p.name for p in folder.iterdir()) == [
        "ciphertexts.parquet", "evaluation_keys.bin", "manifest.json"]
    secret_files = [p for p in audited.keys.rglob("*") if p.is_file() and "cache" in p.parts]
    assert secret_files, "the keyset cache should hold the secret key"
    published = b"".join(p.read_bytes() for p in folder.iterdir())
    for secret in secret_files:
        blob = secret.read_bytes()
        # Any 64-byte window of the secret key file must not appear in the benchmark.
        for start in range(0, max(1, len(blob) - 64), max(1, len(blob) // 16)):
            assert blob[start : start + 64] not in published
    manifest = (folder / "manifest.json").read_text()
    assert "label" not in manifest and "malignant" not in manifest
    # Sample ids are random and the order shuffled: nothing ties a row to the benchmark.
    ids = [sample_id for sample_id, _ in audited.encrypted.ciphertexts()]
    assert not set(ids) & set(audited.benchmark.sample_ids())
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)


def test_server_runs_without_any_key_directory(tmp_path, audited):
    """Role separation: the auditor's key directory is deleted before the server runs."""
    keys = copy_tree(audited.keys, tmp_path / "keys")
    Auditor(audited.package, keys).encrypt(audited.benchmark.head(5), tmp_path / "enc")
    shutil.rmtree(keys)
    saved = copy_tree(tmp_path / "enc", tmp_path / "published")
    run = FHEServer(audited.package).run(EncryptedBenchmark.load(saved), tmp_path / "run")
    assert run.transcript.n_samples == 5 and run.transcript.n_failed == 0


def test_fhe_is_deterministic_and_verify_passes(audited):
    result = verify_run(audited.package, audited.encrypted, audited.run, limit=20)
    assert result.ok, result.problems
    assert result.n_checked == 20


def test_verify_fails_after_one_flipped_output_byte(tmp_path, audited):
    run_dir = copy_tree(audited.run.path, tmp_path / "run")
    rows = RunResult.load(run_dir).outputs()
    sample_id, blob = rows[3]
    flipped = bytearray(blob)
    flipped[len(flipped) // 2] ^= 0x01
    rows[3] = (sample_id, bytes(flipped))
    write_ciphertexts(run_dir / OUTPUTS, rows)
    result = verify_run(audited.package, audited.encrypted, RunResult.load(run_dir))
    assert not result.ok
    assert "does not match the outputs hash" in result.summary()


def test_verify_fails_when_transcript_and_outputs_are_both_forged(tmp_path, audited):
    """A forger who also rewrites the transcript's hashes is caught by re-execution."""
    import json

    from fhe_backend.formats.hashing import content_hash, sha256_bytes

    run_dir = copy_tree(audited.run.path, tmp_path / "run")
    rows = RunResult.load(run_dir).outputs()
    other = rows[1][1]
    rows[0] = (rows[0][0], other)  # sample 0 claims sample 1's output
    write_ciphertexts(run_dir / OUTPUTS, rows)
    transcript = json.loads((run_dir / "transcript.json").read_text())
    transcript["outputs_sha256"] = content_hash(rows)
    transcript["samples"][0]["output_sha256"] = sha256_bytes(other)
    (run_dir / "transcript.json").write_text(json.dumps(transcript))
    result = verify_run(audited.package, audited.encrypted, RunResult.load(run_dir), limit=3)
    assert not result.ok
    assert any("re-executed output differs" in p for p in result.problems)


def test_interrupted_run_resumes_to_the_same_outputs(tmp_path, audited):
    server = FHEServer(audited.package)
    stop_after = 40
    done = []

    def progress(n, total, record):
        done.append(record.sample_id)

    with pytest.raises(AuditError, match="resume"):
        server.run(audited.encrypted, tmp_path / "run", progress=progress,
                   should_stop=lambda: len(done) >= stop_after)
    partial = tmp_path / "run" / PARTIAL
    assert len(list(partial.glob("*.out"))) == stop_after
    # A kill while writing leaves a temp file and perhaps a torn record: both are redone.
    (partial / "00000041.out.tmp").write_bytes(b"torn")
    (partial / "00000007.json").write_text("{not json")

    resumed_ids = []
    run = server.run(audited.encrypted, tmp_path / "run",
                     progress=lambda n, t, r: resumed_ids.append(r.sample_id))
    assert len(resumed_ids) == 171 - stop_after + 1  # the torn record was redone
    assert run.transcript.outputs_sha256 == audited.run.transcript.outputs_sha256
    assert not partial.exists()
    # A finished run is not run again.
    again = server.run(audited.encrypted, tmp_path / "run")
    assert again.transcript.outputs_sha256 == run.transcript.outputs_sha256


@pytest.mark.slow
def test_verify_bootstrapped_circuit_across_processes(tmp_path):
    """Bootstrapped circuits are not bit-reproducible across processes (Concrete's FFT plan is
    chosen by timing): without keys a byte mismatch is inconclusive, never 'verified'; the
    auditor settles it by decryption."""
    import subprocess
    import sys

    from fhe_backend.hub.references import resolve_benchmark, resolve_model

    package = resolve_model("breast-cancer-xgb")
    auditor = Auditor(package, tmp_path / "keys")
    encrypted = auditor.encrypt(resolve_benchmark("breast-cancer-test").head(2), tmp_path / "enc")
    subprocess.run([sys.executable, "-m", "fhe_backend", "run", "--model", "breast-cancer-xgb",
                    "--encrypted", str(encrypted.path), "--out", str(tmp_path / "run")],
                   check=True, capture_output=True)
    run = RunResult.load(tmp_path / "run")
    public = verify_run(package, encrypted, run)
    assert not public.problems
    assert public.n_identical + public.n_inconclusive == 2
    assert public.ok == (public.n_inconclusive == 0)
    if public.n_inconclusive:
        assert public.summary().startswith("Inconclusive")
    settled = verify_run(package, encrypted, run, auditor=auditor)
    assert settled.ok and settled.n_identical + settled.n_equivalent == 2
