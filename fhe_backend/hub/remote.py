"""Hugging Face Hub: references, downloads, discovery, cards and uploads.

This is the only module that imports ``huggingface_hub`` or ``datasets``, and only inside the
functions that need them, so ``import fhe_backend`` stays light and works without the Hub.

References, accepted wherever a model or an encrypted benchmark is::

    hf://OWNER/NAME[@REVISION]            a model package in a model repo
    hf://datasets/OWNER/NAME[@REVISION]   an encrypted benchmark in a dataset repo

REVISION is a branch, a tag or a commit sha (default ``main``). A repo holds the local format's
files under their local names plus a ``README.md`` card (see :mod:`fhe_backend.hub.publish`), so a
downloaded snapshot *is* the local folder: ``ModelPackage.load`` / ``EncryptedBenchmark.load``
validate it (manifest, SHA-256 of every file, versions) before any byte reaches Concrete.
Downloads go through ``snapshot_download`` into the Hub cache (``HF_HUB_CACHE``; files stream to
disk and are reused, so a second use downloads nothing), only the format's files are fetched,
and the snapshot folder's name is the commit the revision resolved to, which the transcript
records. ``HF_TOKEN`` gives access to private repos; ``HF_HUB_OFFLINE=1`` uses the cache only.

Registry (``assets/registry.json``): Hub repos the listings show even when the Hub cannot be
searched::

    {"format": "fhe-audit/registry", "schema_version": 1,
     "models":     [{"ref": "hf://OWNER/NAME", "description": "..."}],
     "benchmarks": [{"ref": "hf://datasets/OWNER/NAME", "model_fingerprint": "<sha256>",
                     "description": "..."}]}

``model_fingerprint`` is the fingerprint of the model the benchmark was encrypted for; it is what
``benchmarks --model M`` filters on. Entries may carry more keys; they are listed as they are.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ArtifactError, HubError
from ..formats.artifacts import (
    CIPHERTEXTS,
    EVALUATION_KEYS,
    MANIFEST,
    REPRESENTATION_PREFIX,
    SEALED_ZIPS,
    EncryptedBenchmark,
    ModelPackage,
    read_json,
)
from .zoo import assets_dir

HUB_PREFIX = "hf://"
DATASETS_PREFIX = "datasets/"
DEFAULT_REVISION = "main"
TAG = "fhe-audit"
REGISTRY = "registry.json"
REGISTRY_FORMAT = "fhe-audit/registry"

MODEL_FILES = (MANIFEST, "client.zip", "server.zip")
BENCHMARK_FILES = (MANIFEST, CIPHERTEXTS, EVALUATION_KEYS)

ATTEMPTS = 3
BACKOFF_S = 2.0  # waits 2 s then 4 s: enough for a rate-limit window or a blip to pass
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
PROBE_TIMEOUT_S = 3.0
SEARCH_LIMIT = 200

# Hub repo names: letters, digits, '-', '_', '.'; at most 96 characters per part.
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")
_COMMIT = re.compile(r"[0-9a-f]{40}")

T = TypeVar("T")


@dataclass(frozen=True)
class HubRef:
    ref: str
    repo_id: str
    repo_type: str  # "model" or "dataset"
    revision: str

    @property
    def kind(self) -> str:
        return "model package" if self.repo_type == "model" else "encrypted benchmark"

    @property
    def repo_label(self) -> str:
        return f"{self.repo_type} repo {self.repo_id}"


# --------------------------------------------------------------------------------------------
# References


def is_hub_ref(ref: str) -> bool:
    return ref.startswith(HUB_PREFIX)


def parse_ref(ref: str) -> HubRef:
    body = ref.removeprefix(HUB_PREFIX)
    repo_type = "dataset" if body.startswith(DATASETS_PREFIX) else "model"
    repo_id, at, revision = body.removeprefix(DATASETS_PREFIX).partition("@")
    if not is_hub_ref(ref) or not _REPO_ID.fullmatch(repo_id) or (at and not revision.strip()):
        raise HubError(f"{ref!r} is not a Hub reference; use hf://OWNER/NAME[@REVISION] for a "
                       "model or hf://datasets/OWNER/NAME[@REVISION] for an encrypted benchmark.")
    return HubRef(ref, repo_id, repo_type, revision or DEFAULT_REVISION)


def repo_ref(repo_id: str, repo_type: str) -> str:
    """The hf:// reference of a repo given as OWNER/NAME (as ``--repo`` takes it)."""
    if not _REPO_ID.fullmatch(repo_id):
        raise HubError(f"{repo_id!r} is not a Hub repo id; use OWNER/NAME.")
    return f"{HUB_PREFIX}{DATASETS_PREFIX if repo_type == 'dataset' else ''}{repo_id}"


