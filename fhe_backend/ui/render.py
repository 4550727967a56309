"""Turning packages and audit reports into what the page shows: Markdown, table rows, a plot.

Pure functions of their inputs (no Gradio events), so the handlers stay thin and these are easy
to test.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from .. import modes
from ..formats.artifacts import ModelPackage
from . import names, texts, timings
from .settings import TARGET_RUN_S

LABEL_IN = 0.4  # inches at the top of a figure that Gradio's plot label covers
METRIC_NAMES = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc")


def mode_label(fhe_mode: str) -> str:
    return modes.label(fhe_mode)


def report_mode_label(report: dict[str, Any]) -> str:
    """The label of the mode that made ``report`` (a sealed report says ``sealed: true``)."""
    return modes.label(modes.of_report(report))


def mode_choices(names: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """The radio buttons of these modes (all of them by default), in the registry's order."""
    return [(m.choice, m.name) for m in modes.MODES.values() if names is None or m.name in names]


def sealed_unavailable(package: ModelPackage) -> str | None:
    """Why ``package`` offers no sealed mode (one sentence), or None when it does."""
    from ..sealed.circuit import has_sealed

    if has_sealed(package):
        return None
    reason = package.manifest.sealed.get("refused")
    return texts.SEALED_UNAVAILABLE.format(
        model=package.model_id, reason=f"{reason}." if reason else texts.SEALED_NO_CIRCUIT)


def verifiability(package: ModelPackage) -> str:
    """Who can settle a re-execution of this model's runs, before any run (one or two
    sentences): bootstrapped circuits (any PBS, and every sealed circuit) only the key holder."""
    from ..sealed.circuit import has_sealed

    model = package.model_id
    if package.manifest.circuit.get("pbs_count"):
        return texts.KEY_HOLDER_ONLY.format(runs=texts.KEY_HOLDER_RUNS["all"], model=model,
                                            are="are", why=texts.KEY_HOLDER_WHY["all"])
    public = texts.PUBLICLY_VERIFIABLE.format(model=model)
    if not has_sealed(package):
        return public
    return public + " " + texts.KEY_HOLDER_ONLY.format(
        runs=texts.KEY_HOLDER_RUNS["sealed"], model=model, are="is",
        why=texts.KEY_HOLDER_WHY["sealed"])


