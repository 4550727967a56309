"""The auditor's side of a sealed audit: its own keyset for the package's sealed module, batch
encryption of inputs with label-and-group codes, and decryption of the run's one total only
(the server adds the batches up under FHE; a run that publishes anything else is refused).

Like :mod:`fhe_backend.auditor.client` it is the only holder of a secret key (here the sealed
circuit's); the circuit itself, its layout and the package's sealed view are in
:mod:`fhe_backend.sealed.circuit`. The metrics and the fairness figures are computed from the summed
counts, through :func:`fhe_backend.audits.metrics.rows_from_confusion`, so scikit-learn's and
fairlearn's definitions apply unchanged.
"""

from __future__ import annotations

import json
import math
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..audits.metrics import classification_metrics, rows_from_confusion
from ..errors import ArtifactError, AuditError, CiphertextError, MismatchError, SchemaError
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
    read_json,
    write_ciphertexts,
    write_json,
)
from ..formats.bundle import pack_values
from ..formats.hashing import content_hash, sha256_bytes, sha256_file
from ..sealed.chain import total_problem
from ..sealed.circuit import (
    ADD,
    CIRCUIT,
    COUNT,
    LAYOUT,
    MAX_CELL,
    NOISE,
    SealedLayout,
    quantize,
    sealed_view,
)
from ..untrusted.safezip import check_zip, read_member
from ..untrusted.sandbox import vet
from .benchmarks import PlainBenchmark
from .keydirs import KeyDirectory, refuse_inside_key_dir


@dataclass
class SealedCounts:
    """What a sealed run decrypts to, summed over its batches, with the auditor's totals."""

    positives: np.ndarray  # (groups, 2): predicted class 1, per (group, true label)
    totals: np.ndarray  # (groups, 2): valid samples per (group, true label), the auditor's own
    groups: list[str]
    group_column: str | None
    n_batches: int
    batch_size: int
    sample: dict[str, Any] = field(default_factory=dict)  # how the rows were drawn (ledger)
    # The server's noise on the total (the transcript's description; never the noise itself):
    # ``positives`` are then the noisy counts, which may fall outside [0, totals].
    dp: dict[str, Any] | None = None
    values_decrypted: int = 0  # the count cells the decryption opened (the layout's, all)

    def confusion(self, group: int | None = None) -> np.ndarray:
        """[[TN, FP], [FN, TP]] (rows: true label) for one group or all of them."""
        pos = self.positives if group is None else self.positives[group:group + 1]
        tot = self.totals if group is None else self.totals[group:group + 1]
        pos, tot = pos.sum(axis=0), tot.sum(axis=0)
        return np.array([[tot[0] - pos[0], pos[0]], [tot[1] - pos[1], pos[1]]], dtype=np.int64)


def group_codes(benchmark: PlainBenchmark, group_column: str | None, n_groups: int,
                ) -> tuple[np.ndarray, list[str]]:
    """Group index per row (0 without a column); more groups than the circuit has is refused
    here, before anything is encrypted."""
    if group_column is None:
        return np.zeros(benchmark.n_samples, dtype=np.int64), ["all"]
    if group_column not in benchmark.frame.columns:
        raise SchemaError(f"Benchmark {benchmark.benchmark_id!r} has no column {group_column!r}.")
    values = benchmark.frame[group_column].astype(str)
    groups = sorted(values.unique())
    if len(groups) > n_groups:
        raise SchemaError(
            f"Column {group_column!r} has {len(groups)} groups but the sealed circuit counts at "
            f"most {n_groups}; a group index would be out of range, so nothing was encrypted.")
    index = {g: i for i, g in enumerate(groups)}
    return values.map(index).to_numpy(dtype=np.int64), groups