def _expect(hub_ref: HubRef, repo_type: str) -> HubRef:
    if hub_ref.repo_type != repo_type:
        wanted = "hf://OWNER/NAME" if repo_type == "model" else "hf://datasets/OWNER/NAME"
        raise HubError(f"{hub_ref.ref} names a {hub_ref.repo_type} repo, but a "
                       f"{'model package' if repo_type == 'model' else 'benchmark'} is expected "
                       f"here ({wanted}).")
    return hub_ref


def resolve_model_ref(ref: str) -> ModelPackage:
    """Download (or reuse from the cache) and validate a model package from the Hub."""
    hub_ref = _expect(parse_ref(ref), "model")
    # Optional: the sealed circuit and any published hidden layer (a glob of their zips).
    optional = (*SEALED_ZIPS, f"{REPRESENTATION_PREFIX}*-*.zip")
    return _load(ModelPackage.load, _download(hub_ref, MODEL_FILES, optional), hub_ref)


def resolve_encrypted_ref(ref: str) -> EncryptedBenchmark:
    """Download (or reuse from the cache) and validate an encrypted benchmark from the Hub."""
    hub_ref = _expect(parse_ref(ref), "dataset")
    return _load(EncryptedBenchmark.load, _download(hub_ref, BENCHMARK_FILES), hub_ref)


def source_of(ref: str, folder: Path) -> dict[str, str] | None:
    """Where a Hub artifact came from; ``None`` for zoo ids and local paths.

    The sha is read from the snapshot folder the artifact was loaded from (the cache names it
    after the resolved commit), so it is the commit actually used even if the branch moved.
    """
    if not is_hub_ref(ref):
        return None
    hub_ref = parse_ref(ref)
    folder = Path(folder)
    if folder.parent.name != "snapshots" or not _COMMIT.fullmatch(folder.name):
        raise HubError(f"{ref} was not loaded from a Hub snapshot; its commit is unknown.")
    return {"ref": ref, "repo": hub_ref.repo_id, "repo_type": hub_ref.repo_type,
            "revision": hub_ref.revision, "sha": folder.name}


def transcript_sources(model_ref: str, package: ModelPackage, encrypted_ref: str,
                       encrypted: EncryptedBenchmark) -> dict[str, dict[str, str]]:
    """``Transcript.sources`` for a run: the Hub repos and commits of its inputs, if any."""
    found = {"model": source_of(model_ref, package.path),
             "encrypted": source_of(encrypted_ref, encrypted.path)}
    return {role: source for role, source in found.items() if source}


# --------------------------------------------------------------------------------------------
# Downloads


def _token() -> str | None:
    return os.environ.get("HF_TOKEN") or None


def _download(hub_ref: HubRef, files: tuple[str, ...], optional: tuple[str, ...] = ()) -> Path:
    """``files`` must be in the repo; ``optional`` ones (a sealed circuit) are fetched if so."""
    from huggingface_hub import snapshot_download

    folder = Path(_with_retries(
        lambda: snapshot_download(hub_ref.repo_id, repo_type=hub_ref.repo_type,
                                  revision=hub_ref.revision,
                                  allow_patterns=[*files, *optional],
                                  token=_token()),
        hub_ref, access="read"))
    missing = [name for name in files if not (folder / name).is_file()]
    if missing:
        raise HubError(f"{hub_ref.ref} is not a {hub_ref.kind}: the repo has no "
                       f"{', '.join(missing)} (commit {folder.name[:12]}).")
    return folder


