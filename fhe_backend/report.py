"""The audit record: a dated Markdown report with intervals, and a self-contained bundle that
anyone can check with one ``verify`` command.

A bundle folder holds::

    report.json     the audit's JSON report, dated, with the exact verify command
    report.md       the same, for people: metrics with 95% intervals, positive class, readings
    transcript.json the server's transcript (copy of run/transcript.json)
    encrypted/      the encrypted benchmark: ciphertexts and evaluation keys, nothing secret
    run/            the server's encrypted outputs and transcript
    model/          the model package, when it is not a zoo model (public: no key inside)
    VERIFY.txt      the command that re-executes the run and checks every hash

The auditor's key directory is never copied: :func:`write_bundle` refuses a folder that holds
one, and the demo's keys live in a temporary folder elsewhere.
"""

from __future__ import annotations

import json
import math
import shlex
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .audits import AUDITS
from .audits.uncertainty import format_metric
from .errors import AuditError
from .formats.artifacts import TRANSCRIPT, now_iso

if TYPE_CHECKING:
    from .formats.artifacts import ModelPackage
    from .orchestration import AuditOutcome

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
VERIFY_TXT = "VERIFY.txt"
# A key directory's marker files (see auditor.py): a bundle must never contain them.
KEY_MARKERS = ("keyset.json",)
METRIC_NAMES = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc")


