"""The Bias tab's view of the representation audit: per published layer and target, the
probe's ROC-AUC on the hidden layer beside the same probe on the inputs and the chance band of
the permutation control, and the audit's readings in words."""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure

from . import texts
from .render import LABEL_IN, report_mode_label


def _rows(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{layer}: {name}", p) for layer, probes in report["representation"]["probes"].items()
            for name, p in probes.items() if "layer" in p]


def representation_figure(report: dict[str, Any]) -> Figure:
    rows = _rows(report)
    height = 1.2 + 0.45 * max(1, len(rows))
    fig = Figure(figsize=(8.0, height + LABEL_IN), layout="constrained")
    ax = fig.subplots()
    for y, (_, p) in enumerate(reversed(rows)):
        low, high = p["permutation"]["interval"]
        ax.barh(y, high - low, left=low, height=0.7, color="lightgray",
                label=texts.LAYERS_CHANCE if y == 0 else None)
        auc, bounds = p["layer"]["roc_auc"], p["layer"]["roc_auc_interval"]
        xerr = [[auc - bounds[0]], [bounds[1] - auc]] if bounds else None
        ax.errorbar(auc, y, xerr=xerr, fmt="o", color="tab:blue", capsize=3,
                    label=texts.LAYERS_LAYER if y == 0 else None)
        ax.plot(p["inputs"]["roc_auc"], y, "x", color="tab:orange",
                label=texts.LAYERS_INPUTS if y == 0 else None)
    ax.set_yticks(range(len(rows)), [name for name, _ in reversed(rows)], fontsize=8)
    ax.set_xlim(0.3, 1.0)
    ax.set_xlabel(texts.LAYERS_AXIS)
    if rows:
        ax.legend(fontsize=7, loc="lower right")
    fig.supxlabel(f"{report['model']} on {report['benchmark']} · {report_mode_label(report)} · "
                  f"{report['n_samples']} samples", fontsize=8, color="dimgray")
    return fig


def representation_reading(report: dict[str, Any], _class_names: list[str]) -> str:
    r = report["representation"]
    parts = [texts.LAYERS_INTRO]
    for layer, probes in r["probes"].items():
        info = r["layers"][layer]
        parts.append(texts.LAYERS_LAYER_HEADING.format(layer=layer, module=info["module"],
                                                      width=info["width"]))
        parts += [f"- **{name}**: {p['reading']}" for name, p in probes.items()]
    parts.append(texts.LAYERS_METHOD.format(method=r["method"]))
    return "\n\n".join(parts)
