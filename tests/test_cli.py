"""The command line as a contract: names, JSON on stdout, one-sentence errors, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import FAST_BENCHMARK, FAST_MODEL, copy_tree

from fhe_backend.auditor.client import Auditor
from fhe_backend.formats.artifacts import CIPHERTEXTS, write_ciphertexts

REPO = Path(__file__).resolve().parent.parent


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fhe_backend", *args], capture_output=True, text=True,
        cwd=cwd or REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600,
    )


def assert_clear_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and fragment in last, last


def test_roles_through_the_cli(tmp_path):
    """keygen -> encrypt -> (keys deleted) run -> decrypt -> verify, each a separate process."""
    keys, enc, run = tmp_path / "keys", tmp_path / "enc", tmp_path / "run"
    assert cli("keygen", "--model", FAST_MODEL, "--keys", str(keys)).returncode == 0
    result = cli("encrypt", "--model", FAST_MODEL, "--benchmark", FAST_BENCHMARK,
                 "--keys", str(keys), "--out", str(enc), "--limit", "12", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["n_samples"] == 12
    hidden = copy_tree(keys, tmp_path / "auditor-only")
    import shutil
    shutil.rmtree(keys)

    result = cli("run", "--model", FAST_MODEL, "--encrypted", str(enc), "--out", str(run),
                 "--json")
    assert result.returncode == 0, result.stderr
    transcript = json.loads(result.stdout)
    assert transcript["mode"] == "execute" and transcript["n_samples"] == 12

    result = cli("decrypt", "--run", str(run), "--keys", str(hidden), "--benchmark",
                 FAST_BENCHMARK, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["fhe_mode"] == "execute" and report["n_samples"] == 12
    assert 0 <= report["metrics"]["accuracy"] <= 1
    assert report["transcript"]["outputs_sha256"] == transcript["outputs_sha256"]

    result = cli("verify", "--model", FAST_MODEL, "--encrypted", str(enc), "--run", str(run))
    assert result.returncode == 0, result.stderr
    assert "Verified" in result.stdout


def test_audit_json_contract():
    result = cli("audit", "--model", FAST_MODEL, "--benchmark", FAST_BENCHMARK, "--limit", "8",
                 "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # stdout holds exactly one JSON object
    assert set(report) >= {"model", "benchmark", "fhe_mode", "n_samples", "metrics",
                           "clear_reference", "timing", "sizes", "transcript"}
    assert report["fhe_mode"] == "execute"
    assert set(report["metrics"]) == {"accuracy", "balanced_accuracy", "precision", "recall",
                                      "f1", "confusion_matrix", "roc_auc"}
    assert set(report["clear_reference"]) >= {"accuracy", "agreement"}
    assert report["clear_reference"]["agreement"] == 1.0
    assert set(report["timing"]) == {"keygen_s", "encrypt_s", "run_s", "decrypt_s",
                                     "fhe_s_per_sample"}
    assert set(report["sizes"]) == {"evaluation_keys_bytes", "input_bytes_per_sample",
                                    "output_bytes_per_sample"}
    assert set(report["transcript"]) == {"model_fingerprint", "inputs_sha256",
                                         "evaluation_keys_sha256", "outputs_sha256", "versions"}


def test_unknown_zoo_id():
    assert_clear_error(cli("audit", "--model", "no-such-model", "--benchmark", FAST_BENCHMARK),
                       "No model 'no-such-model'")


def test_decrypt_with_keys_that_do_not_match_the_run(tmp_path, audited):
    other_keys = tmp_path / "other-keys"
    Auditor(audited.package, other_keys).keygen()
    result = cli("decrypt", "--run", str(audited.run.path), "--keys", str(other_keys),
                 "--benchmark", FAST_BENCHMARK)
    assert_clear_error(result, "These keys did not encrypt the run's benchmark")


def test_benchmark_encrypted_for_another_model(tmp_path, audited):
    result = cli("run", "--model", "breast-cancer-xgb", "--encrypted",
                 str(audited.encrypted.path), "--out", str(tmp_path / "run"))
    assert_clear_error(result, "was encrypted for model 'breast-cancer-logreg'")


def test_benchmark_that_does_not_fit_the_model(tmp_path):
    result = cli("audit", "--model", FAST_MODEL, "--benchmark", "digits-test", "--limit", "2")
    assert_clear_error(result, "is not meant for model")


def test_tampered_file_is_refused(tmp_path, audited):
    enc = copy_tree(audited.encrypted.path, tmp_path / "enc")
    blob = bytearray((enc / "evaluation_keys.bin").read_bytes())
    blob[0] ^= 0xFF
    (enc / "evaluation_keys.bin").write_bytes(bytes(blob))
    result = cli("run", "--model", FAST_MODEL, "--encrypted", str(enc), "--out",
                 str(tmp_path / "run"))
    assert_clear_error(result, "evaluation_keys.bin does not match its manifest")


def test_missing_file_is_refused(tmp_path, audited):
    package = copy_tree(audited.package.path, tmp_path / "pkg")
    (package / "server.zip").unlink()
    result = cli("run", "--model", str(package), "--encrypted", str(audited.encrypted.path),
                 "--out", str(tmp_path / "run"))
    assert_clear_error(result, "is missing server.zip")


@pytest.mark.parametrize("damage", ["truncated", "random"])
def test_corrupted_ciphertext_is_reported_and_others_are_kept(tmp_path, audited, damage):
    """A bad ciphertext fails its own sample with a reason; every other sample is processed."""
    import hashlib
    import json as jsonlib

    from fhe_backend.formats.hashing import content_hash, sha256_file

    enc = copy_tree(audited.encrypted.path, tmp_path / "enc")
    rows = audited.encrypted.ciphertexts()[:6]
    sample_id, blob = rows[2]
    bad = blob[: len(blob) // 2] if damage == "truncated" else hashlib.sha512(blob).digest() * 8
    rows[2] = (sample_id, bad)
    # The auditor re-signs the manifest so that only the ciphertext itself is wrong.
    write_ciphertexts(enc / CIPHERTEXTS, rows)
    manifest = jsonlib.loads((enc / "manifest.json").read_text())
    manifest.update(n_samples=6, inputs_sha256=content_hash(rows))
    manifest["files"][CIPHERTEXTS] = sha256_file(enc / CIPHERTEXTS)
    (enc / "manifest.json").write_text(jsonlib.dumps(manifest))

    result = cli("run", "--model", FAST_MODEL, "--encrypted", str(enc), "--out",
                 str(tmp_path / "run"), "--json")
    assert result.returncode == 0, result.stderr
    transcript = jsonlib.loads(result.stdout)
    assert transcript["n_failed"] == 1
    failed = [s for s in transcript["samples"] if s["error"]]
    assert failed[0]["sample_id"] == sample_id and "ciphertext" in failed[0]["error"]
    assert sum(1 for s in transcript["samples"] if s["output_sha256"]) == 5


def test_models_and_benchmarks_listings():
    models = json.loads(cli("models", "--json").stdout)["models"]
    ids = {m["id"] for m in models}
    assert {"breast-cancer-logreg", "breast-cancer-xgb", "adult-income-logreg",
            "adult-income-mlp", "digits-cnn"} <= ids
    benchmarks = json.loads(cli("benchmarks", "--json").stdout)["benchmarks"]
    assert {"breast-cancer-test", "adult-income-test", "digits-test"} <= {
        b["id"] for b in benchmarks}
