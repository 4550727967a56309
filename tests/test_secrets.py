"""No secret key material leaves the auditor's key directory.

The secret material is every file of Concrete's keyset cache (``KEYS/<fp16>/cache/…``, where
``secretKey_*`` lives), from the auditor's own key directory (command line) and from the demo's
throwaway key directories (the Space). Each place a run writes or sends something is searched
for every 64-byte window of those files, raw and as hex, and scanned with the publish command's
own secret-key detector: encrypted benchmarks, run folders, published folders, log lines and
console output, the app's API payloads and downloaded files, and the reports. Both searches are
first shown to find a planted key.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from gradio_client import Client
from support import FAST_BENCHMARK, FAST_MODEL, Blobs, Secrets, file_blobs

from fhe_backend import cli
from fhe_backend.auditor.client import DemoKeys
from fhe_backend.hub.zoo import model_ids
from fhe_backend.ui import build_demo, launch_options, sessions


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextmanager
def captured_output(into: Blobs, label: str) -> Iterator[None]:
    """Appends to ``into`` what went to file descriptors 1 and 2 (Concrete's C++ runtime writes
    there directly) and every log record, at DEBUG level."""
    records, root = _Records(), logging.getLogger()
    old_level, streams = root.level, (sys.stdout, sys.stderr)
    root.addHandler(records)
    root.setLevel(logging.DEBUG)
    for stream in streams:
        stream.flush()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        saved = [os.dup(1), os.dup(2)]
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        # Python's streams straight onto the descriptors, as in a process of its own (pytest's
        # capture replaces them with its own files).
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.stdout, sys.stderr = streams
            for fd, old in zip((1, 2), saved, strict=True):
                os.dup2(old, fd)
                os.close(old)
            root.removeHandler(records)
            root.setLevel(old_level)
            for name, sink in (("stdout", out), ("stderr", err)):
                sink.seek(0)
                into.append((f"{label}: {name}", sink.read()))
            into.append((f"{label}: log records", "\n".join(records.lines).encode()))


@dataclass
class Places:
    secrets: Secrets
    blobs: dict[str, Blobs] = field(default_factory=dict)

    def add(self, place: str, blobs: Blobs) -> None:
        self.blobs.setdefault(place, []).extend(blobs)


def _cli(console: Blobs, *args: str) -> bytes:
    """Run one command with its output captured; returns its stdout (its --json object)."""
    with captured_output(console, args[0]):
        assert cli.main(list(args)) == 0, args
    return console[-3][1]


def _cli_places(places: Places, root: Path) -> None:
    """Every role of the command line, with probes among the samples, then both publishes."""
    keys, enc, run = root / "keys", root / "encrypted", root / "run"
    console: Blobs = []
    _cli(console, "keygen", "--model", FAST_MODEL, "--keys", str(keys))
    _cli(console, "encrypt", "--model", FAST_MODEL, "--benchmark", FAST_BENCHMARK, "--keys",
         str(keys), "--out", str(enc), "--limit", "2", "--audits", "importance")
    _cli(console, "run", "--model", FAST_MODEL, "--encrypted", str(enc), "--out", str(run),
         "--json")
    decrypted = _cli(console, "decrypt", "--run", str(run), "--keys", str(keys), "--benchmark",
                     FAST_BENCHMARK, "--audits", "importance", "--json")
    audited = _cli(console, "audit", "--model", FAST_MODEL, "--benchmark", FAST_BENCHMARK,
                   "--limit", "3", "--out", str(root / "audit"), "--json")
    places.secrets.add_key_dir(keys)
    # The auditor publishes the decrypted metrics with the run.
    metrics = root / "metrics.json"
    metrics.write_bytes(decrypted)
    _cli(console, "publish-benchmark", "--encrypted", str(enc), "--repo", "o/bench",
         "--dry-run", "--out", str(root / "published-benchmark"))
    _cli(console, "publish-run", "--run", str(run), "--repo", "o/run", "--metrics",
         str(metrics), "--dry-run", "--out", str(root / "published-run"))
    places.add("encrypted benchmark", file_blobs(enc) + file_blobs(root / "audit" / "encrypted"))
    places.add("run folder", file_blobs(run) + file_blobs(root / "audit" / "run"))
    places.add("published folder", file_blobs(root / "published-benchmark")
               + file_blobs(root / "published-run"))
    places.add("log line or console output", console)
    places.add("report", [("decrypt --json", decrypted), ("audit --json", audited)])


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict | list | tuple):
        for item in value.values() if isinstance(value, dict) else value:
            yield from _strings(item)


def _downloads(result: Any, folder: Path) -> Blobs:
    """The files a client result names, downloaded into ``folder`` as a browser would."""
    return [(s, Path(s).read_bytes()) for s in _strings(result)
            if s.startswith(str(folder)) and Path(s).is_file()]


def _app_places(places: Places, root: Path) -> None:
    """The Space's endpoints in real FHE; the demo's key directories are kept to search for."""
    stash, downloads = root / "demo-keys", root / "downloads"
    close = DemoKeys.__exit__

    def keep_keys(self: DemoKeys, *exc: object) -> None:
        shutil.copytree(self.path, stash / self.path.name)
        close(self, *exc)

    console: Blobs = []
    with pytest.MonkeyPatch.context() as patch, captured_output(console, "app"):
        patch.setattr(DemoKeys, "__exit__", keep_keys)
        patch.setenv("GRADIO_TEMP_DIR", str(root / "gradio"))
        demo = build_demo()
        _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **launch_options())
        try:
            with closing(Client(url, verbose=False, download_files=str(downloads))) as client:
                results = [
                    client.predict(FAST_MODEL, FAST_BENCHMARK, "execute", 3, "importance",
                                   api_name="/run_audit"),
                    client.predict(FAST_MODEL, FAST_BENCHMARK, "execute", 4, api_name="/audit"),
                    client.predict(0, api_name="/verify"),
                    client.predict(FAST_MODEL, FAST_BENCHMARK, ["importance"], "execute", 1, 0,
                                   api_name="/bias_audit"),
                ]
                places.add("run folder", file_blobs(sessions._SESSIONS[client.session_hash].root))
        finally:
            demo.close()
    for key_dir in stash.iterdir():
        places.secrets.add_key_dir(key_dir)
    places.add("app payload", [("client result", json.dumps(r, default=str).encode())
                               for r in results])
    places.add("report", [blob for r in results for blob in _downloads(r, downloads)])
    places.add("log line or console output", console)


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> Places:
    if FAST_MODEL not in model_ids():
        pytest.skip(f"the zoo has no {FAST_MODEL}: build it, or point FHE_AUDIT_ASSETS at a zoo")
    root = tmp_path_factory.mktemp("secrets")
    found = Places(Secrets())
    _cli_places(found, root / "cli")
    _app_places(found, root / "app")
    return found


def test_the_searches_find_a_planted_key(places: Places) -> None:
    key = places.secrets.files[0].read_bytes()
    noise = secrets.token_bytes(4096)
    assert places.secrets.leak(noise) is None
    assert "window" in places.secrets.leak(noise + b"\x07" + key[100:400] + noise)
    assert "hex" in places.secrets.leak(b'{"debug": "' + key[200:400].hex().encode() + b'"}')
    bits = [int.from_bytes(key[i:i + 8], "little") for i in range(96, len(key) - 7, 8)]
    as_text = json.dumps([b for b in bits if b <= 1]).encode()
    assert "detector" in places.secrets.leak(as_text)


@pytest.mark.parametrize("place", ["encrypted benchmark", "run folder", "published folder",
                                   "log line or console output", "app payload", "report"])
def test_no_secret_key_material_in(places: Places, place: str) -> None:
    blobs = places.blobs[place]
    assert blobs, f"nothing was collected from any {place}"
    leaks = [f"{name}: {why}" for name, data in blobs if (why := places.secrets.leak(data))]
    assert not leaks, leaks
