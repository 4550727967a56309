"""The Hub tab's example: the zoo's fast model and a few of its benchmark's samples, encrypted
and published by this Space into its own local Hub cache (not to huggingface.co), so that a
first visitor can press Run there. The encryption key is thrown away at once: the example shows
the server role only, and its outputs can be decrypted by no one."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
from pathlib import Path

from huggingface_hub import constants

from ..auditor.client import Auditor
from ..hub.publish import publish_benchmark, publish_model
from ..hub.references import resolve_benchmark, resolve_model

OWNER = "fhe-audit-example"  # no such account on huggingface.co: the repos live in the cache
MODEL, BENCHMARK, N_SAMPLES = "breast-cancer-logreg", "breast-cancer-test", 5
_LOCK = threading.Lock()


def refs() -> tuple[str, str]:
    return (f"hf://{OWNER}/{MODEL}", f"hf://datasets/{OWNER}/{BENCHMARK}-encrypted")


def _lay_out(repo_type: str, repo_id: str, folder: Path) -> None:
    """``folder`` as the ``main`` commit of a repo in the Hub cache, as a download leaves it;
    the commit id is the hash of its files, so the same example is the same commit."""
    digest = hashlib.sha1()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    storage = Path(constants.HF_HUB_CACHE) / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snapshot = storage / "snapshots" / digest.hexdigest()
    if not snapshot.is_dir():
        shutil.copytree(folder, snapshot)
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    (storage / "refs" / "main").write_text(digest.hexdigest())


def ensure_example() -> tuple[str, str]:
    """Publishes the example into the local Hub cache once per process; its two references."""
    model_ref, benchmark_ref = refs()
    with _LOCK:
        cached = Path(constants.HF_HUB_CACHE) / f"datasets--{OWNER}--{BENCHMARK}-encrypted"
        if (cached / "refs" / "main").is_file():
            return model_ref, benchmark_ref
        with tempfile.TemporaryDirectory(prefix="fhe-audit-example-") as tmp:
            root = Path(tmp)
            package = resolve_model(MODEL)
            encrypted = Auditor(package, root / "keys").encrypt(
                resolve_benchmark(BENCHMARK).head(N_SAMPLES), root / "encrypted")
            shutil.rmtree(root / "keys")  # nobody decrypts the example: server role only
            publish_model(MODEL, f"{OWNER}/{MODEL}", dry_run=True, out=root / "model")
            publish_benchmark(str(encrypted.path), f"{OWNER}/{BENCHMARK}-encrypted",
                              dry_run=True, out=root / "benchmark")
            _lay_out("model", f"{OWNER}/{MODEL}", root / "model")
            _lay_out("dataset", f"{OWNER}/{BENCHMARK}-encrypted", root / "benchmark")
    return model_ref, benchmark_ref
