"""The Bias tab's views of an audit report: per audit a figure and a plain-language reading,
the cost table shown before a run, and the same readings as sections of the Markdown report.

Pure functions of their inputs (no Gradio events), like :mod:`render`.
"""

from __future__ import annotations

import os
import re
import textwrap
from collections.abc import Callable
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..audits import AUDITS, optional_kinds
from ..audits.uncertainty import format_metric
from ..formats.artifacts import ModelPackage
from . import names as names_module
from . import texts
from .bias_layers import representation_figure, representation_reading
from .names import pixel_side
from .render import LABEL_IN, human_seconds, machine_text, markdown_table, report_mode_label

TOP_K = 20  # bars per importance or weight chart; the report's JSON keeps every feature
TOP_READ = 3  # names a reading lists
GROUP_WRAP = 10  # characters per line of a fairness group's tick label
Scores = dict[str, float]


# -- formatting ------------------------------------------------------------------------------


def _fixed(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _join(names: list[str], limit: int = 8) -> str:
    """"a, b and c"; long lists end with "and N more"."""
    if len(names) > limit:
        names = [*names[:limit], f"{len(names) - limit} more"]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _scores(features: list[dict[str, Any]]) -> Scores:
    return {f["name"]: f["importance"] for f in features}


def _namer(names: list[str], report: dict[str, Any] | None = None) -> Callable[[str], str]:
    """Reader's names for ``names``; with ``report``, from all the audited model's features
    (a surrogate names only the pixels it uses, not enough to tell the image's side)."""
    return names_module.namer(names_module.model_features(report["model"]) or names
                              if report is not None else names)


def _top(scores: Scores, namer: Callable[[str], str], signed: bool = False) -> str:
    """The largest scores by absolute value, each named with its value."""
    ranked = sorted(scores, key=lambda n: -abs(scores[n]))[:TOP_READ]
    spec = "+.2f" if signed else ".2f"
    return _join([f"{namer(n)} ({scores[n]:{spec}})" for n in ranked]) if ranked else "none"


def _figure(height: float, width: float = 9.0) -> Figure:
    # Figure, not pyplot: pyplot's global state is not safe across Gradio's worker threads.
    fig = Figure(figsize=(width, height + LABEL_IN), layout="constrained")
    fig.get_layout_engine().set(rect=(0, 0, 1, height / (height + LABEL_IN)))
    return fig


def _caption(fig: Figure, report: dict[str, Any]) -> None:
    # The mode goes at the bottom, not in a title: Gradio's label would cover a title.
    fig.supxlabel(f"{report['model']} on {report['benchmark']} · "
                  f"{report_mode_label(report)} · {report['n_samples']} samples",
                  fontsize=8, color="dimgray")


def _barh(ax: Axes, scores: Scores, order: list[str], namer: Callable[[str], str]) -> None:
    values = [scores[n] for n in reversed(order)]  # largest at the top
    ax.barh([namer(n) for n in reversed(order)], values,
            color=["tab:blue" if v >= 0 else "tab:red" for v in values])
    ax.axvline(0, color="gray", linewidth=0.8)
    ax.tick_params(axis="y", labelsize=8)


# -- the audit kinds ---------------------------------------------------------------------------


def sections() -> list[str]:
    """The audits one chooses in the tab, each shown in its own box: the registry's."""
    return [kind.name for kind in optional_kinds()]


def audit_choices() -> list[tuple[str, str]]:
    """The tab's checkbox choices: each audit's description and name."""
    return [(kind.description, kind.name) for kind in optional_kinds()]


def audits_info() -> str:
    """Under the choices: what is always measured, what needs sensitive attributes."""
    always = [kind.name for kind in AUDITS.values() if kind.always]
    sensitive = [kind.name for kind in optional_kinds() if kind.needs_sensitive]
    return texts.BIAS_AUDITS_INFO.format(always=_join(always).capitalize(),
                                         sensitive=_join(sensitive).capitalize())


def title(name: str) -> str:
    return AUDITS[name].title


def cost_rows() -> dict[str, str]:
    """Each row of the cost table: the samples (the audits needing nothing more), then every
    probe kind."""
    plain = [kind.name for kind in AUDITS.values() if not kind.queries and not kind.layers]
    return {"samples": texts.BIAS_COST_SAMPLES.format(audits=_join(plain)),
            **{probe: what for kind in AUDITS.values() for probe, what in kind.queries.items()},
            **{kind.name: texts.BIAS_COST_LAYERS.format(audit=kind.name)
               for kind in AUDITS.values() if kind.layers}}


# -- cost before running ---------------------------------------------------------------------


def cost_table(plan: dict[str, Any]) -> str:
    """FHE queries per audit (from ``plan_audit``) and what they take in real FHE."""
    per_query = plan["fhe_s_per_query"]

    def seconds(n: int) -> str:
        return human_seconds(n * per_query) if per_query else texts.NOT_MEASURED

    names = cost_rows()
    rows = [[names[kind], str(n), seconds(n)] for kind, n in plan["queries"].items()]
    rows.append([texts.BIAS_COST_TOTAL, f"**{plan['n_queries']}**",
                 f"**{seconds(plan['n_queries'])}**"])
    return markdown_table(texts.BIAS_COST_HEADERS, rows)


def estimate(plan: dict[str, Any], package: ModelPackage, fhe_mode: str,
             problem: str | None) -> str:
    """The cost table, then the chosen mode, then why the request would be refused
    (``problem``), if it would."""
    per_query = plan["fhe_s_per_query"]
    note = texts.BIAS_COST_NOTE[fhe_mode].format(
        per_query=human_seconds(per_query) if per_query else texts.NOT_MEASURED,
        machine=machine_text(package.manifest.measured.get("machine", {})),
        cpus=os.cpu_count())
    parts = [cost_table(plan), note]
    if problem:
        parts.append(texts.COST_PROBLEM.format(problem=problem))
    return "\n\n".join(parts)


def banner(report: dict[str, Any]) -> str:
    return texts.BIAS_BANNER.format(
        mode=report_mode_label(report), model=report["model"],
        benchmark=report["benchmark"], n=report["n_samples"],
        queries=report["plan"]["n_queries"], failed=report["n_failed"],
        accuracy=report["metrics"]["accuracy"], audits=", ".join(report["audits"]))


# -- fairness --------------------------------------------------------------------------------


def fairness_figure(report: dict[str, Any]) -> Figure:
    """Selection rate, TPR and FPR bars per group, one panel per sensitive attribute."""
    fairness = report["fairness"]
    # At least three bar groups' width per panel, so that two panels' labels never collide.
    widths = [max(3, len(result["groups"])) for result in fairness.values()]
    fig = _figure(4.2, max(6.0, 0.9 * sum(widths)))
    axes = fig.subplots(1, len(fairness), squeeze=False, width_ratios=widths)[0]
    bar = 0.8 / len(texts.FAIRNESS_BARS)
    for ax, (attribute, result) in zip(axes, fairness.items(), strict=True):
        groups = result["groups"]
        x = np.arange(len(groups))
        bounds = result.get("intervals", {}).get("groups", {})
        for i, (key, label) in enumerate(texts.FAIRNESS_BARS.items()):
            values = [np.nan if g[key] is None else g[key] for g in groups.values()]
            ax.bar(x + (i - 1) * bar, values, bar, label=label)
            # The 95% Wilson interval of each rate: a small group's bar is mostly noise.
            spans = [(bounds.get(name, {}).get(key) or [v, v]) for name, v in
                     zip(groups, values, strict=True)]
            errors = np.abs(np.array([[v - lo, hi - v] for v, (lo, hi) in
                                      zip(values, spans, strict=True)]).T)
            ax.errorbar(x + (i - 1) * bar, values, yerr=errors, fmt="none", ecolor="black",
                        elinewidth=0.8, capsize=2)
        # Wrapped names: two long group names side by side ran into each other.
        # ⚠ marks a group too small to read (its reason is in the reading and the table).
        ax.set_xticks(x, [f"{textwrap.fill(str(name), GROUP_WRAP)}\nn={g['n']}"
                          + ("" if g.get("conclusive", True) else " ⚠")
                          for name, g in groups.items()], fontsize=8,
                      rotation=20 if len(groups) > 3 else 0)
        ax.set_ylim(0, 1)
        ax.set_xlim(-0.6, max(len(groups), 3) - 0.4)  # bars as wide in every panel
        span = result.get("intervals", {}).get("demographic_parity_difference")
        ax.set_xlabel(f"{attribute}\nparity difference "
                      f"{_fixed(result['demographic_parity_difference'])}"
                      + (f"\n95% CI {span[0]:.2f} to {span[1]:.2f}" if span else ""))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8)
    _caption(fig, report)
    return fig


