"""The Space driven through its API: ``build_demo()`` launched in-process, ``gradio_client``.

Real FHE runs on the fast zoo models (the logistic regressions, a few ms per query) on a few
samples; the bias audits use adult-income-logreg, whose benchmark has sensitive attributes.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import types
import zipfile
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client, handle_file

from fhe_backend import cli
from fhe_backend.auditor.client import Auditor
from fhe_backend.errors import NotFoundError
from fhe_backend.formats.artifacts import EncryptedBenchmark
from fhe_backend.hub.references import resolve_benchmark, resolve_model
from fhe_backend.hub.zoo import model_ids
from fhe_backend.orchestration import run_audit
from fhe_backend.ui import build_demo, launch_options, render, sessions
from fhe_backend.ui.settings import (
    FHE_CONCURRENCY_ID,
    MAX_FILE_SIZE,
    MAX_QUERIES_ENV,
    MAX_SAMPLES_ENV,
    QUEUE_SIZE_ENV,
)

REPO = Path(__file__).resolve().parent.parent

MODEL, BENCHMARK = "breast-cancer-logreg", "breast-cancer-test"
ADULT, ADULT_BENCHMARK = "adult-income-logreg", "adult-income-test"  # sensitive: sex, race
OTHER_BENCHMARK = "digits-test"  # fits digits-cnn only
REPORT_KEYS = {"model", "benchmark", "fhe_mode", "n_samples", "n_failed", "audits", "plan",
               "metrics", "clear_reference", "timing", "sizes", "transcript"}
FHE_ENDPOINTS = {"run_audit", "audit", "verify", "server_run", "bias_audit", "compare",
                 "hub_example"}
BIAS = "fairness,counterfactual,importance,surrogate"


@pytest.fixture
def adult() -> None:
    if ADULT not in model_ids():
        pytest.skip(f"the zoo has no {ADULT}: build it (make assets), or point FHE_AUDIT_ASSETS "
                    "at a zoo that has it")


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as {"a/b/c": leaf} (an interval's bounds as "a/b/0" and "a/b/1"), to
    compare numbers with pytest.approx."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}/"))
        elif isinstance(value, list):
            flat.update({f"{prefix}{key}/{i}": v for i, v in enumerate(value)})
        else:
            flat[prefix + key] = value
    return flat


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and int(value, 16) >= 0


def test_fhe_jobs_share_one_bounded_queue_and_run_history_is_off(app: tuple[Any, str]) -> None:
    demo, _ = app
    jobs = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name in FHE_ENDPOINTS}
    assert set(jobs) == FHE_ENDPOINTS
    assert all(fn.concurrency_id == FHE_CONCURRENCY_ID and fn.concurrency_limit == 1
               for fn in jobs.values())
    assert demo._queue.max_size == 16
    assert demo.run_history is False


def test_simulate_returns_exactly_the_cli_report(client: Client) -> None:
    # Four arguments, as before the audit list existed: accuracy only.
    report = client.predict(MODEL, BENCHMARK, "simulate", 20, api_name="/run_audit")
    assert set(report) >= REPORT_KEYS and report["audits"] == ["accuracy"]
    assert (report["fhe_mode"], report["n_samples"], report["n_failed"]) == ("simulate", 20, 0)
    assert 0.0 <= report["metrics"]["accuracy"] <= 1.0
    assert report["timing"]["fhe_s_per_sample"] is None  # no FHE happened
    direct = run_audit(MODEL, BENCHMARK, fhe_mode="simulate", limit=20).report
    assert {**report, "timing": None} == {**direct, "timing": None}


def test_execute_runs_real_fhe_and_is_reproducible(client: Client) -> None:
    first = client.predict(MODEL, BENCHMARK, "execute", 5, api_name="/run_audit")
    second = client.predict(MODEL, BENCHMARK, "execute", 5, api_name="/run_audit")
    for report in (first, second):
        assert set(report) >= REPORT_KEYS
        assert (report["fhe_mode"], report["n_samples"]) == ("execute", 5)
        assert 0.0 <= report["metrics"]["accuracy"] <= 1.0
        assert report["timing"]["fhe_s_per_sample"] > 0
        assert all(_is_sha256(report["transcript"][k])
                   for k in ("inputs_sha256", "evaluation_keys_sha256", "outputs_sha256"))
    # Fresh keys give other ciphertexts, the decrypted predictions are the same.
    assert first["transcript"]["inputs_sha256"] != second["transcript"]["inputs_sha256"]
    assert first["metrics"] == second["metrics"]


@pytest.mark.parametrize(("model", "benchmark", "mode", "limit", "sentence"), [
    (MODEL, OTHER_BENCHMARK, "execute", 3, f"is not meant for model '{MODEL}'"),
    ("no-such-model", BENCHMARK, "simulate", 3, "No model 'no-such-model' in this Space's zoo"),
    (MODEL, "/tmp", "simulate", 3, "No benchmark '/tmp' in this Space's zoo"),  # no paths
    ("", BENCHMARK, "simulate", 3, "Choose a model first."),
    (MODEL, BENCHMARK, "encrypt-harder", 3, "Unknown FHE mode"),
    (MODEL, BENCHMARK, "simulate", 0, "at least 1"),
])
def test_bad_requests_fail_with_one_sentence(client: Client, model: str, benchmark: str,
                                             mode: str, limit: int, sentence: str) -> None:
    with pytest.raises(Exception, match=sentence) as caught:
        client.predict(model, benchmark, mode, limit, api_name="/run_audit")
    assert "Traceback" not in str(caught.value)


def test_uploads_and_the_queue_are_bounded_with_clear_messages(
        app: tuple[Any, str], monkeypatch: pytest.MonkeyPatch) -> None:
    # Gradio's upload route (the Audit tab's benchmark table goes through it) is capped.
    too_big = ("big.bin", b"0" * (int(MAX_FILE_SIZE.removesuffix("mb")) * 1024**2 + 1))
    response = httpx.post(f"{app[1]}gradio_api/upload", files={"files": too_big})
    assert response.status_code == 413 and "maximum allowed size" in response.text
    monkeypatch.setenv(QUEUE_SIZE_ENV, "1")
    demo = build_demo()
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **launch_options())
    try:
        with closing(Client(url, verbose=False)) as client:
            jobs = [client.submit(MODEL, BENCHMARK, "execute", 30, api_name="/run_audit")
                    for _ in range(3)]  # one runs, one waits, one finds the queue full
            errors = []
            for job in jobs:
                try:
                    job.result()
                except Exception as exc:
                    errors.append(str(exc))
    finally:
        demo.close()
    assert errors == ["Queue is full! Please try again."]


def test_execute_is_capped_and_simulate_is_not(client: Client,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAX_SAMPLES_ENV, "3")
    with pytest.raises(Exception, match="limited to 3 FHE queries"):
        client.predict(MODEL, BENCHMARK, "execute", 4, api_name="/run_audit")
    report = client.predict(MODEL, BENCHMARK, "simulate", 4, api_name="/run_audit")
    assert report["n_samples"] == 4


# -- bias and interpretability ---------------------------------------------------------------


def test_run_audit_with_bias_audits_is_the_cli_report(client: Client, adult: None) -> None:
    report = client.predict(ADULT, ADULT_BENCHMARK, "simulate", 10, BIAS, api_name="/run_audit")
    assert report["audits"] == ["accuracy", *BIAS.split(",")]
    assert set(report["fairness"]) == set(report["counterfactual"]) == {"sex", "race"}
    assert report["plan"]["n_queries"] == sum(report["plan"]["queries"].values()) > 10
    direct = run_audit(ADULT, ADULT_BENCHMARK, fhe_mode="simulate", limit=10, audits=BIAS).report
    assert {**report, "timing": None} == {**direct, "timing": None}


def test_bias_audits_in_real_fhe_match_the_simulation(client: Client, adult: None) -> None:
    # A logistic regression has no bootstrapping: FHE outputs equal the simulated ones exactly.
    audits = "fairness,counterfactual"
    fhe = client.predict(ADULT, ADULT_BENCHMARK, "execute", 3, audits, 50, api_name="/run_audit")
    sim = client.predict(ADULT, ADULT_BENCHMARK, "simulate", 3, audits, api_name="/run_audit")
    assert fhe["fhe_mode"] == "execute" and _is_sha256(fhe["transcript"]["outputs_sha256"])
    assert fhe["plan"]["queries"]["counterfactual"] == sum(
        f["n_probes"] for f in fhe["counterfactual"].values())
    # Probes are shuffled before encryption: sums may differ in the last bit, key order too.
    for audit in ("fairness", "counterfactual"):
        assert _flat(fhe[audit]) == pytest.approx(_flat(sim[audit]), abs=1e-12)


@pytest.mark.parametrize(("audits", "budget", "sentence"), [
    ("fairness,importanse", None, "Unknown audit"),
    ("fairness,counterfactual", 5, "need 18 FHE queries, over the budget of 5"),
    ("fairness", 2.5, "budget must be a whole number"),
])
def test_bad_audit_requests_fail_with_one_sentence(client: Client, adult: None, audits: str,
                                                   budget: float | None, sentence: str) -> None:
    with pytest.raises(Exception, match=sentence) as caught:
        client.predict(ADULT, ADULT_BENCHMARK, "simulate", 3, audits, budget,
                       api_name="/run_audit")
    assert "Traceback" not in str(caught.value)


def test_probes_count_against_the_real_fhe_cap(client: Client, adult: None,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAX_SAMPLES_ENV, "10")  # 3 samples, but 18 queries with counterfactuals
    with pytest.raises(Exception, match=r"limited to 10 FHE queries .* needs 18"):
        client.predict(ADULT, ADULT_BENCHMARK, "execute", 3, "counterfactual",
                       api_name="/run_audit")
    monkeypatch.setenv(MAX_QUERIES_ENV, "10")
    with pytest.raises(Exception, match="limited to 10 queries on this Space, even simulated"):
        client.predict(ADULT, ADULT_BENCHMARK, "simulate", 3, "counterfactual",
                       api_name="/run_audit")
    with pytest.raises(Exception, match="no sensitive attributes"):
        client.predict(MODEL, BENCHMARK, "simulate", 3, "fairness", api_name="/run_audit")


def test_cost_is_shown_before_running(client: Client, adult: None,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MAX_SAMPLES_ENV, "100")
    estimate, cli_line = client.predict(ADULT, ADULT_BENCHMARK, ["counterfactual"], "execute",
                                        20, 0, api_name="/bias_describe")
    assert "| counterfactual probes | 100 |" in estimate and "**120**" in estimate
    assert "limited to 100 FHE queries" in estimate  # said before anything runs
    assert "--audits counterfactual" in cli_line
    estimate, _ = client.predict(ADULT, ADULT_BENCHMARK, ["fairness"], "simulate", 20, 10,
                                 api_name="/bias_describe")
    assert "over the budget of 10" in estimate


def test_bias_tab_importance_views_and_report(client: Client) -> None:
    banner, *views, reports = client.predict(MODEL, BENCHMARK, ["importance"], "simulate", 4, 0,
                                             api_name="/bias_audit")
    sections = dict(zip(("fairness", "counterfactual", "importance", "surrogate", "representation"),
                        zip(views[::2], views[1::2], strict=True), strict=True))
    plot, reading = sections["importance"]
    assert "Mode: simulation" in banner and "4 samples" in banner
    assert "simulation" in plot["label"] and plot["value"]["type"] == "matplotlib"
    assert "#### Feature importance · simulation" in reading
    assert re.search(r"\*\*Occlusion\*\* \(120 probes.*move the model's log-odds most", reading)
    assert sections["fairness"][0]["value"] is None and sections["fairness"][1] == ""
    markdown = next(Path(f) for f in reports["value"] if str(f).endswith(".md")).read_text()
    assert "## Feature importance" in markdown and "| feature | occlusion" in markdown
    saved = json.loads(next(Path(f) for f in reports["value"] if str(f).endswith(".json"))
                       .read_text())
    assert saved["importance"]["method"] == "occlusion" and saved["fhe_mode"] == "simulate"


def test_page_audit_then_verify_in_one_session(client: Client) -> None:
    banner, metrics, _plot, figures, preview, transcript, reports, verdict = client.predict(
        MODEL, BENCHMARK, "execute", 6, api_name="/audit")
    assert "Mode: real FHE (execute)" in banner and "6 samples" in banner
    assert "real FHE (execute)" in metrics["label"] and "real FHE (execute)" in figures["label"]
    assert len(bytes.fromhex(preview["value"])) == 64
    assert _is_sha256(transcript["value"]["outputs_sha256"])
    assert verdict == ""
    json_report = next(Path(f) for f in reports["value"] if str(f).endswith(".json"))
    assert json.loads(json_report.read_text())["fhe_mode"] == "execute"
    assert "Hashes match" in client.predict(3, api_name="/verify")
    assert "6 of 6 samples" in client.predict(0, api_name="/verify")


def test_a_real_fhe_audit_can_be_taken_away_and_verified_elsewhere(client: Client,
                                                                   tmp_path: Path) -> None:
    """The Space's audit bundle: unzipped anywhere, its own verify command exits 0."""
    reports = client.predict(MODEL, BENCHMARK, "execute", 5, api_name="/audit")[6]
    archive = next(Path(f) for f in reports["value"] if str(f).endswith("audit-bundle.zip"))
    shutil.unpack_archive(archive, tmp_path / "bundle")
    command = (tmp_path / "bundle" / "VERIFY.txt").read_text().strip().splitlines()[-1]
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "fhe_backend"]
    result = subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path / "bundle",
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0 and "Verified" in result.stdout, result.stderr[-2000:]
    simulated = client.predict(MODEL, BENCHMARK, "simulate", 5, api_name="/audit")[6]
    assert not any(str(f).endswith(".zip") for f in simulated["value"])