def _load(load: Callable[[Path], T], folder: Path, hub_ref: HubRef) -> T:
    try:
        return load(folder)
    except ArtifactError as exc:
        # Same error class and sentence, naming the reference instead of a cache path.
        raise type(exc)(str(exc).replace(str(folder), f"{hub_ref.ref} ({folder.name[:12]})")
                        ) from exc


def _with_retries(call: Callable[[], T], hub_ref: HubRef, *, access: str) -> T:
    """Run a Hub call; retry timeouts, rate limits and server errors with backoff."""
    from huggingface_hub.errors import XetDownloadError
    from huggingface_hub.utils import httpx

    attempt = 1
    while True:
        try:
            return call()
        except (OSError, httpx.HTTPError, XetDownloadError) as exc:
            transient = _transient(exc)
            if not transient:
                raise HubError(_explain(exc, hub_ref, access)) from exc
            if attempt == ATTEMPTS:
                raise HubError(f"The Hub did not answer for {hub_ref.ref} ({transient}) after "
                               f"{ATTEMPTS} attempts; try again later.") from exc
            time.sleep(BACKOFF_S * 2 ** (attempt - 1))
            attempt += 1


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and what it was raised from (the Hub client wraps network errors)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _transient(exc: BaseException) -> str | None:
    """Why the failure may pass if retried (timeout, network, rate limit, 5xx), else None."""
    from huggingface_hub.errors import OfflineModeIsEnabled
    from huggingface_hub.utils import httpx

    for cause in _causes(exc):
        if isinstance(cause, OfflineModeIsEnabled):
            return None
        if isinstance(cause, httpx.TimeoutException | TimeoutError):
            return "timeout"
        if isinstance(cause, httpx.NetworkError | ConnectionError):
            return "network error"
        status = _status(cause)
        if status in TRANSIENT_STATUS:
            return "rate limited, HTTP 429" if status == 429 else f"HTTP {status}"
    return None


def _explain(exc: BaseException, hub_ref: HubRef, access: str) -> str:
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        IncompleteSnapshotError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(exc, RevisionNotFoundError):
        return f"The {hub_ref.repo_label} has no revision {hub_ref.revision!r} ({hub_ref.ref})."
    if isinstance(exc, GatedRepoError):
        return (f"The {hub_ref.repo_label} is gated: accept its conditions on the Hub and set "
                "HF_TOKEN to a token of that account.")
    if isinstance(exc, RepositoryNotFoundError):
        return (f"There is no {hub_ref.repo_label} on the Hub, or it is private and HF_TOKEN "
                f"does not grant {access} access ({hub_ref.ref}).")
    if isinstance(exc, IncompleteSnapshotError):
        return (f"The cached copy of {hub_ref.ref} is incomplete and the Hub cannot be reached; "
                "connect once to finish the download.")
    if isinstance(exc, LocalEntryNotFoundError):
        return _not_cached(hub_ref)
    if isinstance(exc, HfHubHTTPError):
        status = _status(exc)
        if status in (401, 403):
            return (f"The Hub refused {access} access to the {hub_ref.repo_label} (HTTP {status});"
                    f" set HF_TOKEN to a token with {access} access.")
        return f"The Hub answered HTTP {status} for {hub_ref.ref}."
    action = "download" if access == "read" else "upload to"
    detail = (str(exc).strip().splitlines() or [""])[0]  # Hub client messages span lines
    return f"Could not {action} {hub_ref.ref} ({type(exc).__name__}: {detail})."


def _not_cached(hub_ref: HubRef) -> str:
    from huggingface_hub import constants

    why = ("HF_HUB_OFFLINE is set" if constants.is_offline_mode()
           else "the Hub cannot be reached")
    folder = f"{hub_ref.repo_type}s--{hub_ref.repo_id.replace('/', '--')}"
    if (Path(constants.HF_HUB_CACHE) / folder).is_dir():
        return (f"Revision {hub_ref.revision!r} of the {hub_ref.repo_label} is not in the local "
                f"Hub cache and {why} ({hub_ref.ref}).")
    return (f"The {hub_ref.repo_label} is not in the local Hub cache and {why}, so "
            f"{hub_ref.ref} cannot be found.")