def fairness_reading(report: dict[str, Any], class_names: list[str]) -> str:
    def gap(result: dict[str, Any], name: str) -> str:
        return format_metric(result[name], result.get("intervals", {}).get(name), digits=2)

    lines = []
    for attribute, result in report["fairness"].items():
        rated = {g: v for g, v in result["groups"].items() if v["selection_rate"] is not None}
        if len(rated) < 2:
            lines.append(texts.FAIRNESS_ONE_GROUP.format(
                attribute=attribute, groups=_join([f"{g} (n={v['n']})"
                                                   for g, v in result["groups"].items()])))
            continue
        high = max(rated, key=lambda g: rated[g]["selection_rate"])
        low = min(rated, key=lambda g: rated[g]["selection_rate"])
        lines.append(texts.FAIRNESS_READING.format(
            attribute=attribute, dpd=gap(result, "demographic_parity_difference"),
            positive=class_names[result["positive_label_index"]],
            high=high, high_rate=rated[high]["selection_rate"], high_n=rated[high]["n"],
            low=low, low_rate=rated[low]["selection_rate"], low_n=rated[low]["n"],
            eod=gap(result, "equalized_odds_difference")))
        if not result.get("conclusive", True) and len(result["groups"]) > 1:
            weak = [f"{group} has {g['reason']}" for group, g in result["groups"].items()
                    if not g.get("conclusive", True)]
            lines.append(texts.FAIRNESS_INCONCLUSIVE.format(attribute=attribute,
                                                            groups=_join(weak, limit=4)))
    return "\n\n".join(lines)