def test_two_sessions_at_once_get_their_own_results(app: tuple[Any, str]) -> None:
    url = app[1]
    with closing(Client(url, verbose=False)) as one, \
            closing(Client(url, verbose=False)) as two:
        job_one = one.submit(MODEL, BENCHMARK, "execute", 4, api_name="/audit")
        job_two = two.submit(MODEL, BENCHMARK, "simulate", 7, api_name="/audit")
        banner_one, banner_two = job_one.result()[0], job_two.result()[0]
        assert "real FHE (execute)" in banner_one and "4 samples" in banner_one
        assert "simulate" in banner_two and "7 samples" in banner_two
        assert "Hashes match" in one.predict(0, api_name="/verify")
        # Session two's latest audit is its simulation, not session one's FHE run.
        with pytest.raises(Exception, match="Run an audit in real FHE"):
            two.predict(0, api_name="/verify")


def test_closing_a_session_removes_its_files(client: Client) -> None:
    client.predict(MODEL, BENCHMARK, "simulate", 2, api_name="/audit")
    root = sessions._SESSIONS[client.session_hash].root
    assert root.is_dir()
    sessions.close_session(types.SimpleNamespace(session_hash=client.session_hash))
    assert not root.exists() and client.session_hash not in sessions._SESSIONS


# -- the Audit tab's own inputs: an uploaded table, a Hub model, the input schema ---------------