# --------------------------------------------------------------------------------------------
# Discovery: registry file and Hub search


@dataclass
class Listing:
    """Hub repos for ``models`` / ``benchmarks``; ``note`` says in one line what was skipped."""

    items: list[dict[str, Any]]
    note: str | None = None


def registry_path() -> Path:
    return assets_dir() / REGISTRY


def read_registry() -> dict[str, list[dict[str, Any]]]:
    """The registry's entries, checked; a missing registry is an empty one."""
    path = registry_path()
    if not path.is_file():
        return {"models": [], "benchmarks": []}
    data = read_json(path, "The Hub registry")
    if data.get("format") != REGISTRY_FORMAT:
        raise HubError(f"{path} is not a {REGISTRY_FORMAT} file.")
    entries = {"models": data.get("models", []), "benchmarks": data.get("benchmarks", [])}
    for key, repo_type in (("models", "model"), ("benchmarks", "dataset")):
        if not isinstance(entries[key], list):
            raise HubError(f"{path}: {key!r} must be a list.")
        for entry in entries[key]:
            _check_entry(entry, repo_type, path)
    return entries


def _check_entry(entry: Any, repo_type: str, path: Path) -> None:
    if not isinstance(entry, dict) or not isinstance(entry.get("ref"), str):
        raise HubError(f"{path}: every entry needs a 'ref' string.")
    try:
        _expect(parse_ref(entry["ref"]), repo_type)
    except HubError as exc:
        raise HubError(f"{path}: {exc}") from exc
    if repo_type == "dataset" and not isinstance(entry.get("model_fingerprint"), str):
        raise HubError(f"{path}: benchmark {entry['ref']} needs a 'model_fingerprint'.")


def discover_models() -> Listing:
    registry = [_registry_item(e) for e in read_registry()["models"]]
    found, note = _search_hub("model")
    return Listing(_dedupe(registry + found), note)


def discover_benchmarks(model_fingerprint: str | None = None) -> Listing:
    """Encrypted benchmarks of the registry and the Hub, optionally only those for one model."""
    registry = [_registry_item(e) for e in read_registry()["benchmarks"]]
    found, note = _search_hub("dataset")
    items = [i for i in _dedupe(registry + found)
             if model_fingerprint is None or i.get("model_fingerprint") == model_fingerprint]
    return Listing(items, note)


def _registry_item(entry: dict[str, Any]) -> dict[str, Any]:
    return {"id": entry["ref"], "source": "registry", "description": "", **entry}