def fairness_table(report: dict[str, Any]) -> str:
    rows = [[attribute, group, str(g["n"]), *(_fixed(g[k], 3) for k in
                                             ("selection_rate", "tpr", "fpr", "accuracy")),
             "yes" if g.get("conclusive", True) else f"no: {g['reason']}"]
            for attribute, result in report["fairness"].items()
            for group, g in result["groups"].items()]
    return markdown_table(["attribute", "group", "n", "selection rate", "TPR", "FPR",
                           "accuracy", "conclusive"], rows)


# -- counterfactual --------------------------------------------------------------------------


def counterfactual_figure(report: dict[str, Any]) -> Figure:
    # An attribute the model does not take was not probed: no bar (its reading says why).
    flips = {a: f for a, f in report["counterfactual"].items() if f["flip_rate"] is not None}
    fig = _figure(1.4 + 0.5 * len(flips), 7.0)
    ax = fig.subplots()
    names = list(flips)[::-1]
    bars = ax.barh([f"{n}\n{flips[n]['n_probes']} probes" for n in names],
                   [flips[n]["flip_rate"] for n in names], color="tab:purple")
    ax.bar_label(bars, fmt=lambda v: f"{v:.1%}", padding=3)  # a 0% bar is otherwise invisible
    ax.set_xlim(0, max([0.05, *(f["flip_rate"] * 1.2 for f in flips.values())]))
    ax.xaxis.set_major_formatter(lambda v, _pos: f"{v:.0%}")
    ax.set_xlabel(texts.FLIP_AXIS)
    _caption(fig, report)
    return fig


def counterfactual_reading(report: dict[str, Any], class_names: list[str]) -> str:
    # For a binary model the tracked score is the second class's; else the predicted class's.
    tracked = class_names[1] if len(class_names) == 2 else texts.PREDICTED_CLASS
    lines = []
    for attribute, f in report["counterfactual"].items():
        if f["flip_rate"] is None:
            lines.append(texts.COUNTERFACTUAL_NOT_PROBED.format(reason=f["reason"]))
            continue
        bounds = (f.get("intervals") or {}).get("flip_rate")
        lines.append(texts.COUNTERFACTUAL_READING.format(
            attribute=attribute, rate=f["flip_rate"], n=f["n_probes"], tracked=tracked,
            change=f["mean_score_change"], abs_change=f["mean_abs_score_change"],
            interval=texts.FLIP_INTERVAL.format(low=bounds[0], high=bounds[1]) if bounds
            else ""))
        if f["mean_abs_score_change"] == 0:
            lines.append(texts.COUNTERFACTUAL_IGNORED.format(attribute=attribute))
    return "\n\n".join(lines)


