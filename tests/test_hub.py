"""Hub references, publishing and discovery, offline.

The real ``huggingface_hub`` code paths (``snapshot_download``, cards) run against a Hub cache
built in a temp dir from the ``publish-* --dry-run`` folders: ``models--OWNER--NAME/refs/main``
holds a commit sha (no trailing newline) and ``snapshots/<sha>/`` the files, with
``HF_HUB_OFFLINE=1``. The end-to-end audit is real FHE on a handful of samples.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import huggingface_hub
import pytest
from huggingface_hub import DatasetCard, ModelCard, constants
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import httpx
from support import FAST_BENCHMARK, FAST_MODEL, lay_out

from fhe_backend import cli
from fhe_backend.errors import HubError, IntegrityError, PublishError
from fhe_backend.formats.artifacts import (
    CIPHERTEXTS,
    EVALUATION_KEYS,
    MANIFEST,
    EncryptedBenchmark,
    ModelPackage,
    RunResult,
    read_json,
    write_ciphertexts,
    write_json,
)
from fhe_backend.formats.hashing import sha256_bytes, sha256_file
from fhe_backend.hub import remote as hub
from fhe_backend.hub.publish import publish_benchmark, publish_run
from fhe_backend.hub.zoo import assets_dir, benchmarks_dir, models_dir

REPO = Path(__file__).resolve().parent.parent
N_SAMPLES = 5
MODEL_SHA = "a1" * 20
BENCH_SHA = "b2" * 20
MODEL_REF = "hf://o/model"
BENCH_REF = "hf://datasets/o/bench"


def run_cli(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capfd.readouterr()
    code = cli.main(list(args))
    out, err = capfd.readouterr()
    return code, out, err


def last_error(err: str) -> str:
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: "), line
    return line


class Setup:
    """Everything the tests share: keys, encrypted benchmark, dry-run folders, the cache."""

    def __init__(self, root: Path, cache: Path):
        self.root, self.cache = root, cache
        self.keys, self.enc = root / "keys", root / "enc"
        self.model_dry, self.bench_dry = root / "dry-model", root / "dry-bench"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    """Offline Hub cache; keygen + encrypt with the CLI; publish --dry-run; lay out as a cache."""
    root = tmp_path_factory.mktemp("hub")
    s = Setup(root, root / "hf-cache")
    with pytest.MonkeyPatch.context() as mp:
        # Set for subprocesses (read at import) and patched for this process.
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_HUB_CACHE", str(s.cache))
        mp.setattr(constants, "HF_HUB_OFFLINE", True)
        mp.setattr(constants, "HF_HUB_CACHE", str(s.cache))
        for args in (
            ["keygen", "--model", FAST_MODEL, "--keys", str(s.keys)],
            ["encrypt", "--model", FAST_MODEL, "--benchmark", FAST_BENCHMARK, "--keys",
             str(s.keys), "--out", str(s.enc), "--limit", str(N_SAMPLES)],
            ["publish-model", "--model", FAST_MODEL, "--repo", "o/model", "--dry-run",
             "--out", str(s.model_dry)],
            ["publish-benchmark", "--encrypted", str(s.enc), "--repo", "o/bench", "--dry-run",
             "--out", str(s.bench_dry)],
        ):
            assert cli.main(args) == 0, args
        lay_out(s.cache, "model", "o/model", s.model_dry, MODEL_SHA, refs=("main", "v1"))
        lay_out(s.cache, "dataset", "o/bench", s.bench_dry, BENCH_SHA)
        yield s


@pytest.fixture(scope="module")
def hub_run(setup: Setup) -> tuple[Path, dict]:
    """The server role in its own process, from Hub references only."""
    out = setup.root / "run"
    result = subprocess.run(
        [sys.executable, "-m", "fhe_backend", "run", "--model", MODEL_REF, "--encrypted",
         BENCH_REF, "--out", str(out), "--json"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    return out, json.loads(result.stdout)


def secret_key_bytes(keys: Path) -> bytes:
    return next(keys.glob("*/cache/*/secretKey_*")).read_bytes()


# -- published folders and cards -------------------------------------------------------------


def test_model_folder_and_card(setup: Setup, fast_package: ModelPackage) -> None:
    sealed = {n for n in fast_package.manifest.files if n.startswith("sealed_")}
    assert {p.name for p in setup.model_dry.iterdir()} == {
        "README.md", MANIFEST, "client.zip", "server.zip", *sealed}
    assert ModelPackage.load(setup.model_dry).fingerprint == fast_package.fingerprint
    data = ModelCard.load(setup.model_dry / "README.md").data.to_dict()
    assert {"fhe-audit", "concrete-ml"} <= set(data["tags"])
    assert data["library_name"] == "concrete-ml" and data["license"]
    meta = data["fhe_audit"]
    assert meta["model_fingerprint"] == fast_package.fingerprint
    assert meta["model_id"] == FAST_MODEL and meta["versions"]["concrete-ml"] == "1.9.0"


def test_benchmark_folder_card_and_datasets(setup: Setup, tmp_path: Path) -> None:
    assert {p.name for p in setup.bench_dry.iterdir()} == {
        "README.md", MANIFEST, CIPHERTEXTS, EVALUATION_KEYS}
    manifest = EncryptedBenchmark.load(setup.bench_dry).manifest
    data = DatasetCard.load(setup.bench_dry / "README.md").data.to_dict()
    assert {"fhe-audit", "concrete-ml"} <= set(data["tags"])
    assert data["license"] == "cc-by-4.0"  # inherited from the plaintext benchmark
    meta = data["fhe_audit"]
    assert meta["model_fingerprint"] == manifest.model_fingerprint
    assert meta["key_fingerprint"] == manifest.key_fingerprint
    assert meta["n_samples"] == N_SAMPLES and meta["versions"] == manifest.versions
    assert data["configs"][0]["data_files"] == [{"split": "test", "path": CIPHERTEXTS}]
    # Both ways a Hub user loads it: explicit Parquet files, and the card's configs.
    direct = datasets.load_dataset("parquet", data_files=str(setup.bench_dry / CIPHERTEXTS),
                                   split="train", cache_dir=str(tmp_path))
    by_card = datasets.load_dataset(str(setup.bench_dry), cache_dir=str(tmp_path))["test"]
    for split in (direct, by_card):
        assert split.num_rows == N_SAMPLES
        assert split.features["ciphertext"].dtype == "binary"
        assert isinstance(split[0]["ciphertext"], bytes)


# -- audit from hf:// references -------------------------------------------------------------


def test_run_records_resolved_commits(hub_run: tuple[Path, dict]) -> None:
    out, printed = hub_run
    sources = RunResult.load(out).transcript.sources
    assert sources == printed["sources"]
    assert sources["model"] == {"ref": MODEL_REF, "repo": "o/model", "repo_type": "model",
                                "revision": "main", "sha": MODEL_SHA}
    assert sources["encrypted"]["sha"] == BENCH_SHA
    assert sources["encrypted"]["repo_type"] == "dataset"


def test_decrypt_and_verify_with_hub_refs(setup: Setup, hub_run: tuple[Path, dict],
                                          capfd: pytest.CaptureFixture[str]) -> None:
    out, _ = hub_run
    code, stdout, err = run_cli(capfd, "decrypt", "--run", str(out), "--keys", str(setup.keys),
                                "--benchmark", FAST_BENCHMARK, "--model", MODEL_REF, "--json")
    assert code == 0, err
    report = json.loads(stdout)
    assert report["n_samples"] == N_SAMPLES and report["n_failed"] == 0
    assert report["metrics"]["accuracy"] >= 0.6  # the model is ~96% accurate
    code, stdout, err = run_cli(capfd, "verify", "--model", MODEL_REF, "--encrypted", BENCH_REF,
                                "--run", str(out))
    assert code == 0 and "Verified" in stdout, err


def test_pinned_revisions_and_cache_reuse(setup: Setup) -> None:
    by_sha = hub.resolve_model_ref(f"{MODEL_REF}@{MODEL_SHA}")
    by_tag = hub.resolve_model_ref(f"{MODEL_REF}@v1")
    assert by_sha.path == by_tag.path == hub.resolve_model_ref(MODEL_REF).path
    assert hub.source_of(f"{MODEL_REF}@v1", by_tag.path)["revision"] == "v1"
    assert hub.source_of(FAST_MODEL, by_tag.path) is None  # zoo ids are not Hub sources


def test_publish_run_with_metrics(setup: Setup, hub_run: tuple[Path, dict],
                                  capfd: pytest.CaptureFixture[str]) -> None:
    out, transcript = hub_run
    metrics = setup.root / "run-metrics.json"
    metrics.write_text(json.dumps({"metrics": {"accuracy": 0.8},
                                   "transcript": {"outputs_sha256": transcript["outputs_sha256"]}}))
    dry = setup.root / "dry-run"
    code, stdout, err = run_cli(capfd, "publish-run", "--run", str(out), "--repo", "o/run",
                                "--metrics", str(metrics), "--dry-run", "--out", str(dry),
                                "--json")
    assert code == 0, err
    printed = json.loads(stdout)
    assert printed["ref"] == "hf://datasets/o/run" and printed["url"] is None
    assert set(printed["files"]) == {"README.md", "transcript.json", "outputs.parquet",
                                     "metrics.json"}
    assert {p.name for p in dry.iterdir()} == set(printed["files"])
    meta = DatasetCard.load(dry / "README.md").data.to_dict()["fhe_audit"]
    assert meta["outputs_sha256"] == transcript["outputs_sha256"]
    assert meta["metrics"] == {"accuracy": 0.8} and meta["n_samples"] == N_SAMPLES
    assert meta["sources"]["model"]["sha"] == MODEL_SHA
    other = setup.root / "other-metrics.json"
    other.write_text(json.dumps({"metrics": {}, "transcript": {"outputs_sha256": "f" * 64}}))
    with pytest.raises(PublishError, match="another run"):
        publish_run(out, "o/run", metrics=other, dry_run=True, out=setup.root / "dry-run-2")


# -- errors: one sentence each, nothing half-downloaded used ---------------------------------


def test_unknown_repo_and_missing_revision(setup: Setup,
                                           capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(HubError, match="not in the local Hub cache"):
        hub.resolve_model_ref("hf://o/unknown")
    with pytest.raises(HubError, match="Revision 'v9' of the model repo o/model"):
        hub.resolve_model_ref(f"{MODEL_REF}@v9")
    code, _, err = run_cli(capfd, "run", "--model", "hf://o/unknown", "--encrypted", BENCH_REF,
                           "--out", str(setup.root / "never"))
    assert code == cli.EXIT_ERROR and "o/unknown" in last_error(err)
    assert not (setup.root / "never").exists()


@pytest.mark.parametrize("ref, message", [
    ("hf://o", "not a Hub reference"),
    ("hf://spaces/o/x", "not a Hub reference"),
    ("hf://o/model@", "not a Hub reference"),
    (BENCH_REF, "names a dataset repo"),
])
def test_malformed_refs(ref: str, message: str) -> None:
    with pytest.raises(HubError, match=message):
        hub.resolve_model_ref(ref)


def test_repo_without_the_expected_files(setup: Setup, tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("not a model\n")
    lay_out(setup.cache, "model", "o/empty", tmp_path, "c3" * 20)
    with pytest.raises(HubError, match=r"not a model package: the repo has no manifest\.json"):
        hub.resolve_model_ref("hf://o/empty")


def test_half_downloaded_snapshot_is_refused(setup: Setup, tmp_path: Path) -> None:
    """A download that stopped midway: the tree listing names files the snapshot lacks."""
    shutil.copy(setup.model_dry / MANIFEST, tmp_path / MANIFEST)
    sha = "d4" * 20
    storage = lay_out(setup.cache, "model", "o/partial", tmp_path, sha).parent.parent
    files = {name: {"size": 1, "blob_id": "0" * 40} for name in hub.MODEL_FILES}
    (storage / "trees").mkdir()
    (storage / "trees" / f"{sha}.json").write_text(
        json.dumps({"format_version": 1, "files": files}))
    with pytest.raises(HubError, match="incomplete"):
        hub.resolve_model_ref("hf://o/partial")


def test_tampered_file_is_refused(setup: Setup, tmp_path: Path) -> None:
    folder = tmp_path / "bench"
    shutil.copytree(setup.bench_dry, folder)
    rows = EncryptedBenchmark.load(folder).ciphertexts()
    rows[0] = (rows[0][0], bytes(len(rows[0][1])))
    write_ciphertexts(folder / CIPHERTEXTS, rows)  # the manifest keeps the old hash
    lay_out(setup.cache, "dataset", "o/tampered", folder, "e5" * 20)
    with pytest.raises(IntegrityError, match="tampered") as info:
        hub.resolve_encrypted_ref("hf://datasets/o/tampered")
    assert "hf://datasets/o/tampered" in str(info.value)
    assert str(setup.cache) not in str(info.value)


def test_benchmark_for_another_model(setup: Setup, tmp_path: Path,
                                     capfd: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "bench"
    shutil.copytree(setup.bench_dry, folder)
    manifest = read_json(folder / MANIFEST, "test")
    write_json(folder / MANIFEST, {**manifest, "model_id": "someone-else",
                                   "model_fingerprint": "0" * 64})
    lay_out(setup.cache, "dataset", "o/other", folder, "f6" * 20)
    code, _, err = run_cli(capfd, "run", "--model", MODEL_REF, "--encrypted",
                           "hf://datasets/o/other", "--out", str(tmp_path / "run"))
    assert code == cli.EXIT_ERROR
    assert "was encrypted for model 'someone-else'" in last_error(err)


@pytest.mark.parametrize("status, why", [(None, "timeout"), (429, "rate limited"),
                                         (503, "HTTP 503")])
def test_transient_failures_retry_then_give_up(monkeypatch: pytest.MonkeyPatch,
                                               status: int | None, why: str) -> None:
    calls, waits = [], []

    def failing(*args: object, **kwargs: object) -> str:
        calls.append(args)
        request = httpx.Request("GET", "https://huggingface.co/api/models/o/slow")
        if status is None:
            raise httpx.ReadTimeout("timed out", request=request)
        raise HfHubHTTPError("busy", response=httpx.Response(status, request=request))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", failing)
    monkeypatch.setattr(hub.time, "sleep", waits.append)
    with pytest.raises(HubError, match=f"{why}.*after {hub.ATTEMPTS} attempts"):
        hub.resolve_model_ref("hf://o/slow")
    assert len(calls) == hub.ATTEMPTS and waits == [2.0, 4.0]


# -- publishing refuses secrets and plaintext ------------------------------------------------


def _with_extra(src: Path, dst: Path, name: str, directory: bool = False) -> Path:
    shutil.copytree(src, dst)
    if directory:
        (dst / name).mkdir()
    else:
        (dst / name).write_text("{}")
    return dst


@pytest.mark.parametrize("name, directory, message", [
    ("keyset.json", False, "secret key directory"),
    ("cache", True, "secret key directory"),
    ("secretKey_0", False, "secret key directory"),
    ("benchmark.json", False, "plaintext benchmark"),
    ("data.parquet", False, "plaintext benchmark"),
])
def test_publish_refuses_secret_and_plaintext_folders(setup: Setup, tmp_path: Path, name: str,
                                                      directory: bool, message: str) -> None:
    folder = _with_extra(setup.enc, tmp_path / "enc", name, directory)
    out = tmp_path / "dry"
    with pytest.raises(PublishError, match=message):
        publish_benchmark(str(folder), "o/bench", dry_run=True, out=out)
    assert not out.exists()


def test_publish_refuses_key_dir_and_plaintext_benchmark(setup: Setup,
                                                         capfd: pytest.CaptureFixture[str]
                                                         ) -> None:
    key_dir = next(p for p in setup.keys.iterdir() if p.is_dir())
    for source, message in ((key_dir, "secret key directory"),
                            (benchmarks_dir() / FAST_BENCHMARK, "plaintext benchmark")):
        code, _, err = run_cli(capfd, "publish-benchmark", "--encrypted", str(source), "--repo",
                               "o/bench", "--dry-run", "--out", str(setup.root / "refused"))
        assert code == cli.EXIT_ERROR and message in last_error(err)
    assert not (setup.root / "refused").exists()


def test_publish_refuses_secret_key_bytes(setup: Setup, tmp_path: Path) -> None:
    """A secret key smuggled in as the evaluation keys, with a consistent manifest."""
    folder = tmp_path / "enc"
    shutil.copytree(setup.enc, folder)
    fake = b"\x07\x00\x01" + secret_key_bytes(setup.keys)  # misaligned on purpose
    (folder / EVALUATION_KEYS).write_bytes(fake)
    manifest = read_json(folder / MANIFEST, "test")
    manifest["files"][EVALUATION_KEYS] = sha256_file(folder / EVALUATION_KEYS)
    manifest["key_fingerprint"] = sha256_bytes(fake)
    write_json(folder / MANIFEST, manifest)
    EncryptedBenchmark.load(folder)  # a well-formed benchmark, apart from the secret
    with pytest.raises(PublishError, match="looks like a Concrete secret key"):
        publish_benchmark(str(folder), "o/bench", dry_run=True, out=tmp_path / "dry")
    assert not (tmp_path / "dry").exists()


def test_publish_refuses_secret_key_in_metrics(setup: Setup, hub_run: tuple[Path, dict],
                                               tmp_path: Path) -> None:
    out, _ = hub_run
    raw = secret_key_bytes(setup.keys)
    bits = [int.from_bytes(raw[i:i + 8], "little") for i in range(96, len(raw) - 7, 8)]
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"metrics": {}, "notes": [b for b in bits if b <= 1]}))
    with pytest.raises(PublishError, match="secret key"):
        publish_run(out, "o/run", metrics=metrics, dry_run=True, out=tmp_path / "dry")


def test_publish_options(setup: Setup, tmp_path: Path) -> None:
    with pytest.raises(PublishError, match="--dry-run needs --out"):
        publish_benchmark(str(setup.enc), "o/bench", dry_run=True)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(PublishError, match="not empty"):
        publish_benchmark(str(setup.enc), "o/bench", dry_run=True, out=tmp_path / "full")
    with pytest.raises(HubError, match="not a Hub repo id"):
        publish_benchmark(str(setup.enc), "no-owner", dry_run=True, out=tmp_path / "dry")
    with pytest.raises(HubError, match="Could not upload to hf://datasets/o/bench"):
        publish_benchmark(str(setup.enc), "o/bench", out=tmp_path / "offline")  # HF_HUB_OFFLINE
    assert not (tmp_path / "offline").exists()


def test_upload_sends_exactly_the_dry_run_folder(setup: Setup, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capfd: pytest.CaptureFixture[str]) -> None:
    calls: dict[str, dict] = {}

    def create_repo(self: object, repo_id: str, **kwargs: object) -> None:
        calls["create_repo"] = {"repo_id": repo_id, **kwargs}

    def upload_folder(self: object, **kwargs: object) -> str:
        folder = Path(str(kwargs["folder_path"]))
        calls["upload_folder"] = {**kwargs, "files": {
            p.name: sha256_file(p) for p in folder.iterdir()}}
        return "https://huggingface.co/datasets/o/bench/commit/1234"

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    code, stdout, err = run_cli(capfd, "publish-benchmark", "--encrypted", str(setup.enc),
                                "--repo", "o/bench", "--private", "--json")
    assert code == 0, err
    printed = json.loads(stdout)
    assert printed["url"].endswith("/commit/1234") and printed["folder"] is None
    assert calls["create_repo"] == {"repo_id": "o/bench", "repo_type": "dataset",
                                    "private": True, "exist_ok": True}
    assert calls["upload_folder"]["repo_type"] == "dataset"
    dry = {p.name: sha256_file(p) for p in setup.bench_dry.iterdir()}
    assert calls["upload_folder"]["files"] == printed["files"] == dry


# -- discovery -------------------------------------------------------------------------------


def test_registry_file_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FHE_AUDIT_ASSETS", str(REPO / "assets"))
    registry = hub.read_registry()
    assert isinstance(registry["models"], list) and isinstance(registry["benchmarks"], list)


def test_listings_offline_use_the_registry(setup: Setup, fast_package: ModelPackage,
                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capfd: pytest.CaptureFixture[str]) -> None:
    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "models").symlink_to(models_dir())
    (assets / "benchmarks").symlink_to(benchmarks_dir())
    (assets / "registry.json").write_text(json.dumps({
        "format": "fhe-audit/registry", "schema_version": 1,
        "models": [{"ref": MODEL_REF, "description": "logreg on the Hub"}],
        "benchmarks": [
            {"ref": BENCH_REF, "model_fingerprint": fast_package.fingerprint, "n_samples": 5},
            {"ref": "hf://datasets/o/elsewhere", "model_fingerprint": "0" * 64},
        ]}))
    monkeypatch.setenv("FHE_AUDIT_ASSETS", str(assets))
    assert assets_dir() == assets

    code, stdout, err = run_cli(capfd, "models", "--json")
    assert code == 0
    models = {m["id"]: m for m in json.loads(stdout)["models"]}
    assert models[FAST_MODEL]["source"] == "zoo" and models[MODEL_REF]["source"] == "registry"
    assert err.strip().splitlines() == [
        "Hub offline (HF_HUB_OFFLINE is set): listing the zoo and the registry only."]

    code, stdout, err = run_cli(capfd, "benchmarks", "--model", FAST_MODEL, "--json")
    assert code == 0 and len(err.strip().splitlines()) == 1
    ids = {b["id"] for b in json.loads(stdout)["benchmarks"]}
    assert FAST_BENCHMARK in ids and BENCH_REF in ids
    assert "hf://datasets/o/elsewhere" not in ids and "digits-test" not in ids

    code, stdout, _ = run_cli(capfd, "benchmarks", "--json")
    assert "hf://datasets/o/elsewhere" in {b["id"] for b in json.loads(stdout)["benchmarks"]}
