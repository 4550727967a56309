"""What a published repo's card says: YAML metadata and a plain explanation of its files.

Pure functions over the artifacts' manifests; :func:`fhe_backend.hub.remote.save_card` writes the
result
as a ``ModelCard`` / ``DatasetCard``. Every card carries the tags ``fhe-audit`` (what ``models`` /
``benchmarks`` search the Hub for) and ``concrete-ml``, the licence, and under ``fhe_audit`` the
fingerprints, sample counts and versions that let a reader match repos without downloading them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..formats.artifacts import (
    BENCHMARK_FORMAT,
    CIPHERTEXTS,
    MODEL_FORMAT,
    OUTPUTS,
    RUN_FORMAT,
    SCHEMA_VERSION,
    BenchmarkManifest,
    ModelManifest,
    Transcript,
)

TAGS = ["fhe-audit", "concrete-ml", "fhe", "privacy"]
METRICS = "metrics.json"

# Licence ids the Hub knows that our artifacts use; any other text becomes "other" + its name.
HUB_LICENSES = {"apache-2.0", "mit", "bsd-2-clause", "bsd-3-clause", "cc-by-4.0",
                "cc-by-sa-4.0", "cc-by-nc-4.0", "cc0-1.0", "gpl-3.0", "odbl", "unknown"}


@dataclass
class Card:
    metadata: dict[str, Any]
    body: str


def license_metadata(text: str) -> dict[str, str]:
    """``license`` (and ``license_name``) fields from a free-text licence like "CC BY 4.0"."""
    head = re.split(r"[(;,]", text, maxsplit=1)[0].strip()
    slug = re.sub(r"[^a-z0-9.]+", "-", head.lower()).strip("-")
    if not slug:
        return {"license": "unknown"}
    return {"license": slug} if slug in HUB_LICENSES else {"license": "other",
                                                           "license_name": slug}


def _present(fields: dict[str, Any]) -> dict[str, Any]:
    """Only the fields that apply: the card's YAML has no ``null`` entries."""
    return {key: value for key, value in fields.items() if value is not None}


def _versions(versions: dict[str, str]) -> str:
    return ", ".join(f"{name} {value}" for name, value in versions.items())


def model_card(manifest: ModelManifest, ref: str) -> Card:
    meta = {
        **license_metadata(manifest.license),
        "library_name": "concrete-ml",
        "tags": [*TAGS, "model-package"],
        "fhe_audit": _present({
            "format": MODEL_FORMAT, "schema_version": SCHEMA_VERSION,
            "model_id": manifest.model_id, "description": manifest.description,
            "model_fingerprint": manifest.fingerprint, "task": manifest.task,
            "classes": manifest.class_names, "n_features": manifest.input_schema.n_features,
            "n_validation_samples": manifest.metrics.get("n_validation"),
            "versions": manifest.versions,
        }),
    }
    body = f"""# {manifest.model_id}: model package for encrypted audits

{manifest.description}

A compiled [Concrete ML](https://github.com/zama-ai/concrete-ml) model
({_versions(manifest.versions)}), packaged so that an auditor can measure it on a test set its
owner never sees.

| file | what it is |
|---|---|
| `manifest.json` | classes, input schema, versions, and the SHA-256 of each file |
| `client.zip` | what an auditor needs to generate keys and encrypt inputs for this model |
| `server.zip` | the compiled FHE circuit a server runs on encrypted inputs |

Fingerprint (SHA-256 of `client.zip` then `server.zip`): `{manifest.fingerprint}`. Encrypted
benchmarks name this fingerprint; a server refuses benchmarks made for another model.

**This repo holds no key and no data.** Each auditor generates their own keys; only the auditor
holding the secret key can decrypt the inputs and results of their audit — not the model owner,
not the server, not the Hub.

```bash
python -m fhe_backend keygen  --model {ref} --keys KEYS
python -m fhe_backend encrypt --model {ref} --benchmark BENCH --keys KEYS --out ENC
python -m fhe_backend run     --model {ref} --encrypted ENC --out RUN
```
"""
    return Card(meta, body)