def counterfactual_table(report: dict[str, Any]) -> str:
    rows = [[attribute, str(f["n_probes"]), f"{f['flip_rate']:.1%}",
             f"{f['mean_score_change']:+.4f}", f"{f['mean_abs_score_change']:.4f}"]
            if f["flip_rate"] is not None else [attribute, "0", "n/a (not an input)", "n/a", "n/a"]
            for attribute, f in report["counterfactual"].items()]
    return markdown_table(["attribute", "probes", "flip rate", "mean score change",
                           "mean absolute score change"], rows)


# -- importance ------------------------------------------------------------------------------


def _importances(report: dict[str, Any]) -> tuple[Scores, Scores]:
    importance = report["importance"]
    return _scores(importance["features"]), _scores(importance["permutation"]["features"])


def importance_figure(report: dict[str, Any]) -> Figure:
    """Occlusion and permutation side by side: bars, or heat maps for the pixels of an image."""
    occlusion, permutation = _importances(report)
    side = pixel_side(list(occlusion))
    if side is not None:
        return _heat_maps(report, occlusion, permutation, side)
    order = sorted(occlusion, key=lambda n: -occlusion[n])[:TOP_K]
    fig = _figure(1.4 + 0.28 * len(order))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (kind, scores) in zip(axes, (("occlusion", occlusion),
                                         ("permutation", permutation)), strict=True):
        _barh(ax, scores, order, _namer(list(occlusion)))
        ax.set_xlabel(texts.IMPORTANCE_AXES[kind])
    if len(occlusion) > len(order):
        axes[0].set_ylabel(texts.TOP_OF.format(k=len(order), n=len(occlusion)))
    _caption(fig, report)
    return fig


