"""One total per run, in real FHE, on a small sealed module built here (batches of 4): the server
adds the batches up under FHE and publishes only the total; the auditor decrypts that total and
nothing else (a run that publishes per-batch outputs is refused); the verifier re-executes the
chain; the server's differential-privacy noise is recorded (never the noise) and charged to a
budget. Keygen of this module takes ~10 s here; the zoo's sealed modules are exercised by
``tests/test_sealed.py`` (simulator; real FHE with ``make test-heavy``)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from fhe_backend import cli
from fhe_backend.auditor.sealed import SealedAuditor, decrypted_summary
from fhe_backend.errors import BudgetError, IntegrityError, MismatchError, SchemaError
from fhe_backend.formats.artifacts import OUTPUTS, TOTAL_ID, TRANSCRIPT, RunResult
from fhe_backend.hub.references import resolve_benchmark
from fhe_backend.sealed.circuit import ADD, COUNT, NOISE
from fhe_backend.sealed.dp import describe
from fhe_backend.server.privacy import PrivateCounts
from fhe_backend.server.run import FHEServer
from fhe_backend.verifier.verify import verify_run

FEATURES = ["worst radius", "worst texture", "worst concave points"]  # 0.936 at 4 bits
ROWS = 14  # 4 batches of 4, the last one padded with 2 masked rows


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from concrete.ml.sklearn import LogisticRegression

    from fhe_backend.owner import package_model

    root = tmp_path_factory.mktemp("sealed-total")
    whole = resolve_benchmark("breast-cancer-test")
    classes = ["malignant", "benign"]
    X = whole.frame[FEATURES].to_numpy(dtype=float)
    model = LogisticRegression(n_bits=4).fit(X, whole.labels(classes))
    package = package_model(model, X, root / "pkg", model_id="tiny-sealed", class_names=classes,
                            feature_names=FEATURES, sealed={"batch_size": 4, "n_groups": 2})
    # Rows spread over the set (its first rows are nearly all malignant), fit for this model.
    frame = whole.frame.iloc[::12].iloc[:ROWS].reset_index(drop=True)
    bench = dataclasses.replace(whole, frame=frame, fits_models=[])
    auditor = SealedAuditor(package, root / "keys")
    encrypted = auditor.encrypt(bench, root / "enc")
    run = FHEServer(package).run(encrypted, root / "run")
    expected = np.zeros(2, dtype=np.int64)  # predicted class 1, per true label (one group)
    labels = bench.labels(classes)
    np.add.at(expected, labels[model.predict(bench.frame[FEATURES].to_numpy(float)) == 1], 1)
    return package, bench, auditor, encrypted, run, expected, root


def test_the_run_publishes_one_total_that_decrypts_to_the_clear_counts(tiny):
    package, _, auditor, encrypted, run, expected, _ = tiny
    assert encrypted.manifest.n_samples == 4
    assert [s for s, _ in run.outputs()] == [TOTAL_ID]
    total = run.transcript.total
    assert total["function"] == ADD and total["n_batches"] == 4 and total["dp"] is None
    assert len(total["chain_sha256"]) == 3  # one add per batch after the first
    counts = auditor.decrypt(run)
    assert counts.positives.tolist() == [expected.tolist()]
    assert counts.totals.sum() == ROWS  # the padded rows counted nothing
    summary = decrypted_summary(counts)
    assert summary["values_total"] == 4 and summary["per_batch"] is False  # 2 groups x 2 labels
    assert package.manifest.sealed["pbs"][NOISE] == 0 and package.manifest.sealed["pbs"][COUNT]


def test_decrypting_per_batch_outputs_is_refused(tiny, tmp_path):
    """A run that publishes its batches' outputs (as the design before one total did) is refused
    before any decryption, and outputs that are not the recorded total fail the integrity check."""
    _, _, auditor, _, run, _, _ = tiny
    copy = shutil.copytree(run.path, tmp_path / "run")
    data = json.loads((copy / TRANSCRIPT).read_text())
    data["total"] = {}
    (copy / TRANSCRIPT).write_text(json.dumps(data))
    with pytest.raises(MismatchError, match="decrypting a batch's counts is refused"):
        auditor.decrypt(RunResult.load(copy))
    # The total's row renamed as if it were a batch's: no longer the one total recorded.
    from fhe_backend.formats.artifacts import write_ciphertexts

    copy = shutil.copytree(run.path, tmp_path / "renamed")
    ((_, blob),) = run.outputs()
    write_ciphertexts(copy / OUTPUTS, [(run.transcript.samples[0].sample_id, blob)])
    with pytest.raises(IntegrityError):
        RunResult.load(copy).outputs()


def test_verify_re_executes_the_chain_and_compares_totals(tiny, tmp_path):
    package, _, auditor, encrypted, run, expected, _ = tiny
    assert expected.sum() > 0  # so that doubling the total changes it
    result = verify_run(package, encrypted, run, auditor=auditor)
    assert result.ok, result.problems
    assert result.n_checked == 4 and result.n_identical + result.n_equivalent == 1
    assert not verify_run(package, encrypted, run).problems  # without keys: no failure...
    # ...and a published total that is not the batches' sum is caught by the key holder: the
    # total added to itself (the chain allows it), with the transcript rewritten to match it.
    from fhe_backend.formats.artifacts import write_ciphertexts
    from fhe_backend.formats.bundle import pack_values
    from fhe_backend.formats.hashing import content_hash, sha256_bytes
    from fhe_backend.untrusted.sandbox import IsolatedCircuit

    ((_, published),) = run.outputs()
    with IsolatedCircuit(package.path / "sealed_server.zip",
                         encrypted.evaluation_keys_path.read_bytes()) as circuit:
        short = circuit.run(pack_values([published, published]), function=ADD)
    forged = shutil.copytree(run.path, tmp_path / "forged")
    write_ciphertexts(forged / OUTPUTS, [(TOTAL_ID, short)])
    data = json.loads((forged / TRANSCRIPT).read_text())
    data["total"]["output_sha256"] = data["total"]["chain_sha256"][-1] = sha256_bytes(short)
    data["outputs_sha256"] = content_hash([(TOTAL_ID, short)])
    (forged / TRANSCRIPT).write_text(json.dumps(data))
    result = verify_run(package, encrypted, RunResult.load(forged), auditor=auditor)
    assert not result.ok and "other counts" in result.problems[0]


def test_a_batch_passed_off_as_the_total_is_never_decrypted(tiny, tmp_path):
    """The first batch's own output published as the total (function count, the transcript
    otherwise consistent): decrypt refuses it, the verifier and the spot check report it,
    and no batch's counts are decrypted."""
    from fhe_backend.auditor.sealed import SealedAuditor as Sealed
    from fhe_backend.challenge.spotcheck import SpotCheck, _check_sealed
    from fhe_backend.formats.artifacts import write_ciphertexts
    from fhe_backend.formats.hashing import content_hash, sha256_bytes
    from fhe_backend.untrusted.sandbox import IsolatedCircuit

    package, _, auditor, encrypted, run, _, _ = tiny
    rows = encrypted.ciphertexts()
    raw_keys = encrypted.evaluation_keys_path.read_bytes()
    with IsolatedCircuit(package.path / "sealed_server.zip", raw_keys) as circuit:
        batch = circuit.run(rows[0][1], function=COUNT)
    forged = shutil.copytree(run.path, tmp_path / "forged")
    write_ciphertexts(forged / OUTPUTS, [(TOTAL_ID, batch)])
    data = json.loads((forged / TRANSCRIPT).read_text())
    data["total"].update(function=COUNT, chain_sha256=[], output_sha256=sha256_bytes(batch))
    data["outputs_sha256"] = content_hash([(TOTAL_ID, batch)])
    (forged / TRANSCRIPT).write_text(json.dumps(data))
    forged_run = RunResult.load(forged)
    opened = []
    original = Sealed.decrypt_total

    def spy(self, run_, blob, function=None):
        opened.append(blob)
        return original(self, run_, blob, function)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(Sealed, "decrypt_total", spy)
        with pytest.raises(MismatchError, match="one total of all its batches"):
            auditor.decrypt(forged_run)
        result = verify_run(package, encrypted, forged_run, auditor=auditor)
        assert not result.ok and "one total of all its batches" in result.problems[0]
        check = _check_sealed(auditor, package.path / "sealed_server.zip", raw_keys, rows,
                              forged_run, dict(forged_run.outputs()), SpotCheck(4, 4, "batch"))
        assert check.problems and "one total of all its batches" in check.problems[0]
    assert opened == [batch]  # decrypt's refusal came before its key was loaded