def benchmark_card(manifest: BenchmarkManifest, ref: str, licence: str) -> Card:
    meta = {
        **license_metadata(licence),
        "pretty_name": f"{manifest.benchmark_id} encrypted for {manifest.model_id}",
        "tags": [*TAGS, "encrypted-benchmark"],
        "configs": [{"config_name": "default",
                     "data_files": [{"split": "test", "path": CIPHERTEXTS}]}],
        "fhe_audit": {
            "format": BENCHMARK_FORMAT, "schema_version": SCHEMA_VERSION,
            "benchmark_id": manifest.benchmark_id,
            "benchmark_version": manifest.benchmark_version,
            "description": f"{manifest.benchmark_id} encrypted for {manifest.model_id}",
            "model_id": manifest.model_id, "model_fingerprint": manifest.model_fingerprint,
            "key_fingerprint": manifest.key_fingerprint, "keyset_id": manifest.keyset_id,
            "inputs_sha256": manifest.inputs_sha256, "n_samples": manifest.n_samples,
            "versions": manifest.versions,
        },
    }
    body = f"""# {manifest.benchmark_id}, encrypted for {manifest.model_id}

{manifest.n_samples} test samples encrypted with fully homomorphic encryption (Concrete ML,
{_versions(manifest.versions)}) for the model with fingerprint `{manifest.model_fingerprint}`.

| file | what it is |
|---|---|
| `{CIPHERTEXTS}` | one row per sample: `sample_id` (string), `ciphertext` (binary) |
| `evaluation_keys.bin` | public keys that let a server compute on the ciphertexts, not read them |
| `manifest.json` | model and key fingerprints, sample count, versions, SHA-256 of each file |

**Who can decrypt:** only the auditor holding the secret key of keyset `{manifest.keyset_id}`
(evaluation keys SHA-256 `{manifest.key_fingerprint}`). That key never left the auditor's machine.
The plaintext inputs and their labels are not in this repo; the model owner, the server running
the audit and the Hub see ciphertexts only.

```python
import datasets
ds = datasets.load_dataset("parquet", data_files="{CIPHERTEXTS}")  # or this repo's id
```

```bash
python -m fhe_backend run --model MODEL --encrypted {ref} --out RUN
```
"""
    return Card(meta, body)


def run_card(transcript: Transcript, licence: str, metrics: dict[str, Any] | None) -> Card:
    t = transcript
    meta = {
        **license_metadata(licence),
        "pretty_name": f"FHE run of {t.model_id} on {t.benchmark_id}",
        "tags": [*TAGS, "fhe-run"],
        "configs": [{"config_name": "default",
                     "data_files": [{"split": "outputs", "path": OUTPUTS}]}],
        "fhe_audit": _present({
            "format": RUN_FORMAT, "schema_version": SCHEMA_VERSION,
            "description": f"FHE run of {t.model_id} on {t.benchmark_id}",
            "model_id": t.model_id, "model_fingerprint": t.model_fingerprint,
            "benchmark_id": t.benchmark_id, "key_fingerprint": t.key_fingerprint,
            "keyset_id": t.keyset_id, "n_samples": t.n_samples, "n_failed": t.n_failed,
            "inputs_sha256": t.inputs_sha256, "outputs_sha256": t.outputs_sha256,
            "fhe_s_per_sample": t.fhe_s_per_sample, "versions": t.versions,
            "sources": t.sources,
            "metrics": (metrics or {}).get("metrics"),
        }),
    }
    decrypted = (f"`{METRICS}` holds the metrics the auditor decrypted and chose to publish."
                 if metrics else "No decrypted result is published here.")
    body = f"""# FHE run: {t.model_id} on {t.benchmark_id}

The encrypted outputs of model `{t.model_id}` (fingerprint `{t.model_fingerprint}`) evaluated in
FHE on {t.n_samples} encrypted samples of `{t.benchmark_id}` ({t.n_failed} failed,
{t.fhe_s_per_sample:.3f} s per sample), with Concrete ML ({_versions(t.versions)}).

| file | what it is |
|---|---|
| `{OUTPUTS}` | one row per sample: `sample_id` (string), encrypted output `ciphertext` (binary) |
| `transcript.json` | input, key and output hashes, per-sample timings, versions, machine |

{decrypted}

**Who can decrypt:** only the auditor holding the secret key of keyset `{t.keyset_id}`; the
outputs are ciphertexts for everyone else. FHE evaluation is deterministic, so anyone can check
the outputs by re-executing the run from the model package and the encrypted benchmark:

```bash
python -m fhe_backend verify --model MODEL --encrypted ENCRYPTED --run RUN
```
"""
    return Card(meta, body)