def num(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def human_bytes(n: int | None) -> str:
    if n is None:
        return "n/a"
    size = float(n)
    for unit in ("B", "KB", "MB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.2f} GB"


def human_seconds(s: float) -> str:
    if s < 1:
        return f"{s * 1000:.0f} ms"
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [list(headers), ["---"] * len(headers), *rows]
    return "\n".join("| " + " | ".join(row) + " |" for row in lines)


def stacked_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An HTML table of already escaped cells that shows one card per row on a narrow screen
    (settings.CSS: ``.stacked``): each cell then carries its header as a label."""
    head = "".join(f"<th scope='col'>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td data-label='{escape(h, quote=True)}'>{cell}</td>"
                         for h, cell in zip(headers, row, strict=True)) + "</tr>"
        for row in rows)
    return (f"<div class='stacked'><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table></div>")


def machine_text(machine: dict[str, Any]) -> str:
    if not machine:
        return "an unrecorded machine"
    return f"{machine.get('machine', '?')} with {machine.get('cpu_count', '?')} CPUs"


# -- model card and estimate -----------------------------------------------------------------


def model_card(package: ModelPackage) -> str:
    m = package.manifest
    metrics, measured = m.metrics, m.measured
    per_sample = measured.get("fhe_s_per_sample")
    timing = (f"{per_sample:.3f} s/sample on {machine_text(measured.get('machine', {}))}"
              f" ({str(measured.get('measured_at', ''))[:10] or 'undated'})"
              if per_sample is not None else "not measured")
    n_val = metrics.get("n_validation")
    rows = [
        ("Dataset", m.dataset or "not stated"),
        ("Classes", ", ".join(m.class_names)),
        ("Input features", str(m.input_schema.n_features)),
        ("Accuracy, float model", num(metrics.get("accuracy_float"))),
        ("Accuracy, quantized circuit in clear",
         num(metrics.get("accuracy_quantized_clear")) + (f" on {n_val} samples" if n_val else "")),
        ("PBS per sample", str(m.circuit.get("pbs_count", "n/a"))),
        ("Measured FHE time", timing),
        ("Fingerprint", f"`{m.fingerprint[:16]}…`"),
    ]
    items = "\n".join(f"- **{k}:** {v}" for k, v in rows)
    return f"#### {m.model_id}\n{m.description}\n\n{items}"


def _listed(values: Sequence[Any], limit: int = 8) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (" " + texts.SCHEMA_MORE.format(n=len(values)) if len(values) > limit else "")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _step_text(step: dict[str, Any]) -> str:
    op = step["op"]
    if op == "standardize":
        text = f"(x − {num(step['mean'])}) / {num(step['scale'])}"
    elif op == "one_hot":
        text = f"one 0/1 feature per category ({len(step['categories'])})"
    elif op == "ordinal":
        text = f"index among {len(step['categories'])} categories"
    else:
        text = "the value as a number"
    if step.get("clip"):
        low, high = step["clip"]
        text += f", clipped to [{low:g}, {high:g}]"
    return f"`{op}`: {text}"


def schema_markdown(package: ModelPackage) -> str:
    """What the model expects: raw columns in order, their preprocessing, the class labels."""
    schema = package.manifest.input_schema.to_dict()
    steps: dict[str, list[str]] = {}
    for step in schema["preprocessing"]:
        steps.setdefault(step["column"], []).append(_step_text(step))
    rows = [(str(i), f"`{_cell(c['name'])}`", c["type"],
             _cell(_listed([names.category(c["name"], v) for v in c.get("categories", [])]))
             or "–",
             "; ".join(steps.get(c["name"], [])) or "–")
            for i, c in enumerate(schema["columns"], start=1)]
    classes = ", ".join(f"`{name}`" for name in package.manifest.class_names)
    return "\n\n".join([
        texts.SCHEMA_COLUMNS.format(n=len(rows)),
        markdown_table(["#", "column", "type", "categories", texts.SCHEMA_STEPS], rows),
        texts.SCHEMA_CLASSES.format(classes=classes),
    ])


def estimate(package: ModelPackage, n: int, fhe_mode: str) -> str:
    if fhe_mode == modes.SEALED:
        return sealed_estimate(package, n)
    if fhe_mode == "simulate":
        return texts.ESTIMATE_SIMULATE.format(n=n)
    guess = timings.estimate(package, n)
    if guess is None:
        return texts.ESTIMATE_UNKNOWN.format(n=n)
    state = timings.state(package)
    basis = (texts.ESTIMATE_BASIS_HERE.format(runs=guess.n_runs, state=state)
             if guess.measured_here else texts.ESTIMATE_BASIS_PACKAGE.format(
                 state=state, machine=machine_text(package.manifest.measured.get("machine", {})),
                 cpus=os.cpu_count()))
    return texts.ESTIMATE_EXECUTE.format(
        n=n, per_sample=human_seconds(guess.per_sample), total=human_seconds(guess.seconds),
        low=human_seconds(guess.low), high=human_seconds(guess.high), basis=basis)


def sealed_estimate(package: ModelPackage, n: int) -> str:
    """Batches, PBS per batch and time of a sealed audit, from :func:`sealed_plan`; or why the
    model has no sealed mode."""
    from ..orchestration import sealed_plan

    problem = sealed_unavailable(package)
    if problem:
        return "⚠ " + problem
    plan = sealed_plan(package, n)
    per_batch = plan["fhe_s_per_query"]
    time = (texts.ESTIMATE_SEALED_TIME.format(total=human_seconds(plan["estimated_fhe_s"]),
                                              per_batch=human_seconds(per_batch),
                                              basis=plan["estimate_basis"])
            if per_batch else texts.ESTIMATE_SEALED_NO_TIME.format(basis=plan["estimate_basis"]))
    return texts.ESTIMATE_SEALED.format(
        n=n, batches=plan["n_batches"], batch=plan["batch_size"],
        pbs=plan["pbs_per_batch"] if plan["pbs_per_batch"] is not None else "n/a", time=time,
        keys=human_bytes(plan["key_bytes_in_memory"]),
        positive=package.manifest.class_names[-1])


def sealed_batch_size(package: ModelPackage) -> int:
    return int(package.manifest.sealed.get("batch_size") or 1)


def suggested_samples(package: ModelPackage, n_max: int, fhe_mode: str) -> int:
    """Whole benchmark for simulation; about a minute of FHE run in real FHE; as many samples
    as the allowed sealed batches hold in sealed mode (``n_max`` is already that cap)."""
    if fhe_mode == modes.SEALED:
        return n_max
    per_sample = package.manifest.measured.get("fhe_s_per_sample")
    if fhe_mode == "simulate" or not per_sample:
        return n_max
    return max(1, min(n_max, int(TARGET_RUN_S / per_sample)))


def cli_command(model_id: str, benchmark_id: str, fhe_mode: str, n: int,
                audits: Sequence[str] = (), budget: int | None = None) -> str:
    extra = f"--audits {','.join(audits)} " if audits else ""
    extra += f"--budget {budget} " if budget else ""
    mode = "--sealed" if fhe_mode == modes.SEALED else f"--fhe {fhe_mode}"
    return (f"python -m fhe_backend audit --model {model_id} --benchmark {benchmark_id} "
            f"{mode} --limit {n} {extra}--json")


# -- audit results ---------------------------------------------------------------------------


def banner(report: dict[str, Any]) -> str:
    agreement = report["clear_reference"].get("agreement")
    text = texts.RESULT_BANNER.format(
        mode=report_mode_label(report), model=report["model"],
        benchmark=report["benchmark"], n=report["n_samples"], failed=report["n_failed"],
        accuracy=report["metrics"]["accuracy"],
        agreement=(texts.NOT_AVAILABLE.format(reason=report["clear_reference"].get(
            "compared") or "not computed") if agreement is None else f"{agreement:.1%}"))
    if "limit_capped" in report:
        text += "\n\n⚠ " + report["limit_capped"]["note"]
    return text


def interval_text(interval: Sequence[float | None] | None, digits: int = 4) -> str:
    """"[low, high]", or n/a when there is none (a metric undefined on these samples)."""
    if not interval or any(bound is None for bound in interval):
        return "n/a"
    low, high = interval
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def column_widths(n_columns: int) -> list[str]:
    """Name column first and widest, values after: on a phone the values stay in sight."""
    return ["55%", "45%"] if n_columns == 2 else ["40%", "22%", "38%"]


def metric_headers(report: dict[str, Any]) -> list[str]:
    return ["metric", "value", texts.INTERVAL_HEADER] if "intervals" in report else [
        "metric", "value"]


def metric_label(name: str) -> str:
    """A metric as a reader meets it: its name, identifier and what it measures."""
    label, meaning = texts.METRICS[name]
    return texts.METRIC_LABEL.format(label=label, name=name, meaning=meaning)


def value_or_reason(value: float | None, reason: str | None) -> str:
    """The value, or n/a with the report's reason for it."""
    return texts.NOT_AVAILABLE.format(reason=reason) if value is None and reason else num(value)


def metric_rows(report: dict[str, Any]) -> list[list[str]]:
    """Metric and value rows (each metric named, explained, and an n/a given its reason); with
    an interval column when the report has ``intervals``."""
    metrics, ref = report["metrics"], report["clear_reference"]
    intervals = report.get("intervals")
    undefined = report.get("undefined_metrics") or {}
    rows = [[metric_label(name), value_or_reason(metrics.get(name), undefined.get(name))]
            for name in METRIC_NAMES]
    rows += [
        [texts.CLEAR_ACCURACY, num(ref.get("accuracy"))],
        [texts.AGREEMENT, value_or_reason(ref.get("agreement"), ref.get("compared"))],
        *([["confusion matrix equal to the clear circuit's",
            "yes" if ref["confusion_matrix_equal"] else "no"]]
          if "confusion_matrix_equal" in ref else []),
        ["samples", str(report["n_samples"])],
        ["failed samples", str(report["n_failed"])],
    ]
    if intervals is not None:
        rows = [[*row, interval_text(intervals.get(name)) if name else ""] for row, name
                in zip(rows, [*METRIC_NAMES, *[None] * (len(rows) - len(METRIC_NAMES))],
                       strict=True)]
    return rows


def fhe_rows(report: dict[str, Any], pbs_count: Any) -> list[list[str]]:
    timing, sizes = report["timing"], report["sizes"]
    if report.get("sealed"):
        plan = report.get("plan") or {}
        return [
            ["batches (samples per batch)", f"{report['n_batches']} ({report['batch_size']})"],
            ["values decrypted", f"{report['decrypted']['values_total']} for the whole run "
                                 "(one total of counts, summed under FHE; no prediction)"],
            ["key generation", human_seconds(timing["keygen_s"])],
            ["encryption", human_seconds(timing["encrypt_s"])],
            ["FHE run (server)", human_seconds(timing["run_s"])],
            ["FHE run per batch", human_seconds(timing["run_s"] / max(1, report["n_batches"]))],
            *([["noise on the counts", f"{report['dp']['mechanism']}, epsilon "
                                      f"{report['dp']['epsilon']:g}"]] if report.get("dp") else []),
            ["decryption", human_seconds(timing["decrypt_s"])],
            ["evaluation keys", human_bytes(sizes["evaluation_keys_bytes"])],
            ["PBS per batch (sealed circuit)", str(plan.get("pbs_per_batch", "n/a"))],
        ]
    if report["fhe_mode"] != "execute":
        return [["simulation time", human_seconds(timing["run_s"])],
                ["FHE figures", texts.NO_FHE],
                ["PBS per sample (circuit)", str(pbs_count)]]
    return [
        ["key generation", human_seconds(timing["keygen_s"])],
        ["encryption", human_seconds(timing["encrypt_s"])],
        ["FHE run (server)", human_seconds(timing["run_s"])],
        ["FHE run per sample", f"{timing['fhe_s_per_sample']:.4f} s"],
        ["decryption", human_seconds(timing["decrypt_s"])],
        ["evaluation keys", human_bytes(sizes["evaluation_keys_bytes"])],
        ["input ciphertext per sample", human_bytes(sizes["input_bytes_per_sample"])],
        ["output ciphertext per sample", human_bytes(sizes["output_bytes_per_sample"])],
        ["PBS per sample", str(pbs_count)],
    ]


def confusion_figure(report: dict[str, Any], class_names: list[str]) -> Figure:
    # Figure, not pyplot: pyplot's global state is not safe across Gradio's worker threads.
    matrix = report["metrics"]["confusion_matrix"]
    n = len(class_names)
    # The top stays empty: Gradio's plot label sits there, on two lines on a phone.
    top = 2 * LABEL_IN
    fig = Figure(figsize=(4.8, 4.2 + top), layout="constrained")
    fig.get_layout_engine().set(rect=(0, 0, 1, 4.2 / (4.2 + top)))
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    peak = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", fontsize=9 if n > 4 else 12,
                    color="white" if count > peak / 2 else "black")
    ax.set_xticks(range(n), class_names, rotation=30 if n > 2 else 0,
                  ha="right" if n > 2 else "center")
    ax.set_yticks(range(n), class_names)
    # The mode goes under the axis, not in a title: Gradio's label would cover a title.
    ax.set_xlabel(f"predicted\n{report['model']} · {report_mode_label(report)}")
    ax.set_ylabel("true label")
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def transcript_view(report: dict[str, Any]) -> dict[str, Any]:
    """The hashes; for a sealed audit first what the key holder decrypted (one total of counts
    for the run, no per-sample output), as the report's ``decrypted`` says it."""
    view: dict[str, Any] = {"fhe_mode": modes.of_report(report)}
    if report.get("sealed"):
        view["decrypted"] = report["decrypted"]
    return {**view, **report["transcript"]}


def markdown_report(report: dict[str, Any], package: ModelPackage,
                    sections: Sequence[str] = ()) -> str:
    """The report as Markdown: metrics, ``sections`` (the bias results), FHE figures, hashes."""
    hashes = [[k, f"`{v}`" if v else texts.NO_FHE]
              for k, v in report["transcript"].items() if k != "versions"]
    versions = ", ".join(f"{k} {v}" for k, v in report["transcript"]["versions"].items())
    pbs_count = package.manifest.circuit.get("pbs_count", "n/a")
    return "\n\n".join([
        f"# Audit of {report['model']} on {report['benchmark']}",
        f"**Mode: {report_mode_label(report)}** · {report['n_samples']} samples",
        "## Metrics", markdown_table(metric_headers(report), metric_rows(report)),
        *sections,
        "## FHE figures", markdown_table(["FHE figure", "value"], fhe_rows(report, pbs_count)),
        "## Transcript", markdown_table(["hash", "value"], hashes), f"Versions: {versions}",
        texts.REPORT_NOTES.get(modes.of_report(report), ""), "",
    ])


def write_reports(report: dict[str, Any], package: ModelPackage, folder: Path,
                  sections: Sequence[str] = ()) -> list[Path]:
    """The JSON (the CLI's object) and a Markdown summary, named after model, benchmark and mode."""
    stem = f"audit-{report['model']}-{report['benchmark']}-{modes.of_report(report)}"
    json_path, md_path = folder / f"{stem}.json", folder / f"{stem}.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    md_path.write_text(markdown_report(report, package, sections), encoding="utf-8")
    return [json_path, md_path]


# -- server role -----------------------------------------------------------------------------


def transcript_summary(transcript: dict[str, Any]) -> dict[str, Any]:
    """The transcript without its per-sample list, which stays in the downloadable run."""
    summary = {k: v for k, v in transcript.items() if k != "samples"}
    summary["samples"] = f"{len(transcript.get('samples', []))} records in transcript.json"
    return summary