def test_noise_beyond_the_named_range_is_refused(tiny, tmp_path, monkeypatch):
    """A server that adds noise outside [-512, 511] (the range its transcript names): a cell
    beyond a true count's reach is refused, not clipped into the report."""
    from fhe_backend.auditor.sealed import SealedAuditor as Sealed
    from fhe_backend.errors import CiphertextError

    _, _, auditor, _, run, _, _ = tiny
    noisy = shutil.copytree(run.path, tmp_path / "noisy")
    data = json.loads((noisy / TRANSCRIPT).read_text())
    data["total"].update(function=NOISE, dp=describe(1.0),
                         chain_sha256=[*data["total"]["chain_sha256"], "0" * 64])
    (noisy / TRANSCRIPT).write_text(json.dumps(data))
    cells = np.zeros((2, 2), dtype=np.int64)
    monkeypatch.setattr(Sealed, "decrypt_total", lambda *a, **k: cells)
    assert auditor.decrypt(RunResult.load(noisy)).dp == describe(1.0)  # within reach: read
    cells[0, 1] = ROWS + 600  # beyond any true count plus 511
    with pytest.raises(CiphertextError, match="noise range"):
        auditor.decrypt(RunResult.load(noisy))
    cells[0, 1] = -513
    with pytest.raises(CiphertextError, match="noise range"):
        auditor.decrypt(RunResult.load(noisy))