def _heat_maps(report: dict[str, Any], occlusion: Scores, permutation: Scores,
               side: int) -> Figure:
    fig = _figure(4.2, 8.0)
    for ax, (kind, scores) in zip(fig.subplots(1, 2), (("occlusion", occlusion),
                                                       ("permutation", permutation)),
                                  strict=True):
        grid = np.zeros(side * side)
        for name, value in scores.items():
            grid[int(name.removeprefix("pixel_"))] = value
        # An accuracy drop can be negative (shuffling helped by chance): centre it on zero.
        peak = max(np.abs(grid).max(), 1e-9)
        image = ax.imshow(grid.reshape(side, side), **(
            {"cmap": "viridis"} if kind == "occlusion"
            else {"cmap": "coolwarm", "vmin": -peak, "vmax": peak}))
        ax.set_xlabel(texts.IMPORTANCE_AXES[kind], fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(image, ax=ax, shrink=0.8)
    _caption(fig, report)
    return fig


def importance_reading(report: dict[str, Any], _class_names: list[str]) -> str:
    occlusion, permutation = _importances(report)
    namer = _namer(list(occlusion))
    importance = report["importance"]
    sampling = importance.get("sampling") or {}
    # The probes cover the subsample the stopping rule chose, not every audited sample.
    probed = sampling.get("n_samples") or report["n_samples"]
    lines = [texts.OCCLUSION_READING.format(n=importance["n_queries"],
                                            top=_top(occlusion, namer))]
    unused = [namer(n) for n, v in occlusion.items() if v == 0]
    if unused:
        lines.append(texts.OCCLUSION_UNUSED.format(n=probed, names=_join(unused)))
    helpful = {n: v for n, v in permutation.items() if v > 0}
    n_queries = importance["permutation"]["n_queries"]
    lines.append(texts.PERMUTATION_READING.format(n=n_queries, top=_top(helpful, namer),
                                                  n_samples=probed, step=1 / probed)
                 if helpful else
                 texts.PERMUTATION_FLAT.format(n=n_queries, n_samples=probed))
    if sampling.get("n_samples"):
        lines.append(sampling_reading(sampling))
    return "\n\n".join(lines)


def sampling_reading(sampling: dict[str, Any]) -> str:
    """How many samples the importance probes covered, whether each method's intervals met
    the stopping rule's tolerance, and the rule (``report["importance"]["sampling"]``)."""
    n, available = sampling["n_samples"], sampling["n_available"]
    how = ((sampling.get("note") or texts.IMPORTANCE_EVERY) if n >= available
           else texts.IMPORTANCE_SUBSAMPLE.format(pilot=sampling["pilot"]))
    lines = [texts.IMPORTANCE_PROBED.format(n=n, available=available, how=how)]
    for method, reached in sampling.get("reached", {}).items():
        widths = [w for w in reached["half_widths"].values() if w is not None]
        if not widths:  # one probed sample: no interval at all
            continue
        template = texts.IMPORTANCE_TIGHT if reached["tight"] else texts.IMPORTANCE_LOOSE
        lines.append(template.format(method=method.capitalize(), widest=max(widths),
                                     tolerance=reached["tolerance"]))
    if sampling.get("met") and sampling.get("tolerance"):
        lines.append(texts.IMPORTANCE_PROMISE.format(guarantee=sampling["guarantee"],
                                                     tolerance=sampling["tolerance"]))
    lines.append(texts.IMPORTANCE_RULE.format(rule=sampling["rule"]))
    return " ".join(lines)


def importance_table(report: dict[str, Any]) -> str:
    occlusion, permutation = _importances(report)
    namer = _namer(list(occlusion))
    rows = [[namer(n), f"{occlusion[n]:.4f}", f"{permutation.get(n, 0.0):+.4f}"]
            for n in sorted(occlusion, key=lambda n: -occlusion[n])]
    return markdown_table(["feature", "occlusion (mean absolute change of log-odds)",
                           "permutation (accuracy drop)"], rows)


# -- surrogate -------------------------------------------------------------------------------


LOW_FIDELITY = 0.8
RULE = re.compile(r"^((?:\|   )*)\|--- (.*)$")


def _weights(report: dict[str, Any]) -> Scores:
    """The sparse linear surrogate's non-zero weights, features named for a reader; named by
    class when there are several."""
    by_class = report["surrogate"].get("linear", {}).get("weights", {})
    features = sorted({name for weights in by_class.values() for name in weights})
    namer = _namer(features, report)
    several = len(by_class) > 1
    return {f"class {label}: {namer(name)}" if several else namer(name): weight
            for label, weights in by_class.items() for name, weight in weights.items()}


def _parse_rules(lines: list[tuple[int, str]], i: int) -> tuple[tuple[Any, ...], int, int]:
    """One node of scikit-learn's ``export_text`` from line ``i``: a leaf ("class: X") or a
    split (two conditions, each with its subtree); merges a split whose two subtrees are the
    same leaf. Returns the node, the next line and how many splits were merged."""
    depth, text = lines[i]
    if text.startswith("class:"):
        return ("leaf", text), i + 1, 0
    left, j, pruned_left = _parse_rules(lines, i + 1)
    if j >= len(lines) or lines[j][0] != depth:
        raise ValueError("not a binary split")
    right_condition = lines[j][1]
    right, k, pruned_right = _parse_rules(lines, j + 1)
    pruned = pruned_left + pruned_right
    if left == right and left[0] == "leaf":
        return left, k, pruned + 1
    return ("split", text, left, right_condition, right), k, pruned


def _render_rules(node: tuple[Any, ...], depth: int, rename: Callable[[str], str]) -> list[str]:
    indent = "|   " * depth + "|--- "
    if node[0] == "leaf":
        return [indent + node[1]]
    _, left_condition, left, right_condition, right = node
    return [indent + rename(left_condition), *_render_rules(left, depth + 1, rename),
            indent + rename(right_condition), *_render_rules(right, depth + 1, rename)]


def readable_rules(rules: str, feature_names: list[str],
                   report: dict[str, Any] | None = None) -> tuple[str, int]:
    """The surrogate tree's rules with splits whose branches give the same class merged, and
    features named for a reader; the rules as they are when they do not parse."""
    parsed = [RULE.match(line) for line in rules.strip("\n").splitlines()]
    if not parsed or not all(parsed):
        return rules, 0
    lines = [(len(m.group(1)) // 4, m.group(2)) for m in parsed if m]
    namer = _namer(feature_names, report)

    def rename(condition: str) -> str:
        feature, sep, rest = condition.partition(" ")
        return namer(feature) + sep + rest

    try:
        tree, end, pruned = _parse_rules(lines, 0)
    except (ValueError, IndexError):
        return rules, 0
    if end != len(lines):
        return rules, 0
    return "\n".join(_render_rules(tree, 0, rename)) + "\n", pruned


def surrogate_figure(report: dict[str, Any]) -> Figure:
    weights = _weights(report)
    order = sorted(weights, key=lambda n: -abs(weights[n]))[:TOP_K]
    fig = _figure(1.6 + 0.28 * max(1, len(order)), 7.0)
    ax = fig.subplots()
    if order:
        _barh(ax, weights, order, str)
    else:
        ax.text(0.5, 0.5, texts.NO_WEIGHTS, ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(texts.WEIGHT_AXIS)
    _caption(fig, report)
    return fig


def _rule_features(rules: str) -> list[str]:
    return sorted({m.group(2).split(" ")[0] for line in rules.splitlines()
                   if (m := RULE.match(line)) and not m.group(2).startswith("class")})


def surrogate_reading(report: dict[str, Any], _class_names: list[str]) -> str:
    surrogate = report["surrogate"]
    if surrogate.get("fidelity") is None:
        return texts.SURROGATE_NONE
    weights = _weights(report)
    bounds = (surrogate.get("intervals") or {}).get("fidelity")
    text = texts.SURROGATE_READING.format(
        interval=f"; 95% CI {bounds[0]:.0%} to {bounds[1]:.0%}" if bounds else "",
        depth=surrogate["max_depth"], n=surrogate["n_probes"], fidelity=surrogate["fidelity"],
        linear=surrogate["linear"]["fidelity"], k=len(weights), top=_top(weights, str, signed=True))
    if surrogate["fidelity"] < LOW_FIDELITY:
        text = texts.SURROGATE_LOW_FIDELITY.format(
            fidelity=surrogate["fidelity"], disagree=1 - surrogate["fidelity"]) + "\n\n" + text
    features = sorted({*_rule_features(surrogate["rules"]),
                       *(n for w in surrogate["linear"].get("weights", {}).values() for n in w)})
    rules, pruned = readable_rules(surrogate["rules"], features, report)
    if pruned:
        text += "\n\n" + texts.SURROGATE_PRUNED.format(n=pruned)
    return f"{text}\n\n```text\n{rules}```"


# -- per audit -------------------------------------------------------------------------------


View = Callable[[dict[str, Any]], Figure]
Reading = Callable[[dict[str, Any], list[str]], str]
VIEWS: dict[str, tuple[View, Reading]] = {
    "fairness": (fairness_figure, fairness_reading),
    "counterfactual": (counterfactual_figure, counterfactual_reading),
    "importance": (importance_figure, importance_reading),
    "surrogate": (surrogate_figure, surrogate_reading),
    "representation": (representation_figure, representation_reading),
}
TABLES: dict[str, Callable[[dict[str, Any]], str]] = {
    "fairness": fairness_table,
    "counterfactual": counterfactual_table,
    "importance": importance_table,
}


def section(name: str, report: dict[str, Any], class_names: list[str]) -> tuple[Figure, str]:
    """One audit's figure and its reading under a heading that names the mode."""
    figure, reading = VIEWS[name]
    heading = texts.SECTION_HEADING.format(title=title(name),
                                           mode=report_mode_label(report))
    return figure(report), f"{heading}\n\n{reading(report, class_names)}"


def markdown_sections(report: dict[str, Any], class_names: list[str]) -> list[str]:
    """The Markdown report's part on bias: the queries it took, then each audit's reading and
    its numbers as a table."""
    parts = [f"## {texts.BIAS_COST_TITLE}", cost_table(report["plan"])]
    for name in sections():
        if name in report:
            parts += [f"## {title(name)}", VIEWS[name][1](report, class_names)]
            if name in TABLES:
                parts.append(TABLES[name](report))
    return parts
