"""Importance: occlusion (one probe per sample and input column) and permutation (each column
shuffled) on a subsample sized by a stated stopping rule (see
:mod:`fhe_backend.audits.sampling`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._kind import AuditKind, Outputs, Planning, Report, Rows, labels_for

if TYPE_CHECKING:
    from ..auditor.benchmarks import PlainBenchmark
    from ..formats.artifacts import ModelPackage


def probed_columns(benchmark: PlainBenchmark, package: ModelPackage) -> list[str]:
    """The model's input columns, plus the sensitive attributes it may not take: occluding
    one of those must change nothing, which is itself a finding worth showing."""
    inputs = package.manifest.input_schema.column_names
    return inputs + [c for c in benchmark.sensitive_columns if c not in inputs]


def plan(p: Planning) -> list[Rows]:
    """Probes a subsample whose size a pilot on ``p.simulator`` chooses; without a simulator
    (a quick cost estimate) every sample is probed: an upper bound."""
    from ..auditor.probes import baseline, occlusion_rows, permutation_rows
    from .sampling import choose_subsample, subset

    columns = probed_columns(p.benchmark, p.package)
    ids, record = choose_subsample(
        p.benchmark, columns, p.permutation_repeats, p.seed,
        lambda ids: labels_for(p.benchmark, p.package, ids), p.simulator)
    probed = subset(p.benchmark, ids)  # the baseline stays the whole benchmark's
    p.notes["importance_sampling"] = record
    return [occlusion_rows(probed, columns, baseline(p.benchmark.frame, columns)),
            permutation_rows(probed, columns, p.permutation_repeats, p.seed)]


def evaluate(out: Outputs) -> dict[str, Any]:
    from .explain import occlusion, permutation
    from .sampling import per_feature, reached, simultaneous

    columns = probed_columns(out.benchmark, out.package)
    decrypted, real = out.decrypted, out.real
    result = occlusion(real, decrypted.select("occlusion"), columns)
    result["permutation"] = permutation(real, decrypted.select("permutation"), out.y_true,
                                        columns)
    record = decrypted.notes.get("importance_sampling") or {}
    simultaneous(result["features"], record)
    stated = {"occlusion": record["tolerance"]} if record.get("tolerance") else None
    result["sampling"] = {
        **record, "reached": reached(per_feature(real, decrypted, out.y_true, columns), stated)}
    return result


def summary(report: Report) -> list[str]:
    top = sorted(report["importance"]["features"], key=lambda f: -f["importance"])[:5]
    return ["  occlusion importance: " + ", ".join(
        f"{f['name']} {f['importance']:.3f}" for f in top)]


def sampling_lines(sampling: dict[str, Any]) -> list[str]:
    """The subsample and its stopping rule, as report bullets: how many samples were probed,
    whether each method's intervals reached the tolerance, the rule."""
    if not sampling.get("n_samples"):
        return []
    lines = [f"- probed samples: {sampling['n_samples']} of {sampling['n_available']} "
             f"(pilot {sampling['pilot']})" + (f"; {sampling['note']}"
                                               if sampling.get("note") else "")]
    if sampling.get("met"):
        lines.append(f"- promise: {sampling['guarantee']} (tolerance "
                     f"{sampling['tolerance']:.4f})")
    for method, r in sampling.get("reached", {}).items():
        widths = [w for w in r["half_widths"].values() if w is not None]
        widest = f"{max(widths):.4f}" if widths else "n/a"
        lines.append(f"- {method}: largest 95% half-width {widest}, tolerance "
                     f"{r['tolerance']:.4f}: " + ("reached" if r["tight"] else "not reached"))
    return [*lines, f"- rule: {sampling['rule']}"]


def markdown(report: Report) -> list[str]:
    from .uncertainty import format_metric

    importance = report["importance"]
    lines: list[str] = []
    for method in (importance, importance.get("permutation")):
        if not method:
            continue
        lines += ["", f"## Importance ({method['method']}: {method['score']})", "",
                  "| feature | score (95% interval) | rank (95% interval) | reading |",
                  "|---|---|---|---|"]
        for f in sorted(method["features"], key=lambda f: f.get("rank", 0)):
            rank = f.get("rank_interval")
            lines.append(f"| {f['name']} | {format_metric(f['importance'], f.get('interval'))}"
                         f" | {f.get('rank', '')}"
                         + (f" ({rank[0]}-{rank[1]})" if rank else "")
                         + f" | {f.get('reading', '')} |")
        if method.get("intervals"):
            lines += ["", f"Intervals: {method['intervals']}."]
    sampling = sampling_lines(importance.get("sampling") or {})
    if sampling:
        lines += ["", "## Importance subsample", "", *sampling]
    return lines


KIND = AuditKind(
    name="importance", title="Feature importance",
    description="Importance: occlusion and permutation of each input feature",
    queries={"occlusion": "importance: occlusion probes",
             "permutation": "importance: permutation probes"},
    plan=plan, evaluate=evaluate, summary=summary, markdown=markdown)