def test_noise_is_recorded_charged_and_refused_past_the_budget(tiny, capsys):
    package, _, auditor, encrypted, _, expected, root = tiny
    dp = PrivateCounts(1.0, per_day=1.5, budget_file=root / "budget.json")
    noisy = FHEServer(package).run(encrypted, root / "dp-run", dp=dp)
    total = noisy.transcript.total
    assert total["function"] == NOISE and len(total["chain_sha256"]) == 4
    assert total["dp"]["epsilon"] == 1.0 and total["dp"]["mechanism"] == "discrete_laplace"
    # The mechanism is recorded, never the noise drawn: the entry is a function of epsilon.
    assert total["dp"] == describe(1.0)
    counts = auditor.decrypt(noisy)
    assert counts.dp == total["dp"]
    assert np.all(np.abs(counts.positives[0] - expected) <= 30)  # P(|noise| > 30) < 1e-12
    # decrypt --sealed --json reports the noise and the widened intervals.
    assert cli.main(["decrypt", "--sealed", "--json", "--run", str(noisy.path), "--keys",
                     str(root / "keys"), "--benchmark", "breast-cancer-test", "--model",
                     str(package.path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dp"]["epsilon"] == 1.0 and "noise" in report["interval_methods"]
    assert report["decrypted"]["per_batch"] is False and "noise" in report["decrypted"]["what"]
    with pytest.raises(BudgetError):
        FHEServer(package).run(encrypted, root / "dp-run-2", dp=dp)
    assert not (root / "dp-run-2" / TRANSCRIPT).exists()
    check = verify_run(package, encrypted, noisy, auditor=auditor)
    assert not check.ok and not check.problems and "noise" in check.summary()


def test_a_cell_over_the_counter_width_is_refused_before_encryption(tiny, monkeypatch, tmp_path):
    import fhe_backend.auditor.sealed as sealed

    package, bench, *_ = tiny
    monkeypatch.setattr(sealed, "MAX_CELL", 3)
    with pytest.raises(SchemaError, match="at most 3 rows"):
        SealedAuditor(package, tmp_path / "keys").encrypt(bench, tmp_path / "enc")
    assert not (tmp_path / "enc").exists() and not (tmp_path / "keys").exists()


def test_noise_options_outside_a_sealed_run_are_refused(capsys):
    assert cli.main(["audit", "--model", "breast-cancer-logreg", "--benchmark",
                     "breast-cancer-test", "--dp-epsilon", "1"]) == 2
    assert "sealed" in capsys.readouterr().err
    assert cli.main(["audit", "--sealed", "--model", "breast-cancer-logreg", "--benchmark",
                     "breast-cancer-test", "--dp-budget", "2/day"]) == 2
    assert "give both" in capsys.readouterr().err


def test_sealed_audit_reports_one_total_and_the_per_sample_metrics(tiny):
    """The issue's "done when", at small scale: a sealed audit (``audit --sealed --json``'s
    report) has ``values_total`` = the count cells, and the per-sample audit's accuracy,
    precision, recall and F1 on the same rows."""
    from fhe_backend.orchestration import run_audit, run_sealed_audit

    package, bench, *_ = tiny
    sealed = run_sealed_audit(package, bench)
    plain = run_audit(package, bench, fhe_mode="execute").report
    assert sealed["decrypted"]["values_total"] == 4 and sealed["decrypted"]["per_batch"] is False
    assert sealed["n_samples"] == plain["n_samples"] == ROWS
    for name in ("accuracy", "precision", "recall", "f1"):
        assert sealed["metrics"][name] == plain["metrics"][name], name


def test_a_dask_worker_loads_the_sealed_module_under_its_own_name(tiny):
    """A worker wrote every package's circuit as ``server.zip``, whose members a sealed zip
    does not have: every sealed batch on Dask failed ("server.zip lacks is_simulated")."""
    from fhe_backend.sealed.circuit import sealed_view
    from fhe_backend.server.distributed import _model_plugin_type

    package, _, _, encrypted, *_ = tiny
    plugin = _model_plugin_type()(sealed_view(package), encrypted.evaluation_keys_path.read_bytes())
    plugin.address = "in-process"
    circuit, keys = plugin._load()
    ((_, ciphertext), *_) = encrypted.ciphertexts()
    assert circuit.run(ciphertext, keys, function=COUNT)  # the module's count, by name


@pytest.mark.heavy
def test_a_sealed_run_on_dask_workers_adds_up_to_the_same_total(tiny):
    """The batches' ``count`` on two local Dask workers (the function named on each worker),
    the chain in this machine's sandbox: the same decrypted total as the local run (~1 min)."""
    from fhe_backend.server.distributed import DaskExecutor

    package, _, auditor, encrypted, _, expected, root = tiny
    run = FHEServer(package).run(encrypted, root / "dask-run", executor=DaskExecutor(workers=2))
    assert {r.worker.split(":")[0] for r in run.transcript.samples} == {"tcp"}
    assert [s for s, _ in run.outputs()] == [TOTAL_ID]
    assert auditor.decrypt(run).positives.tolist() == [expected.tolist()]


def test_a_key_fingerprint_edited_in_the_manifest_gets_no_fresh_budget(tiny, tmp_path):
    """The budget is charged to the manifest's key fingerprint: one that is not the hash of the
    evaluation keys (edited to get the same keys a fresh budget) is refused before any batch,
    nothing charged."""
    from fhe_backend.formats.artifacts import MANIFEST, EncryptedBenchmark

    package, _, _, encrypted, _, _, _ = tiny
    edited = shutil.copytree(encrypted.path, tmp_path / "enc")
    data = json.loads((edited / MANIFEST).read_text())
    data["key_fingerprint"] = "0" * 64
    (edited / MANIFEST).write_text(json.dumps(data))
    dp = PrivateCounts(1.0, per_day=1.0, budget_file=tmp_path / "budget.json")
    with pytest.raises(MismatchError, match="key fingerprint"):
        FHEServer(package).run(EncryptedBenchmark.load(edited), tmp_path / "run", dp=dp)
    assert dp.budget.spent("0" * 64) == 0.0 and not (tmp_path / "run" / TRANSCRIPT).exists()
