"""Auditor: the only role that holds a secret key.

The auditor generates keys for one model into a key directory, encrypts a plaintext benchmark
into an encrypted benchmark (ciphertexts + evaluation keys, nothing secret), and later decrypts a
run's outputs to score them against the labels it kept.

The key directory has one sub-folder per model fingerprint, so one directory can hold keys for
several models (its layout: :mod:`fhe_backend.auditor.keydirs`).

Concrete stores the secret key unencrypted on disk: keep the key directory on the auditor's
machine, out of any published folder (the publish commands refuse folders that contain one).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import (
    ArtifactError,
    AuditError,
    CiphertextError,
    IncompleteRunError,
    MismatchError,
)
from ..formats.artifacts import (
    CIPHERTEXTS,
    EVALUATION_KEYS,
    MANIFEST,
    BenchmarkManifest,
    EncryptedBenchmark,
    ModelPackage,
    RunResult,
    installed_versions,
    now_iso,
    write_ciphertexts,
    write_json,
)
from ..formats.hashing import content_hash, sha256_bytes, sha256_file
from ..formats.progress import Progress
from ..formats.schema import check_range
from ..untrusted.processing import auditor_client_specs, processing_of
from ..untrusted.sandbox import vet
from .benchmarks import PlainBenchmark
from .keydirs import KeyDirectory, refuse_inside_key_dir
from .ledger import LEGACY_SUFFIX, SUFFIX, Ledger
from .probes import Query, QueryPlan, real_plan

LEDGERS = "ledgers"



@dataclass
class Decrypted:
    """Decrypted, dequantized outputs, each tied to the query (sample or probe) it answers."""

    queries: list[Query]
    scores: np.ndarray  # (n, n_classes) probabilities
    failed: list[Query] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)  # the plan's notes (see QueryPlan)

    @property
    def predictions(self) -> np.ndarray:
        return np.argmax(self.scores, axis=1) if len(self.scores) else np.zeros(0, dtype=int)

    @property
    def sources(self) -> list[str]:
        return [q.source for q in self.queries]

    def select(self, kind: str | None) -> Decrypted:
        """The real samples (``kind=None``) or the probes of one kind."""
        keep = [i for i, q in enumerate(self.queries) if (q.probe or {}).get("kind") == kind]
        return Decrypted([self.queries[i] for i in keep], self.scores[keep],
                         [q for q in self.failed if (q.probe or {}).get("kind") == kind],
                         self.notes)


class Auditor:
    """Keys, encryption and decryption for one model package.

    Quantization is read from ``client.zip`` as data (:mod:`.processing`); keys, encryption and
    decryption go through ``concrete.fhe.Client`` directly. Concrete ML's ``FHEModelClient``,
    which hands ``client.zip`` to skops, is never used.
    """

    circuit = "model"  # the circuit its benchmarks are encrypted for (formats/layers.py)

    def __init__(self, package: ModelPackage, keys_dir: Path, *, key_name: str | None = None):
        """``key_name``: the key directory's sub-folder for this circuit (default: the model's
        fingerprint, 16 hex digits)."""
        self.package = package
        # Read (and refused) before any key exists.
        self.processing = processing_of(package)
        if self.processing.output_kind != package.manifest.output_kind:
            raise ArtifactError(
                f"Model {package.model_id!r} declares {package.manifest.output_kind} outputs, "
                f"but its client.zip holds a {self.processing.model_class.rsplit('.', 1)[-1]}, "
                f"whose outputs are {self.processing.output_kind}.")
        self.keys = KeyDirectory(
            keys_dir, key_name or package.fingerprint[:16], lambda: auditor_client_specs(package),
            {"model_id": package.model_id, "model_fingerprint": package.fingerprint},
            f"No keys for model {package.model_id!r} in {keys_dir}; run keygen first.")
        self.dir = self.keys.dir
        self._checker: Any = None  # a keyless client that checks quantized inputs

    # -- keys ------------------------------------------------------------------------------

    def has_keys(self) -> bool:
        return self.keys.has_keys()

    def _fits(self, q: np.ndarray) -> np.ndarray:
        """``q`` if the circuit takes it as its input (shape, width, sign), checked by Concrete
        without a key (its simulated client); one sentence otherwise."""
        from concrete import fhe

        if self._checker is None:
            self._checker = fhe.Client(auditor_client_specs(self.package), is_simulated=True)
        try:
            self._checker.simulate_encrypt(q)
        except ValueError as exc:
            raise ArtifactError(f"client.zip's input quantizer makes integers the circuit does "
                                f"not take ({exc}); no key was made.") from exc
        return q

    def check_quantizers(self) -> None:
        """Refuse input quantizers whose clipped range does not fit the circuit's input, before
        any key exists (keys of a sealed or tree circuit take minutes and gigabytes)."""
        (gate,) = json.loads(auditor_client_specs(self.package).serialize())["circuits"][0][
            "inputs"]
        shape = gate["typeInfo"]["lweCiphertext"]["abstractShape"]["dimensions"]
        self.quantize(np.zeros(shape))  # array parameters that do not broadcast
        inputs = self.processing.inputs
        per_feature = self.processing.family.per_feature
        if any(q.no_clipping or q.n_bits is None for q in inputs):
            return  # unclipped: each sample is checked as it is quantized
        for end in (0, 1):
            extremes = [(2 ** q.n_bits - 1 - q.offset) if end else (-q.offset + int(q.is_narrow))
                        for q in inputs]
            q = np.full(shape, extremes[0], dtype=np.int64)
            if per_feature and len(inputs) == shape[-1]:
                q[..., :] = extremes
            self._fits(q)

    def keygen(self) -> bytes:
        """Create (or reuse) this model's keys; returns the serialized evaluation keys. The input
        quantizers are checked against the circuit first: a bad one is refused before any key."""
        if not self.has_keys():
            self.check_quantizers()
        return self.keys.keygen()

    def evaluation_keys(self) -> bytes:
        return self.keys.evaluation_keys()

    @property
    def keyset_id(self) -> str:
        return self.keys.keyset_id

    def decrypt_output(self, output: bytes) -> np.ndarray:
        """Class probabilities, shape (1, n_classes), of one serialized output ciphertext."""
        from concrete import fhe

        self.keys.load_secret_keys()
        try:
            q = self.keys.client.decrypt(fhe.Value.deserialize(output))
        except Exception as exc:  # Concrete raises bare RuntimeErrors on foreign ciphertexts
            raise CiphertextError(f"An output cannot be decrypted ({exc!r}).") from exc
        return self.dequantize(np.asarray(q))

    # -- encryption ------------------------------------------------------------------------

    def encrypt_array(self, x: np.ndarray) -> bytes:
        """Quantize and encrypt one preprocessed sample of shape (1, *input_shape)."""
        return self._encrypt_quantized(self.quantize(x))

    def _encrypt_quantized(self, q: np.ndarray) -> bytes:
        try:
            return self.keys.client.encrypt(q).serialize()
        except ValueError as exc:  # Concrete checks the integers against the circuit's input
            raise ArtifactError(f"A quantized sample does not fit the circuit's input "
                                f"({exc}).") from exc

    def encrypt(
        self,
        benchmark: PlainBenchmark,
        out_dir: Path,
        *,
        plan: QueryPlan | None = None,
        progress: Progress[str] | None = None,
    ) -> EncryptedBenchmark:
        """Encrypt a benchmark (or a plan of samples and probes) into a new folder.

        Rows are shuffled and named with random ids; the mapping back to samples and probes is
        written to this auditor's private ledger, never into the encrypted benchmark.
        """
        self.check_range(benchmark.frame)
        plan, ids = (plan or real_plan(benchmark)).shuffled()
        X = self.package.manifest.input_schema.transform(plan.frame)
        benchmark.labels(self.package.manifest.class_names)  # refuse unknown labels up front
        out_dir = Path(out_dir)
        refuse_inside_key_dir(out_dir, "an encrypted benchmark", self.keys.root)
        if out_dir.exists() and any(out_dir.iterdir()):
            raise AuditError(f"{out_dir} is not empty; choose a new folder for the benchmark.")
        # Every sample is quantized and checked against the circuit before any key is made.
        quantized = [self._fits(self.quantize(X[i : i + 1])) for i in range(len(ids))]
        evaluation_keys = self.keygen()
        self.keys.load_secret_keys()
        rows: list[tuple[str, bytes]] = []
        for i, sample_id in enumerate(ids):
            rows.append((sample_id, self._encrypt_quantized(quantized[i])))
            if progress:
                progress(i + 1, len(ids), sample_id)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_ciphertexts(out_dir / CIPHERTEXTS, rows)
        (out_dir / EVALUATION_KEYS).write_bytes(evaluation_keys)
        manifest = BenchmarkManifest(
            benchmark_id=benchmark.benchmark_id,
            benchmark_version=benchmark.version,
            model_id=self.package.model_id,
            model_fingerprint=self.package.fingerprint,
            key_fingerprint=sha256_bytes(evaluation_keys),
            keyset_id=self.keyset_id,
            inputs_sha256=content_hash(rows),
            n_samples=len(rows),
            files={name: sha256_file(out_dir / name) for name in (CIPHERTEXTS, EVALUATION_KEYS)},
            versions=installed_versions(),
            created_at=now_iso(),
            model_semantics_sha256=self.package.semantics_sha256,
            circuit=self.circuit,
        )
        real = [q.source for q in plan.queries if q.probe is None]
        self._write_ledger(manifest.inputs_sha256, Ledger(
            benchmark.benchmark_id, dict(zip(ids, plan.queries, strict=True)),
            table_sha256=benchmark.rows_sha256(real),
            model_semantics_sha256=self.package.semantics_sha256, notes=plan.notes))
        write_json(out_dir / MANIFEST, manifest.to_dict())
        return EncryptedBenchmark.load(out_dir)

    def _write_ledger(self, inputs_sha256: str, ledger: Ledger) -> None:
        (self.dir / LEDGERS).mkdir(exist_ok=True)
        ledger.write(self.dir / LEDGERS / f"{inputs_sha256}{SUFFIX}")
        self.keys.secure()

    def _read_ledger(self, inputs_sha256: str) -> Ledger:
        for suffix in (SUFFIX, LEGACY_SUFFIX):
            path = self.dir / LEDGERS / f"{inputs_sha256}{suffix}"
            if path.is_file():
                return Ledger.read(path)
        raise MismatchError(
            f"This key directory ({self.dir.parent}) did not encrypt the run's benchmark: "
            "it has no record of those ciphertexts."
        )

    # -- decryption ------------------------------------------------------------------------

    def decrypt(self, run: RunResult, benchmark: PlainBenchmark | None = None) -> Decrypted:
        """Decrypt a run made for this model with this auditor's keys.

        The run must answer every query this auditor encrypted exactly once (its ledger says
        which), for a package with the same meaning (class names, output kind, input schema);
        ``benchmark``, the plaintext table the outputs will be scored against, must hold the
        very rows that were encrypted.
        """
        transcript = run.transcript
        if transcript.circuit == "sealed":
            raise MismatchError("This run is a sealed audit: only its aggregate counts can be "
                                "decrypted, with decrypt --sealed.")
        if transcript.circuit != self.circuit:  # a published layer's run, or the model's
            raise MismatchError(f"This run is of the {transcript.circuit[:60]!r} circuit; these "
                                f"keys decrypt the {self.circuit!r} circuit's.")
        if transcript.model_fingerprint != self.package.fingerprint:
            raise MismatchError(
                f"The run is for model {transcript.model_id!r}, not {self.package.model_id!r}."
            )
        if transcript.keyset_id != self.keyset_id:
            raise MismatchError(
                f"These keys did not encrypt the run's benchmark (keyset {self.keyset_id[:12]}…, "
                f"the run used keyset {transcript.keyset_id[:12]}…)."
            )
        ledger = self._read_ledger(transcript.inputs_sha256)
        recorded = {ledger.model_semantics_sha256, transcript.model_semantics_sha256} - {""}
        if recorded - {self.package.semantics_sha256}:
            raise MismatchError(
                f"The model package {self.package.path} gives the outputs another meaning (class "
                "names, output kind or input schema) than the package the benchmark was "
                "encrypted or run with."
            )
        problem = run.coverage(list(ledger.queries))
        if problem:
            raise IncompleteRunError(f"Run {run.path}: {problem}.")
        if benchmark is not None:
            self.check_table(ledger, benchmark)
        # Each output is at most the vetted circuit's output size: a larger cell (a compression
        # bomb) is refused from the Parquet metadata, before anything is decompressed.
        outputs = run.outputs(max_cell_bytes=vet(self.package.server_zip).output_bytes)
        n_classes = len(self.package.manifest.class_names)
        scores = np.concatenate([self.decrypt_output(blob) for _, blob in outputs]
                                or [np.zeros((0, n_classes))])
        return Decrypted(
            queries=[ledger.queries[s] for s, _ in outputs],
            scores=scores,
            failed=[ledger.queries[s.sample_id] for s in transcript.samples if s.error],
            notes=ledger.notes,
        )

    @staticmethod
    def check_table(ledger: Ledger, benchmark: PlainBenchmark) -> None:
        """The plaintext table holds the rows that were encrypted, unchanged."""
        if not ledger.table_sha256:
            return  # a ledger from before tables were bound
        real = [q.source for q in ledger.queries.values() if q.probe is None]
        if benchmark.rows_sha256(real) != ledger.table_sha256:
            raise MismatchError(
                f"Benchmark {benchmark.benchmark_id!r} is not the table this run was encrypted "
                f"from (encrypted from {ledger.benchmark_id!r}): its rows for the run's "
                f"{len(real)} samples differ, so its labels would score the wrong answers."
            )

    def check_range(self, frame: pd.DataFrame) -> None:
        """Refuse rows the input quantizer would clip far from their value (see
        ``schema.RANGE_FACTOR``), naming the column and the rows of ``frame``."""
        schema = self.package.manifest.input_schema
        X = schema.transform(frame).reshape(len(frame), -1)
        quantizers = self.processing.inputs
        per_feature = self.processing.family.per_feature and len(quantizers) == X.shape[1]
        for i, q in enumerate(quantizers if per_feature else quantizers[:1]):
            if q.no_clipping or q.n_bits is None or np.ndim(q.scale) or np.ndim(q.zero_point):
                continue
            # The real values the quantizer can represent: beyond them it clips.
            low, high = q.dequant(np.array([-q.offset + int(q.is_narrow),
                                            2 ** q.n_bits - 1 - q.offset]))
            columns = slice(i, i + 1) if per_feature else slice(None)
            names = schema.feature_names[columns]
            check_range(X[:, columns], float(low), float(high), names,
                        "the input quantizer's range", frame.index)

    def quantize(self, X: np.ndarray) -> np.ndarray:
        return self.processing.quantize(X)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """Class probabilities of the circuit's integer outputs (keyless)."""
        return self.processing.scores(q, self.package.manifest.output_kind)


class DemoKeys:
    """A throwaway key directory for the one-process demo, removed on exit."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="fhe-audit-keys-"))

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