def _breast_cancer_csv(folder: Path, drop: str | None = None) -> Path:
    """The first 8 rows of the zoo benchmark as an auditor's CSV file."""
    frame = resolve_benchmark(BENCHMARK).frame.head(8)
    path = folder / "my-benchmark.csv"
    frame.drop(columns=[drop] if drop else []).to_csv(path, index=False)
    return path


def test_uploaded_csv_is_audited_instead_of_the_zoo_benchmark(client: Client,
                                                              tmp_path: Path) -> None:
    csv = _breast_cancer_csv(tmp_path)
    banner, metrics, *_ = client.predict(MODEL, BENCHMARK, "simulate", 20, handle_file(csv),
                                         "label", "sample_id", "", api_name="/audit")
    assert "my-benchmark" in banner and "8 samples" in banner and "simulation" in banner
    rows = {row[0]: row[1] for row in metrics["value"]["data"]}  # metric, value, interval
    assert 0.0 <= float(rows[render.metric_label("accuracy")]) <= 1.0
    # The upload lives in the session's folder only, not in Gradio's shared cache.
    session = sessions._SESSIONS[client.session_hash]
    assert session.upload is not None and session.upload[1].parent == session.root / "upload"
    assert not Path(session.upload[0]).exists()


def test_uploaded_csv_missing_a_column_fails_with_one_sentence(client: Client,
                                                               tmp_path: Path) -> None:
    csv = _breast_cancer_csv(tmp_path, drop="mean radius")
    with pytest.raises(Exception, match=r"lacks column.* the model needs: mean radius") as caught:
        client.predict(MODEL, BENCHMARK, "simulate", 20, handle_file(csv), "label",
                       "sample_id", "", api_name="/audit")
    assert "Traceback" not in str(caught.value)