def encode(labels: np.ndarray, groups: np.ndarray, valid: np.ndarray, n_groups: int,
           ) -> np.ndarray:
    """The circuit's per-sample code: 0 counts nothing, else 1 + label + 2 * group."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    if np.any((labels < 0) | (labels > 1)):
        raise SchemaError("Sealed audits take binary labels (class index 0 or 1).")
    if np.any((groups < 0) | (groups >= n_groups)):
        raise SchemaError(f"A group index is out of range (the circuit has {n_groups} groups); "
                          "nothing was encrypted.")
    return np.where(valid, 1 + labels + 2 * groups, 0).astype(np.int64)


class SealedAuditor:
    """Keys, batch encryption and count decryption for one package's sealed circuit."""

    def __init__(self, package: ModelPackage, keys_dir: Path):
        self.package = sealed_view(package)
        self.keys = KeyDirectory(
            keys_dir, f"{package.fingerprint[:16]}-sealed", self._specs,
            {"model_id": package.model_id, "model_fingerprint": package.fingerprint,
             "circuit": CIRCUIT},
            f"No sealed keys for model {package.model_id!r} in {keys_dir}; encrypt with "
            "--sealed first.")
        self.dir = self.keys.dir
        self.layout = SealedLayout.from_dict(json.loads(self._member(LAYOUT)))

    def _member(self, name: str) -> bytes:
        check_zip(self.package.client_zip)
        return read_member(self.package.client_zip, name)

    def _specs(self) -> Any:
        """The specs keys are made with: derived from the sealed circuit in a sandboxed compile
        at 128-bit security, as for the per-sample circuit. ``sealed_client.zip`` is the
        owner's, and specs that differ from the derived ones (weaker noise, a smaller key) are
        refused before any key exists."""
        from concrete import fhe

        from ..untrusted.sandbox import trusted_client_specs

        return fhe.ClientSpecs.deserialize(
            trusted_client_specs(self.package.client_zip, self.package.server_zip))

    def _check_fit(self, batches: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Every batch is what the sealed circuit takes (shapes, widths, signs), checked by
        Concrete's simulated client, which needs no key; one sentence otherwise."""
        from concrete import fhe

        checker = fhe.Client(self._specs(), is_simulated=True)
        for inputs, code in batches:
            try:
                checker.simulate_encrypt(inputs, code, function_name=COUNT)
            except ValueError as exc:
                raise ArtifactError(f"sealed_client.zip's input quantizer makes integers the "
                                    f"sealed circuit does not take ({exc}); no key was "
                                    "made.") from exc

    def has_keys(self) -> bool:
        return self.keys.has_keys()

    def keygen(self) -> bytes:
        return self.keys.keygen()

    def encrypt(self, benchmark: PlainBenchmark, out_dir: Path, *,
                group_column: str | None = None, progress: Any = None) -> EncryptedBenchmark:
        """Quantize with the model's input quantizer, shuffle, pad to whole batches (padding is
        masked: it counts nothing), encrypt batch by batch into a new folder."""
        layout = self.layout
        classes = self.package.manifest.class_names
        labels = benchmark.labels(classes)
        groups, names = group_codes(benchmark, group_column, layout.n_groups)
        totals = np.zeros((layout.n_groups, 2), dtype=np.int64)
        np.add.at(totals, (groups, labels), 1)
        if totals.max(initial=0) > MAX_CELL:
            raise SchemaError(f"A sealed run counts at most {MAX_CELL} rows per (group, true "
                              f"label) cell and this benchmark has {int(totals.max())} in one; "
                              "draw a sample (--limit) first. Nothing was encrypted.")
        codes = encode(labels, groups, np.ones(len(labels), dtype=bool), layout.n_groups)
        X = self.package.manifest.input_schema.transform(benchmark.frame)
        q = quantize(X, layout.quantizer)
        out_dir = Path(out_dir)
        refuse_inside_key_dir(out_dir, "an encrypted benchmark", self.keys.root)
        if out_dir.exists() and any(out_dir.iterdir()):
            raise AuditError(f"{out_dir} is not empty; choose a new folder for the benchmark.")
        order = np.random.default_rng(secrets.randbits(64)).permutation(len(q))
        B = layout.batch_size
        n_batches = max(1, math.ceil(len(q) / B))
        padded = np.resize(order, n_batches * B)  # padding repeats real rows, masked below
        valid = np.arange(n_batches * B) < len(q)
        batches = [(q[idx], np.where(valid[b * B:(b + 1) * B], codes[idx], 0))
                   for b in range(n_batches) for idx in [padded[b * B:(b + 1) * B]]]
        self._check_fit(batches)  # before any key: sealed keys take minutes and gigabytes
        evaluation_keys = self.keygen()
        self.keys.load_secret_keys()
        rows: list[tuple[str, bytes]] = []
        for b, (inputs, code) in enumerate(batches):
            values = self.keys.client.encrypt(inputs, code, function_name=COUNT)
            rows.append((uuid.uuid4().hex, pack_values([v.serialize() for v in values])))
            if progress:
                progress(b + 1, n_batches)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_ciphertexts(out_dir / CIPHERTEXTS, rows)
        (out_dir / EVALUATION_KEYS).write_bytes(evaluation_keys)
        keyset = self.keys.record()
        manifest = BenchmarkManifest(
            benchmark_id=benchmark.benchmark_id, benchmark_version=benchmark.version,
            model_id=self.package.model_id, model_fingerprint=self.package.fingerprint,
            key_fingerprint=sha256_bytes(evaluation_keys), keyset_id=str(keyset["keyset_id"]),
            inputs_sha256=content_hash(rows), n_samples=len(rows),
            files={name: sha256_file(out_dir / name) for name in (CIPHERTEXTS, EVALUATION_KEYS)},
            versions=installed_versions(), created_at=now_iso(), circuit=CIRCUIT, batch_size=B)
        (self.dir / "ledgers").mkdir(exist_ok=True)
        # The auditor's private record: its own label totals, never the order of the rows.
        write_json(self.dir / "ledgers" / f"{manifest.inputs_sha256}.json", {
            "benchmark_id": benchmark.benchmark_id, "n_samples": len(q),
            "group_column": group_column, "groups": names, "totals": totals.tolist(),
            "batch_ids": [r[0] for r in rows], "sample": benchmark.sample})
        write_json(out_dir / MANIFEST, manifest.to_dict())
        return EncryptedBenchmark.load(out_dir)

    sealed = True  # the verifier compares decrypted totals, not labels

    def decrypt_total(self, run: RunResult, blob: bytes, function: str | None = None,
                      ) -> np.ndarray:
        """The counters, shape (layout groups, 2), of a run's published total (``function``:
        the transcript's), noise included when the server added some (its offset removed), or
        of the verifier's re-executed total (``function``: the step that made it). Only a
        run's one total comes here: :meth:`decrypt` and the verifier refuse a run that
        publishes anything else."""
        from concrete import fhe

        if function is None and (problem := total_problem(run.transcript)):
            raise MismatchError(f"The run's transcript {problem}; nothing was decrypted.")
        function = function or run.transcript.total.get("function")
        if function not in (COUNT, ADD, NOISE):
            raise MismatchError("The run's transcript does not say how its total was made "
                                "(count, add, or noise with its mechanism); nothing was "
                                "decrypted.")
        self.keys.load_secret_keys()
        try:
            values = np.asarray(self.keys.client.decrypt(fhe.Value.deserialize(blob),
                                                         function_name=function)).reshape(-1)
        except Exception as exc:
            raise CiphertextError(f"The sealed total cannot be decrypted ({exc!r}).") from exc
        if function == NOISE:
            from ..sealed.dp import NOISE_OFFSET

            values = values - NOISE_OFFSET
        return self.layout.cells(values)

    def decrypt(self, run: RunResult) -> SealedCounts:
        """Decrypt the one total of a sealed run: counts per (group, true label) cell, summed
        under FHE over its batches. A run that publishes per-batch outputs is refused."""
        t = run.transcript
        if t.circuit != CIRCUIT:
            raise MismatchError("This run is not a sealed audit; decrypt it without --sealed.")
        if t.model_fingerprint != self.package.fingerprint:
            raise MismatchError(f"The run is for model {t.model_id!r}, not "
                                f"{self.package.model_id!r}.")
        if t.keyset_id != self.keys.record()["keyset_id"]:
            raise MismatchError("These keys did not encrypt the run's sealed benchmark.")
        if not t.total:
            raise MismatchError("This sealed run publishes one output per batch, not one total: "
                                "decrypting a batch's counts is refused (they pin predictions); "
                                "run it again with this version, which adds the batches up "
                                "under FHE.")
        if t.n_failed:
            raise AuditError(f"{t.n_failed} batch(es) of the run failed; its counts would be "
                             "incomplete, so nothing was decrypted.")
        path = self.dir / "ledgers" / f"{t.inputs_sha256}.json"
        if not path.is_file():
            raise MismatchError("This key directory did not encrypt the run's benchmark.")
        ledger = read_json(path, "Auditor ledger")
        if sorted(r.sample_id for r in t.samples) != sorted(ledger["batch_ids"]) or \
                t.total.get("n_batches") != len(ledger["batch_ids"]):
            raise MismatchError("The run's batches are not the ones this auditor encrypted.")
        (output,) = run.outputs(max_cell_bytes=vet(self.package.server_zip).output_bytes)
        positives = self.decrypt_total(run, output[1])
        totals = np.asarray(ledger["totals"], dtype=np.int64)
        dp = t.total.get("dp")
        if dp is None and (np.any(positives > totals) or np.any(positives < 0)):
            raise CiphertextError("The decrypted counts exceed the samples encrypted; the run "
                                  "or the keys are not consistent.")
        from ..sealed.dp import NOISE_OFFSET

        # The mechanism's noise lies in [-NOISE_OFFSET, NOISE_OFFSET - 1]: a cell beyond a true
        # count's reach with it means noise the transcript does not describe.
        if dp is not None and (np.any(positives < -NOISE_OFFSET)
                               or np.any(positives > totals + NOISE_OFFSET - 1)):
            raise CiphertextError("The decrypted counts lie beyond the samples encrypted plus "
                                  "the noise range the transcript names; the run or the keys "
                                  "are not consistent.")
        n_groups = len(ledger["groups"])
        return SealedCounts(
            positives=positives[:n_groups].astype(np.int64), totals=totals[:n_groups],
            groups=list(ledger["groups"]), group_column=ledger["group_column"],
            n_batches=len(t.samples), batch_size=self.layout.batch_size,
            sample=ledger.get("sample") if isinstance(ledger.get("sample"), dict) else {},
            dp=dp, values_decrypted=self.layout.n_counters)


# --------------------------------------------------------------------------------------------
# Metrics from counts


ROC_AUC_REASON = "a sealed audit decrypts counts only; ROC-AUC needs per-sample scores"


def sealed_metrics(counts: SealedCounts) -> dict[str, Any]:
    y_true, y_pred = rows_from_confusion(counts.confusion())
    metrics = classification_metrics(y_true, y_pred, np.zeros((len(y_true), 2)), 2)
    metrics["roc_auc"] = None
    metrics["roc_auc_reason"] = ROC_AUC_REASON
    return metrics


def sealed_fairness(counts: SealedCounts) -> dict[str, Any]:
    """fairlearn's group metrics for the encrypted group column (class index 1 = selection)."""
    import pandas as pd

    from ..audits.fairness import group_fairness

    y_true, y_pred, groups = [], [], []
    for g, name in enumerate(counts.groups):
        t, p = rows_from_confusion(counts.confusion(g))
        y_true.append(t)
        y_pred.append(p)
        groups += [name] * len(t)
    return {str(counts.group_column): group_fairness(
        np.concatenate(y_true), np.concatenate(y_pred), pd.Series(groups), positive=1)}


def default_group_column(benchmark: PlainBenchmark) -> str | None:
    return benchmark.sensitive_columns[0] if benchmark.sensitive_columns else None


def decrypted_summary(counts: SealedCounts) -> dict[str, Any]:
    """Exactly what the key holder decrypted: one total per run, the layout's count cells
    (``values_total``), never a batch's (``per_batch``: false)."""
    what = ("one total for the whole run, summed under FHE over its batches: the number "
            f"predicted class 1 for each (group of {counts.group_column or 'all samples'}, true "
            "label) cell")
    if counts.dp:
        what += f", with the server's {counts.dp.get('mechanism', 'noise')} noise on each cell"
    return {"values_total": counts.values_decrypted, "per_batch": False,
            "n_batches": counts.n_batches, "what": what, "groups": counts.groups}