def json_safe(value: Any) -> Any:
    """The value with every NaN or infinity replaced by None, so that the JSON is valid JSON
    (the reasons for undefined metrics are given beside them, in ``undefined_metrics``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(json_safe(data), indent=2, allow_nan=False)


def verify_command(model_ref: str, encrypted: str = "encrypted", run: str = "run") -> str:
    """The command that re-executes a run and checks its hashes (from the bundle folder)."""
    return shlex.join(["python", "-m", "fhe_backend", "verify", "--model", model_ref,
                       "--encrypted", encrypted, "--run", run])


def _drawn(sample: dict[str, Any] | None) -> str:
    """How the samples were drawn from the benchmark (``sample``), for the samples line."""
    if not sample or sample.get("method") == "all":
        return ""
    how = (f"a stratified random draw (seed {sample['seed']}, by "
           f"{' x '.join(sample.get('strata', []))})" if sample["method"] == "stratified"
           else "the first rows in file order")
    return f", {sample['n']} of {sample['of']}: {how}"


def markdown_report(report: dict[str, Any], created_at: str | None = None,
                    verify: str | None = None) -> str:
    """The report for people: every metric with its 95% interval (n/a and why when it is
    undefined), the positive class and averaging, group fairness, behaviour readings."""
    metrics, intervals = report["metrics"], report.get("intervals", {})
    undefined = report.get("undefined_metrics", {})
    lines = [f"# Audit of {report['model']} on {report['benchmark']}", "",
             f"- date: {created_at or now_iso()}",
             f"- mode: {report['fhe_mode']}" + (" (Concrete's simulator; no encryption)"
                                                if report["fhe_mode"] == "simulate" else "")
             + (f", sealed: only aggregate counts were decrypted ({report['n_batches']} "
                f"batch(es) of {report['batch_size']})" if report.get("sealed") else ""),
             f"- samples: {report['n_samples']} ({report.get('n_failed', 0)} failed)"
             + _drawn(report.get("sample")),
             f"- model fingerprint: `{report['transcript']['model_fingerprint']}`"]
    if report.get("positive_class"):
        lines.append(f"- positive class: {report['positive_class']!r}")
    if report.get("averaging"):
        lines.append(f"- averaging: {report['averaging']}")
    methods = report.get("interval_methods")
    if methods:
        lines.append(f"- 95% intervals: {methods['proportions']}; otherwise {methods['others']}")
    readings = report.get("readings", {})
    if readings.get("note"):
        lines += ["", f"**{readings['note']}**"]
    lines += ["", "## Metrics", "", "| metric | value (95% interval) |", "|---|---|"]
    for name in METRIC_NAMES:
        value = format_metric(metrics.get(name), intervals.get(name), reason=undefined.get(name))
        lines.append(f"| {name} | {value} |")
    for kind in AUDITS.values():  # each audit's section, in the registry's order
        if kind.markdown is not None and kind.name in report:
            lines += kind.markdown(report)
    if report.get("sealed"):
        d = report["decrypted"]
        lines += ["", "## What was decrypted", "",
                  f"- {d['values_total']} counts for the whole run ({d['n_batches']} "
                  f"batch(es), never a batch's own): {d['what']}; no score, but a cell counted "
                  "0 or full pins its rows' predictions, and an auditor that chooses its codes "
                  "reads one prediction per cell (see the README's threat model)"]
        if report.get("dp"):
            dp = report["dp"]
            lines += [f"- noise: the server's {dp['mechanism']} noise on each cell, epsilon "
                      f"{dp['epsilon']:g} (delta {dp['delta']:.1e}; the server's word, not "
                      f"checkable); every interval widened: {dp['widening']}"]
    ref = report.get("clear_reference")
    if ref:
        bounds = ref.get("intervals") or {}
        lines += ["", "## Clear reference", "",
                  "- accuracy in Concrete's simulator: "
                  + format_metric(ref.get("accuracy"), bounds.get("accuracy")),
                  "- agreement: " + format_metric(ref.get("agreement"), bounds.get("agreement"),
                                                  reason=ref.get("compared"))
                  + (f" ({ref['compared']})" if ref.get("agreement") is not None else "")]
    repro = report.get("reproducibility")
    if repro:
        lines += ["", "## Reproducibility", "", f"- seed: {repro['seed']} ({repro['seeded']})",
                  f"- outputs: {repro['outputs']}"]
    t = report["transcript"]
    lines += ["", "## Transcript", ""] + [f"- {k}: `{t[k]}`" for k in
                                          ("inputs_sha256", "evaluation_keys_sha256",
                                           "outputs_sha256") if t.get(k)]
    if verify:
        lines += ["", "## Check it", "", "From this folder:", "", "```", verify, "```"]
    return "\n".join(lines) + "\n"


def write_bundle(report: dict[str, Any], bundle_dir: Path, *, model_ref: str,
                 model_path: Path | None = None, encrypted_dir: Path | None = None,
                 run_dir: Path | None = None, bootstrapped: bool = False) -> Path:
    """Gather a finished audit into ``bundle_dir``: dated report (JSON and Markdown),
    transcript, encrypted benchmark and run, the model package unless ``model_ref`` is a zoo
    id, and the verify command. Folders already inside ``bundle_dir`` are used in place."""
    bundle = Path(bundle_dir)
    bundle.mkdir(parents=True, exist_ok=True)
    created_at = now_iso()
    verify = None
    if encrypted_dir is not None and run_dir is not None:
        for source, name in ((encrypted_dir, "encrypted"), (run_dir, "run")):
            _place(Path(source), bundle / name)
        if model_path is not None:
            _place(Path(model_path), bundle / "model")
            model_ref = "model"
        shutil.copyfile(bundle / "run" / TRANSCRIPT, bundle / TRANSCRIPT)
        verify = verify_command(model_ref)
        limit = ("# This circuit uses bootstrapping: another process's bytes differ, so without\n"
                 "# the auditor's keys verify reports inconclusive (status 1); the auditor adds\n"
                 "# --keys KEYS to compare decrypted labels instead (README, threat model).\n"
                 if bootstrapped else "")
        (bundle / VERIFY_TXT).write_text(
            f"# Re-executes every sample of run/ on encrypted/ and checks every hash.\n"
            f"# Run it from this folder; status 0 means verified.\n{limit}{verify}\n",
            encoding="utf-8")
    record = {"created_at": created_at, **report, "model_ref": model_ref,
              "verify_command": verify}
    (bundle / REPORT_JSON).write_text(dumps(record) + "\n", encoding="utf-8")
    (bundle / REPORT_MD).write_text(markdown_report(report, created_at, verify),
                                    encoding="utf-8")
    leaked = [p for p in bundle.rglob("*") if p.name in KEY_MARKERS]
    if leaked:
        raise AuditError(f"The bundle {bundle} holds a key directory ({leaked[0].parent}); "
                         "it must never be shared.")
    return bundle


def _place(source: Path, target: Path) -> None:
    if source.resolve() == target.resolve():
        return
    if target.exists():
        raise AuditError(f"{target} already exists; give an empty bundle folder.")
    shutil.copytree(source, target)


def bundle_outcome(outcome: AuditOutcome, package: ModelPackage, bundle_dir: Path) -> Path:
    """The bundle of a finished :func:`fhe_backend.orchestration.run_audit` (for the CLI's ``audit
    --bundle`` and the Space's download): a zoo model is named by id, any other package is
    copied in."""
    from .hub.references import resolve_model
    from .hub.zoo import model_ids

    zoo = (package.model_id in model_ids()
           and resolve_model(package.model_id).fingerprint == package.fingerprint)
    return write_bundle(outcome.report, bundle_dir, model_ref=package.model_id,
                        model_path=None if zoo else package.path,
                        encrypted_dir=outcome.encrypted_dir, run_dir=outcome.run_dir,
                        # A sealed circuit always bootstraps (its decision is a lookup).
                        bootstrapped=bool(package.manifest.circuit.get("pbs_count")
                                          or outcome.report.get("sealed")))