def test_hub_model_offline_is_a_clear_sentence(client: Client,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    ref = "hf://fhe-audit-tests/no-such-model"
    with pytest.raises(Exception, match=r"not in the local Hub cache and HF_HUB_OFFLINE is set"
                                        r".*cannot be found") as caught:
        client.predict(ref, BENCHMARK, "simulate", 3, api_name="/audit")
    assert "Traceback" not in str(caught.value)
    _mode, card, schema, *_ = client.predict(ref, BENCHMARK, "simulate",
                                             api_name="/select_model")
    assert "HF_HUB_OFFLINE is set" in card and "Choose a model" in schema
    # A folder path is still refused on the public page.
    with pytest.raises(Exception, match="No model '/tmp' in this Space's zoo"):
        client.predict("/tmp", BENCHMARK, "simulate", 3, api_name="/audit")


def test_schema_panel_lists_the_model_columns(client: Client) -> None:
    _mode, _card, schema, *_ = client.predict(MODEL, BENCHMARK, "simulate",
                                              api_name="/select_model")
    columns = resolve_model(MODEL).manifest.input_schema.column_names
    assert len(columns) == 30 and "(30;" in schema
    rows = [line for line in schema.splitlines() if re.match(r"\| \d+ \|", line)]
    assert [re.search(r"`([^`]+)`", row).group(1) for row in rows] == columns
    assert "`standardize`" in schema and "`malignant`, `benign`" in schema


# -- the Hub tab (server role), with the Hub client module faked ------------------------------


def _sources(model_ref: str, _package: Any, encrypted_ref: str, _encrypted: Any) -> dict:
    return {"model": {"ref": model_ref}, "encrypted": {"ref": encrypted_ref}}


def _fake_hub(monkeypatch: pytest.MonkeyPatch, model: Any, encrypted: Any) -> None:
    """The Hub client with its downloads replaced: the page's side is what is tested here."""
    hub = types.ModuleType("fhe_backend.hub.remote")
    hub.resolve_model_ref = model
    hub.resolve_encrypted_ref = encrypted
    hub.transcript_sources = _sources
    monkeypatch.setitem(sys.modules, "fhe_backend.hub.remote", hub)


def _unreachable(ref: str) -> Any:
    raise ConnectionError(f"cannot reach {ref}")


def _not_found(ref: str) -> Any:
    raise NotFoundError(f"No Hub repository {ref!r}.")


@pytest.mark.parametrize(("model_ref", "hub", "sentence"), [
    ("", None, "Enter both references"),
    ("owner/model", None, "is not a Hub reference"),  # the real Hub client's sentence
    ("hf://owner/model", "missing", "The Hub is not reachable from this Space"),
    ("hf://owner/model", _unreachable, r"not reachable from this Space \(ConnectionError\)"),
    ("hf://owner/model", _not_found, "No Hub repository 'hf://owner/model'"),
])
def test_server_run_errors_are_sentences(client: Client, monkeypatch: pytest.MonkeyPatch,
                                         model_ref: str, hub: Any, sentence: str) -> None:
    if hub == "missing":
        monkeypatch.setitem(sys.modules, "fhe_backend.hub.remote", None)  # import fails
    elif hub is not None:
        _fake_hub(monkeypatch, hub, hub)
    with pytest.raises(Exception, match=sentence):
        client.predict(model_ref, "hf://datasets/owner/bench", api_name="/server_run")


def test_server_run_output_decrypts_with_the_shown_command(
        client: Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    package = resolve_model(MODEL)
    keys = tmp_path / "keys"
    encrypted = Auditor(package, keys).encrypt(resolve_benchmark(BENCHMARK).head(4),
                                               tmp_path / "encrypted")
    _fake_hub(monkeypatch, lambda ref: package, lambda ref: EncryptedBenchmark.load(encrypted.path))

    status, transcript, archive, command = client.predict(
        "hf://owner/model@v1", "hf://datasets/owner/bench", api_name="/server_run")
    assert "real FHE" in status and "4 samples" in status
    assert transcript["sources"] == _sources("hf://owner/model@v1", None,
                                             "hf://datasets/owner/bench", None)
    assert "KEYS" in command and "--keys" in command  # the key is never asked for

    workdir = tmp_path / "auditor"
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(workdir)
    line = next(x for x in command.splitlines() if x.startswith("python -m fhe_backend decrypt"))
    args = [str(keys) if a == "KEYS" else a for a in shlex.split(line)[3:]]
    monkeypatch.chdir(workdir)
    capsys.readouterr()
    assert cli.main([*args, "--json"]) == 0
    decrypted = json.loads(capsys.readouterr().out)
    assert (decrypted["fhe_mode"], decrypted["n_samples"]) == ("execute", 4)
    assert decrypted["transcript"]["outputs_sha256"] == transcript["outputs_sha256"]


# -- issue 15: what visitors found ----------------------------------------------------------------


def test_config_says_analytics_and_run_history_are_off(app: tuple[Any, str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    config = httpx.get(f"{app[1]}config").json()
    assert config["analytics_enabled"] is False and config["run_history"] is False
    # Off by the Space itself, not by the test environment's GRADIO_ANALYTICS_ENABLED.
    monkeypatch.delenv("GRADIO_ANALYTICS_ENABLED", raising=False)
    assert build_demo().analytics_enabled is False


def test_limit_as_text_is_accepted_or_refused_in_one_sentence(client: Client) -> None:
    report = client.predict(MODEL, BENCHMARK, "simulate", "5", api_name="/run_audit")
    assert report["n_samples"] == 5
    with pytest.raises(Exception, match="number of samples must be a whole number") as caught:
        client.predict(MODEL, BENCHMARK, "simulate", "five", api_name="/run_audit")
    assert "upstream Gradio app has raised an exception" not in str(caught.value)


def test_huge_limit_is_capped_and_says_so(client: Client) -> None:
    report = client.predict(MODEL, BENCHMARK, "simulate", 10**9, api_name="/run_audit")
    n = resolve_benchmark(BENCHMARK).n_samples
    assert report["n_samples"] == n
    assert report["limit_capped"]["requested"] == 10**9 and report["limit_capped"]["used"] == n
    uncapped = client.predict(MODEL, BENCHMARK, "simulate", 3, api_name="/run_audit")
    assert "limit_capped" not in uncapped


def test_budget_zero_means_no_budget_as_on_the_bias_tab(client: Client, adult: None) -> None:
    report = client.predict(ADULT, ADULT_BENCHMARK, "simulate", 3, "counterfactual", 0,
                            api_name="/run_audit")
    assert report["plan"]["n_queries"] > 3
    estimate, cli_line = client.predict(ADULT, ADULT_BENCHMARK, ["counterfactual"], "simulate",
                                        3, 0, api_name="/bias_describe")
    assert "budget" not in estimate and "--budget" not in cli_line


def test_negative_budget_is_said_once_without_traceback(
        client: Client, adult: None, capfd: pytest.CaptureFixture[str]) -> None:
    capfd.readouterr()
    estimate, _ = client.predict(ADULT, ADULT_BENCHMARK, ["fairness"], "simulate", 3, -5,
                                 api_name="/bias_describe")
    assert estimate.count("budget must be a whole number") == 1
    with pytest.raises(Exception, match="budget must be a whole number"):
        client.predict(ADULT, ADULT_BENCHMARK, ["fairness"], "simulate", 3, -5,
                       api_name="/bias_audit")
    assert "Traceback" not in capfd.readouterr().err


def test_hub_model_is_taken_by_run_audit_as_by_the_audit_tab(
        client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    ref = "hf://fhe-audit-tests/no-such-model"
    sentences = []
    for api_name in ("/run_audit", "/audit"):
        with pytest.raises(Exception, match="HF_HUB_OFFLINE is set") as caught:
            client.predict(ref, BENCHMARK, "simulate", 3, api_name=api_name)
        sentences.append(str(caught.value))
    assert sentences[0] == sentences[1]


def test_verify_in_a_fresh_session_says_nothing_ran(app: tuple[Any, str]) -> None:
    with closing(Client(app[1], verbose=False)) as fresh, \
            pytest.raises(Exception, match="Nothing has run in this session yet"):
        fresh.predict(0, api_name="/verify")


def test_upload_errors_name_no_server_path_and_labels_by_name(client: Client,
                                                              tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(Exception) as caught:
        client.predict(MODEL, BENCHMARK, "simulate", 5, handle_file(empty), "label", "", "",
                       api_name="/audit")
    assert "empty.csv" in str(caught.value) and "/tmp" not in str(caught.value)
    assert "fhe-audit-session" not in str(caught.value)

    frame = resolve_benchmark(BENCHMARK).frame.head(8)
    frame["label"] = (frame["label"] == "benign").astype(int)  # 0/1 instead of the names
    numeric = tmp_path / "numeric.csv"
    frame.to_csv(numeric, index=False)
    with pytest.raises(Exception, match="labels are named malignant, benign"):
        client.predict(MODEL, BENCHMARK, "simulate", 5, handle_file(numeric), "label",
                       "sample_id", "", api_name="/audit")


def test_semicolon_separated_csv_is_recognised(client: Client, tmp_path: Path) -> None:
    frame = resolve_benchmark(BENCHMARK).frame.head(6)
    path = tmp_path / "spreadsheet.csv"
    frame.to_csv(path, index=False, sep=";", decimal=",")
    banner, metrics, *_ = client.predict(MODEL, BENCHMARK, "simulate", 20, handle_file(path),
                                         "label", "sample_id", "", api_name="/audit")
    assert "spreadsheet" in banner and "6 samples" in banner
    comma = tmp_path / "comma.csv"
    frame.to_csv(comma, index=False)
    expected = client.predict(MODEL, BENCHMARK, "simulate", 20, handle_file(comma), "label",
                              "sample_id", "", api_name="/audit")[1]
    assert metrics["value"]["data"] == expected["value"]["data"]


def test_upload_sets_the_benchmark_box_slider_and_command_line(client: Client,
                                                               tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    resolve_benchmark(BENCHMARK).frame.head(8).to_csv(path, index=False)
    status, box, slider, _estimate, cli_line = client.predict(
        MODEL, "simulate", handle_file(path), "label", "sample_id", "",
        api_name="/select_upload")
    assert "8 rows" in status
    assert box["value"] == "uploaded: mine.csv" and slider["maximum"] == 8
    assert "--benchmark mine.csv" in cli_line


def test_compare_models_on_one_benchmark(client: Client) -> None:
    models = [m for m in model_ids() if BENCHMARK in __import__(
        "fhe_backend.hub.zoo", fromlist=["benchmarks_for"]).benchmarks_for(m)]
    banner, table, chart = client.predict(BENCHMARK, models, "simulate", 10,
                                          api_name="/compare")
    assert f"{len(models)} models" in banner and "simulation" in banner
    rows = [re.findall(r"<td[^>]*>([^<]*)</td>", tr) for tr in re.findall(
        r"<tr>(.*?)</tr>", table["value"])[1:]]
    assert [row[0] for row in rows] == models
    for row in rows:
        assert 0.0 <= float(row[1]) <= 1.0 and row[6] == "n/a (simulate)"
        assert row[7] == str(resolve_model(row[0]).manifest.circuit.get("pbs_count", "n/a"))
    assert chart["value"]["type"] == "matplotlib"
    # Each model's audit is in the session's History too.
    box, _ = client.predict(api_name="/history")
    titles = [c[0] for c in box["choices"]]
    assert [m for m in models if any(m in t and "from Compare" in t for t in titles)] == models
    with pytest.raises(Exception, match="Choose at least one model"):
        client.predict(BENCHMARK, [], "simulate", 10, api_name="/compare")


def test_history_reopens_this_sessions_audits(app: tuple[Any, str]) -> None:
    with closing(Client(app[1], verbose=False)) as session:
        box, note = session.predict(api_name="/history")
        assert box["choices"] == [] and "No audit has run" in note
        session.predict(MODEL, BENCHMARK, "simulate", 3, api_name="/audit")
        session.predict(MODEL, BENCHMARK, "simulate", 4, api_name="/audit")
        session.predict(MODEL, BENCHMARK, ["importance"], "simulate", 2, 0,
                        api_name="/bias_audit")
        box, note = session.predict(api_name="/history")
        titles = [c[0] for c in box["choices"]]
        assert len(titles) == 3 and box["value"] == titles[0]
        assert "bias: importance" in titles[0] and "4 samples" in titles[1]
        bias_files = session.predict(titles[0], api_name="/history_reopen")[-1]["value"]
        assert "## Feature importance" in next(
            Path(f) for f in bias_files if str(f).endswith(".md")).read_text()
        banner, _metrics, _plot, _figures, transcript, files = session.predict(
            titles[2], api_name="/history_reopen")
        assert "3 samples" in banner and transcript["value"]["fhe_mode"] == "simulate"
        saved = json.loads(next(Path(f) for f in files["value"]
                                if str(f).endswith(".json")).read_text())
        assert saved["n_samples"] == 3


def test_share_link_query_names_the_tab_and_its_inputs(client: Client) -> None:
    from fhe_backend.ui import links

    link = links.parse({"tab": "bias", "fhe": "nope", "samples": "x"}, ["audit", "bias"])
    assert link.tab == "bias" and link.fhe is None and link.samples is None
    assert any("FHE mode 'nope'" in w for w in link.warnings)
    assert links.query("audit", {"model": MODEL, "benchmark": BENCHMARK, "fhe": "simulate",
                                 "samples": 9.0}) == (
        f"?tab=audit&model={MODEL}&benchmark={BENCHMARK}&fhe=simulate&samples=9")
    # An upload stays in its session: a link names no benchmark for it.
    assert "benchmark" not in links.query("audit", {"model": MODEL,
                                                    "benchmark": "uploaded: mine.csv"})


def test_hub_tab_example_runs_as_shipped(client: Client, monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    """The example is published into the local Hub cache and runs through the real Hub client,
    offline: the same path a visitor's own hf:// references take."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    model_ref, benchmark_ref, note = client.predict(api_name="/hub_example")
    assert model_ref.startswith("hf://fhe-audit-example/") and "not from huggingface.co" in note
    assert benchmark_ref.startswith("hf://datasets/fhe-audit-example/")
    assert not list(tmp_path.rglob("secret*"))  # the key was thrown away
    status, transcript, _archive, _command = client.predict(model_ref, benchmark_ref,
                                                            api_name="/server_run")
    assert "real FHE" in status and "5 samples" in status
    assert _is_sha256(transcript["outputs_sha256"])
    assert client.predict(api_name="/hub_example")[:2] == (model_ref, benchmark_ref)  # cached


def test_a_closed_tabs_folder_goes_when_its_running_job_ends(tmp_path, monkeypatch):
    """The unload removes a session's folder; a job still running in it (its stream open, or
    between progress steps) keeps it until the job ends and GRACE_S more, so nothing deletes
    files under Concrete or the server mid-run, nor the result files Gradio reads after the
    handler returns (a sealed audit in the Space lost its report that way when an unload came
    mid-run)."""
    from types import SimpleNamespace

    from fhe_backend.ui import sessions

    request = SimpleNamespace(session_hash="tab-closing-mid-job")
    session = sessions.session_for(request)
    (session.root / "audit").mkdir()
    with sessions.job(session):
        sessions.close_session(request)
        assert session.closed.is_set() and (session.root / "audit").is_dir()
    assert (session.root / "audit").is_dir()  # its result is delivered after the job returns
    monkeypatch.setattr(sessions, "GRACE_S", -1)
    sessions.session_for(SimpleNamespace(session_hash="another-tab"))  # sessions are swept
    assert not session.root.exists()
    idle = sessions.session_for(SimpleNamespace(session_hash="tab-closing-idle"))
    sessions.close_session(SimpleNamespace(session_hash="tab-closing-idle"))
    assert not idle.root.exists()
