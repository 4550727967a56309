"""Binding: one writer per run folder, and a result bound to everything that gives it meaning
(the ciphertexts evaluated, every sample exactly once, the plaintext table, the class names and
schema); secrets on disk stay private; the auditor's ledger scales (issue 12, items 2, 3, 6, 10).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from support import FAST_MODEL, copy_tree, start_run

from fhe_backend import cli
from fhe_backend.auditor.benchmarks import PlainBenchmark
from fhe_backend.auditor.client import LEDGERS, Auditor, Decrypted
from fhe_backend.auditor.keydirs import DIR_MODE, FILE_MODE
from fhe_backend.auditor.ledger import Ledger
from fhe_backend.auditor.probes import Query, occlusion_rows, real_plan
from fhe_backend.audits.sampling import (
    PILOT,
    choose_subsample,
    needed,
    per_feature,
    reached,
    subset,
)
from fhe_backend.errors import (
    AuditError,
    BusyError,
    IncompleteRunError,
    IntegrityError,
    MismatchError,
)
from fhe_backend.formats.artifacts import (
    CIPHERTEXTS,
    MANIFEST,
    OUTPUTS,
    TRANSCRIPT,
    EncryptedBenchmark,
    ModelPackage,
    RunResult,
    write_ciphertexts,
)
from fhe_backend.formats.hashing import content_hash, sha256_bytes, sha256_file
from fhe_backend.hub.publish import publish_run
from fhe_backend.hub.references import resolve_benchmark
from fhe_backend.orchestration import run_audit
from fhe_backend.server.run import LOCK, PARTIAL, FHEServer, run_lock
from fhe_backend.verifier.verify import verify_run

REPO = Path(__file__).resolve().parent.parent


def forge_run(src: RunResult, dst: Path, rows: list[tuple[str, bytes]]) -> RunResult:
    """A copy of ``src`` whose outputs are ``rows``, every hash recomputed as a forger would."""
    copy_tree(src.path, dst)
    write_ciphertexts(dst / OUTPUTS, rows)
    data = json.loads((dst / TRANSCRIPT).read_text())
    by_id = {s["sample_id"]: s for s in data["samples"]}
    template = data["samples"][0]
    data["samples"] = [{**by_id.get(i, template), "sample_id": i,
                        "output_sha256": sha256_bytes(b)} for i, b in rows]
    data["n_samples"] = len(rows)
    data["outputs_sha256"] = content_hash(rows)
    (dst / TRANSCRIPT).write_text(json.dumps(data))
    return RunResult.load(dst)


# -- item 2: one run folder, one writer ------------------------------------------------------


def test_a_second_writer_is_refused_naming_the_holder(tmp_path, audited):
    out = tmp_path / "run"
    with run_lock(out):
        with pytest.raises(BusyError, match=rf"being written by another run \(pid {os.getpid()} "):
            FHEServer(audited.package).run(audited.encrypted, out)
        process = subprocess.run(
            [sys.executable, "-m", "fhe_backend", "run", "--model", FAST_MODEL, "--encrypted",
             str(audited.encrypted.path), "--out", str(out)],
            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=300)
    assert process.returncode == 2, process.stderr
    last = process.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and f"pid {os.getpid()}" in last, last
    assert not (out / PARTIAL).exists()  # the refused writer touched nothing


def test_two_concurrent_runs_into_one_folder(tmp_path, audited):
    """Both start at once: one runs, the other is refused (or, if it came late, returns the
    finished run); the final transcript agrees with the outputs, sample by sample."""
    out = tmp_path / "run"
    first, second = (start_run(audited.encrypted.path, out) for _ in range(2))
    codes = sorted([first.wait(timeout=600), second.wait(timeout=600)])
    assert codes in ([0, 2], [0, 0]), codes
    run = RunResult.load(out)
    rows = run.outputs()  # refuses any disagreement between transcript and outputs
    assert run.problems(rows) == []
    assert run.transcript.outputs_sha256 == audited.run.transcript.outputs_sha256


def test_a_killed_holder_leaves_the_folder_free(tmp_path, audited):
    out = tmp_path / "run"
    process = start_run(audited.encrypted.path, out)
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        if len(list((out / PARTIAL).glob("*.out"))) >= 5:
            break
        time.sleep(0.002)
    assert process.poll() is None, "the run finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (out / LOCK).is_file()
    with run_lock(out):  # the kernel released the dead holder's lock
        pass
    run = FHEServer(audited.package).run(audited.encrypted, out)
    assert run.transcript.outputs_sha256 == audited.run.transcript.outputs_sha256


def test_a_finished_run_whose_records_disagree_with_its_outputs_is_not_returned(
        tmp_path, audited):
    out = copy_tree(audited.run.path, tmp_path / "run")
    data = json.loads((out / TRANSCRIPT).read_text())
    data["samples"][1]["output_sha256"] = "0" * 64
    (out / TRANSCRIPT).write_text(json.dumps(data))
    with pytest.raises(IntegrityError, match="hash is not the transcript's: 1 sample"):
        FHEServer(audited.package).run(audited.encrypted, out)
    result = verify_run(audited.package, audited.encrypted, RunResult.load(out), limit=2)
    assert not result.ok and "Verification FAILED" in result.summary()


def test_a_planted_symbolic_link_is_not_followed_by_the_lock(tmp_path, audited):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK).symlink_to(victim)
    with pytest.raises(AuditError, match="Cannot write the run into"):
        FHEServer(audited.package).run(audited.encrypted, out)
    assert victim.read_text() == "precious\n"


# -- item 3: bind everything that changes the meaning of a result ----------------------------


def test_run_checks_the_ciphertexts_against_the_inputs_hash(tmp_path, audited):
    enc = copy_tree(audited.encrypted.path, tmp_path / "enc")
    rows = EncryptedBenchmark.load(enc).ciphertexts()
    write_ciphertexts(enc / CIPHERTEXTS, rows[::-1])  # same ciphertexts, other ids per row
    manifest = json.loads((enc / MANIFEST).read_text())
    manifest["files"][CIPHERTEXTS] = sha256_file(enc / CIPHERTEXTS)
    (enc / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match="do not hash to the manifest's inputs_sha256"):
        FHEServer(audited.package).run(EncryptedBenchmark.load(enc), tmp_path / "run")
    assert not (tmp_path / "run" / PARTIAL).exists()


def _decrypt_cli(run: Path, audited, capsys) -> tuple[int, str]:
    code = cli.main(["decrypt", "--run", str(run), "--keys", str(audited.keys),
                     "--benchmark", str(audited.benchmark.path), "--model", FAST_MODEL])
    return code, capsys.readouterr().err


def test_a_run_missing_a_sample_is_refused_by_decrypt_and_verify(tmp_path, audited, capsys):
    rows = audited.run.outputs()
    dropped = forge_run(audited.run, tmp_path / "dropped", rows[:5] + rows[6:])
    with pytest.raises(IncompleteRunError, match=r"170 sample records .* 171 samples \(1 missing"):
        Auditor(audited.package, audited.keys).decrypt(dropped)
    code, err = _decrypt_cli(dropped.path, audited, capsys)
    assert code == 1 and "1 missing" in err.strip().splitlines()[-1], err
    result = verify_run(audited.package, audited.encrypted, dropped, limit=1)
    assert not result.ok and any("1 missing" in p for p in result.problems), result.problems


def test_a_padded_run_and_an_unknown_id_are_refused_in_one_sentence(tmp_path, audited, capsys):
    rows = audited.run.outputs()
    padded = forge_run(audited.run, tmp_path / "padded", [*rows, ("ffffffffffffffff", rows[0][1])])
    code, err = _decrypt_cli(padded.path, audited, capsys)
    assert code == 1 and "KeyError" not in err, err
    assert "1 not in the benchmark" in err.strip().splitlines()[-1]
    result = verify_run(audited.package, audited.encrypted, padded, limit=1)
    assert any("1 not in the benchmark" in p for p in result.problems), result.problems
    repeated = forge_run(audited.run, tmp_path / "repeated", rows)
    data = json.loads((repeated.path / TRANSCRIPT).read_text())
    data["samples"].append(data["samples"][0])
    data["n_samples"] += 1
    (repeated.path / TRANSCRIPT).write_text(json.dumps(data))
    with pytest.raises(IncompleteRunError, match="1 repeated"):
        Auditor(audited.package, audited.keys).decrypt(RunResult.load(repeated.path))


def test_decrypt_refuses_another_table_with_the_same_ids(audited):
    auditor = Auditor(audited.package, audited.keys)
    bench = audited.benchmark
    assert len(auditor.decrypt(audited.run, bench).queries) == bench.n_samples
    frame = bench.frame.copy()
    frame[bench.label_column] = frame[bench.label_column].iloc[::-1].to_numpy()
    other = PlainBenchmark(**{**bench.__dict__, "frame": frame, "benchmark_id": "other"})
    with pytest.raises(MismatchError, match="not the table this run was encrypted from"):
        auditor.decrypt(audited.run, other)


def test_a_copy_with_reversed_class_names_does_not_pass_for_the_original(tmp_path, audited):
    copy = copy_tree(audited.package.path, tmp_path / "pkg")
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["class_names"] = manifest["class_names"][::-1]
    (copy / MANIFEST).write_text(json.dumps(manifest))
    reversed_ = ModelPackage.load(copy)  # the zips, hence the fingerprint, are unchanged
    assert reversed_.fingerprint == audited.package.fingerprint
    assert reversed_.semantics_sha256 != audited.package.semantics_sha256
    with pytest.raises(MismatchError, match="another meaning"):
        Auditor(reversed_, audited.keys).decrypt(audited.run)
    result = verify_run(reversed_, audited.encrypted, audited.run, limit=1)
    assert not result.ok and any("another meaning" in p for p in result.problems)
    with pytest.raises(MismatchError, match="other meaning"):
        FHEServer(reversed_).run(audited.encrypted, tmp_path / "run")


# -- item 6: secrets on disk -----------------------------------------------------------------


def test_key_directory_is_private_whatever_the_umask(tmp_path, fast_package, fast_benchmark):
    previous = os.umask(0o022)
    try:
        keys = tmp_path / "keys"
        keys.mkdir()
        mine = keys / "notes.txt"  # the user's own file beside the keys: left alone
        mine.write_text("mine")
        auditor = Auditor(fast_package, keys)
        auditor.encrypt(fast_benchmark.head(3), tmp_path / "enc")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(mine.stat().st_mode) == 0o644
    found = [p for p in [keys, *keys.rglob("*")] if p != mine]
    assert any(p.name.startswith("secretKey") for p in found), "no secret key file was made"
    assert any(p.parent.name == LEDGERS for p in found)
    for path in found:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (DIR_MODE if path.is_dir() else FILE_MODE), (path, oct(mode))


def test_nothing_public_is_written_inside_a_key_directory(tmp_path, audited, fast_benchmark):
    auditor = Auditor(audited.package, audited.keys)
    with pytest.raises(AuditError, match="inside the key directory"):
        auditor.encrypt(fast_benchmark.head(2), audited.keys / "enc")
    with pytest.raises(AuditError, match="inside the key directory"):
        FHEServer(audited.package).run(audited.encrypted, auditor.dir / "cache" / "run")
    with pytest.raises(AuditError, match="inside the key directory"):
        publish_run(audited.run.path, "me/run", dry_run=True, out=audited.keys / "pub")
    assert not (audited.keys / "enc").exists() and not (audited.keys / "pub").exists()


def test_a_key_directory_is_never_made_inside_the_benchmark_it_encrypts(tmp_path, capfd):
    """encrypt --keys enc/keys --out enc wrote the secret keyset inside the benchmark and said
    "no secret key inside"; refused in one sentence before any key is made."""
    from fhe_backend import cli

    code = cli.main(["encrypt", "--model", "breast-cancer-logreg", "--benchmark",
                     "breast-cancer-test", "--keys", str(tmp_path / "enc" / "keys"), "--out",
                     str(tmp_path / "enc"), "--limit", "2"])
    err = capfd.readouterr().err
    assert code == 2 and "the key directory" in err and "is inside it" in err
    assert not list(tmp_path.rglob("keyset.json")) and not (tmp_path / "enc" / "keys").exists()


# -- item 10: a ledger at the scale of a real benchmark --------------------------------------


def test_ledger_of_a_full_bias_audit_round_trips_and_is_validated(tmp_path):
    queries = {f"{i:016x}": Query(f"row-{i % 1000}", None if i < 1000 else
                                  {"kind": "occlusion", "feature": f"c{i % 14}"})
               for i in range(32_000)}
    path = tmp_path / "ledger.jsonl"
    Ledger("adult-income-test", queries, "a" * 64, "b" * 64, {"note": 1}).write(path)
    back = Ledger.read(path)
    assert back.queries == queries and back.table_sha256 == "a" * 64 and back.notes == {"note": 1}
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(AuditError, match="truncated or was edited"):
        Ledger.read(path)
    path.write_text("\n".join([lines[0], "[1, 2, 3]", *lines[2:]]) + "\n")
    with pytest.raises(AuditError, match="line 2 is not"):
        Ledger.read(path)


@pytest.mark.heavy
@pytest.mark.timeout(3600)  # about 11,000 real-FHE queries, a pilot and a reference simulation
def test_full_bias_audit_of_the_largest_zoo_benchmark(tmp_path):
    """adult-income-test (1,000 samples) with every audit, end to end in real FHE on the linear
    model (here faster than the simulator); the ledger of its >10,000 queries decrypts, and
    importance is measured on the subsample its stopping rule chose."""
    outcome = run_audit("adult-income-logreg", "adult-income-test", fhe_mode="execute",
                        audits="fairness,counterfactual,importance,surrogate",
                        out_dir=tmp_path / "audit")
    report = outcome.report
    assert report["n_samples"] == 1000 and report["n_failed"] == 0
    sampling = report["importance"]["sampling"]
    assert PILOT <= sampling["n_samples"] < sampling["n_available"] == 1000, sampling
    assert report["plan"]["queries"]["occlusion"] == sampling["n_samples"] * len(
        report["importance"]["features"])
    assert sampling["reached"]["occlusion"]["half_widths"]["marital-status"] is not None
    assert report["plan"]["n_queries"] > 10_000
    ledgers = list((tmp_path / "audit").rglob("*.jsonl"))
    assert ledgers == []  # the ledger stays in the (removed) key directory, never in --out


def test_importance_stopping_rule_sizes_the_subsample_from_the_pilot():
    """A stand-in simulator whose occlusion of one column moves the log-odds by 0.1 or 3.9 at
    random (mean 2, sd about 1.9): Stein's rule must ask for (t sd / (0.15 x 2))^2 samples, t
    at 1 - 0.05 / 4 for two features (about 2.28): about 210, more than the pilot and fewer
    than the benchmark; the other column never moves."""
    bench = resolve_benchmark("adult-income-test")
    rng = np.random.default_rng(7)

    def simulate(plan):
        margins = np.zeros(len(plan))
        for i, query in enumerate(plan.queries):
            if (query.probe or {}).get("feature") == "age" and query.probe["kind"] == "occlusion":
                margins[i] = rng.choice([0.1, 3.9])
        p = 1 / (1 + np.exp(-margins))
        return Decrypted(list(plan.queries), np.column_stack([1 - p, p]))

    columns = ["age", "education-num"]
    ids, record = choose_subsample(bench, columns, 1, 0, lambda s: np.zeros(len(s), int),
                                   simulate)
    assert PILOT < record["n_samples"] == len(ids) < 1000, record
    assert 150 < record["pilot_needed"] < 300 and "pilot of 100" in record["rule"]
    assert record["met"] and record["tolerance"] == pytest.approx(0.3, rel=0.15)
    assert len(set(ids)) == len(ids) and set(ids) <= set(bench.sample_ids())
    # Measured at the chosen size, the occlusion intervals meet the tolerance.
    sub = [q for q in bench.sample_ids() if q in set(ids)]
    probed = subset(bench, sub)
    plan = real_plan(probed)
    plan.extend(*occlusion_rows(probed, columns, {"age": 0, "education-num": 0}))
    answers = simulate(plan)
    values = per_feature(answers.select(None), answers, np.zeros(len(sub), int), columns)
    assert needed(values["occlusion"]) <= len(sub) * 1.5
    occl = reached(values)["occlusion"]
    assert occl["half_widths"]["education-num"] == 0.0
    assert occl["half_widths"]["age"] <= occl["tolerance"] * 1.2