def _dedupe(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One item per repo; the registry's (listed first) wins over a Hub search hit."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for item in items:
        hub_ref = parse_ref(item["ref"])
        if (hub_ref.repo_type, hub_ref.repo_id) not in seen:
            seen.add((hub_ref.repo_type, hub_ref.repo_id))
            kept.append(item)
    return kept


def _search_hub(repo_type: str) -> tuple[list[dict[str, Any]], str | None]:
    """Repos tagged ``fhe-audit``; when the Hub cannot be searched, no items and a note."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.utils import httpx

    skipped = "listing the zoo and the registry only"
    if constants.is_offline_mode():
        return [], f"Hub offline (HF_HUB_OFFLINE is set): {skipped}."
    if not _reachable():
        return [], f"Hub unreachable ({constants.ENDPOINT}): {skipped}."
    api = HfApi(token=_token())
    try:
        if repo_type == "model":
            infos = list(api.list_models(filter=TAG, cardData=True, limit=SEARCH_LIMIT))
        else:
            infos = list(api.list_datasets(filter=TAG, expand=["cardData"], limit=SEARCH_LIMIT))
    except (OSError, httpx.HTTPError) as exc:
        return [], f"Hub search failed ({type(exc).__name__}): {skipped}."
    return [_hub_item(info.id, repo_type, info.card_data) for info in infos
            if _REPO_ID.fullmatch(info.id)], None


def _reachable() -> bool:
    """One quick request, so an unreachable Hub costs seconds, not the client's long retries."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session, httpx

    try:
        get_session().head(constants.ENDPOINT, timeout=PROBE_TIMEOUT_S)
    except (OSError, httpx.HTTPError):
        return False
    return True


def _hub_item(repo_id: str, repo_type: str, card_data: Any) -> dict[str, Any]:
    meta = (card_data.get("fhe_audit") if card_data is not None else None) or {}
    ref = repo_ref(repo_id, repo_type)
    item = {"id": ref, "ref": ref, "source": "hub", "description": str(meta.get("description", "")),
            "model_id": meta.get("model_id")}
    if repo_type == "model":
        return {**item, "fingerprint": meta.get("model_fingerprint")}
    return {**item, "model_fingerprint": meta.get("model_fingerprint"),
            "n_samples": meta.get("n_samples")}


# --------------------------------------------------------------------------------------------
# Cards and uploads (used by fhe_backend.hub.publish)


def save_card(path: Path, repo_type: str, metadata: dict[str, Any], body: str) -> None:
    """Write a ``ModelCard`` / ``DatasetCard``: YAML metadata then the markdown body."""
    from huggingface_hub import DatasetCard, DatasetCardData, ModelCard, ModelCardData

    if repo_type == "model":
        ModelCard(f"---\n{ModelCardData(**metadata).to_yaml()}\n---\n\n{body}").save(path)
    else:
        DatasetCard(f"---\n{DatasetCardData(**metadata).to_yaml()}\n---\n\n{body}").save(path)


def upload_folder(folder: Path, repo_id: str, repo_type: str, *, private: bool,
                  message: str) -> str:
    """Create the repo if needed and make its files exactly ``folder``; returns the commit URL."""
    from huggingface_hub import HfApi

    hub_ref = parse_ref(repo_ref(repo_id, repo_type))
    api = HfApi(token=_token())
    _with_retries(lambda: api.create_repo(repo_id, repo_type=repo_type, private=private,
                                          exist_ok=True), hub_ref, access="write")
    # delete_patterns="*": files of an earlier publication that this folder lacks are removed
    # in the same commit, so the repo never mixes two publications.
    commit = _with_retries(lambda: api.upload_folder(
        repo_id=repo_id, repo_type=repo_type, folder_path=str(folder), commit_message=message,
        delete_patterns="*"), hub_ref, access="write")
    return str(getattr(commit, "commit_url", commit))



# --------------------------------------------------------------------------------------------
# Challenges (fhe_backend.challenge): a dataset repo holding a challenge's public files


def download_challenge(ref: str, public_patterns: list[str], marker: str) -> Path:
    """Download (or reuse from the cache) a challenge's public files (``public_patterns``) from
    a dataset repo, which must hold ``marker`` (the store passes its own format's names)."""
    from huggingface_hub import snapshot_download

    PUBLIC_PATTERNS, CHALLENGE = public_patterns, marker

    hub_ref = _expect(parse_ref(ref), "dataset")
    folder = Path(_with_retries(
        lambda: snapshot_download(hub_ref.repo_id, repo_type="dataset",
                                  revision=hub_ref.revision,
                                  allow_patterns=list(PUBLIC_PATTERNS), token=_token()),
        hub_ref, access="read"))
    if not (folder / CHALLENGE).is_file():
        raise HubError(f"{ref} is not a challenge: the repo has no {CHALLENGE} "
                       f"(commit {folder.name[:12]}).")
    return folder


def upload_files(folder: Path, repo_id: str, paths: list[str], *, message: str) -> str:
    """Add or replace ``paths`` (relative to ``folder``) in a dataset repo in one commit,
    leaving its other files alone (a challenge's submissions arrive from many people)."""
    from huggingface_hub import HfApi

    hub_ref = parse_ref(repo_ref(repo_id, "dataset"))
    api = HfApi(token=_token())
    commit = _with_retries(lambda: api.upload_folder(
        repo_id=repo_id, repo_type="dataset", folder_path=str(folder), allow_patterns=paths,
        commit_message=message), hub_ref, access="write")
    return str(getattr(commit, "commit_url", commit))
