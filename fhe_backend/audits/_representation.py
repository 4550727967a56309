"""Representation: what a published hidden layer encodes, from its decrypted activations.

The queries of this kind go to another circuit than the model's: each layer the owner published
(:mod:`fhe_backend.formats.layers`) is a circuit of its own, with its own keys, so the real
samples are encrypted once more per layer and run on that circuit (``AuditKind.layers``; the
orchestration does it, :class:`fhe_backend.auditor.layers.LayerAuditor` decrypts). Per
sensitive attribute, and per label as a sanity reference, cross-validated linear probes on the
activations are compared with the majority class, the same probe on the inputs and a
permutation control (:mod:`fhe_backend.audits.probing`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._kind import AuditKind, Outputs, Report, labels_for, sensitive_attributes

if TYPE_CHECKING:
    from ..formats.artifacts import ModelPackage


def costs(package: ModelPackage, n_samples: int) -> dict[str, Any]:
    """What the layers cost before anything runs: one query per sample and layer, the PBS per
    sample and the keys of each layer's circuit, and seconds scaled from the model's measured
    time by PBS count (a layer's circuit is a prefix of the model's: the same lookups, fewer)."""
    model_pbs = package.manifest.circuit.get("pbs_count") or 0
    per_sample = package.manifest.measured.get("fhe_s_per_sample")
    layers: dict[str, Any] = {}
    for layer, entry in sorted(package.manifest.representations.items()):
        keys = [entry.get(k) for k in ("size_of_bootstrap_keys", "size_of_keyswitch_keys")]
        pbs = entry.get("pbs_count")
        layers[layer] = {
            "module": entry.get("module"), "width": entry.get("width"), "queries": n_samples,
            "pbs_per_sample": pbs,
            "key_bytes_in_memory": sum(keys) if all(k is not None for k in keys) else None,
            "estimated_fhe_s": (per_sample * n_samples * pbs / model_pbs
                                if per_sample and model_pbs and pbs is not None else None)}
    estimates = [entry["estimated_fhe_s"] for entry in layers.values()]
    return {"queries": n_samples * len(layers), "layers": layers,
            "estimated_fhe_s": sum(estimates) if layers and None not in estimates else None,
            "estimate_basis": "the model's measured seconds per sample, scaled by the layer's "
                              "PBS count over the model's"}


def _targets(out: Outputs, sources: list[str]) -> dict[str, Any]:
    rows = out.rows.loc[sources]
    targets = {attribute: rows[attribute].to_numpy()
               for attribute in sensitive_attributes(out.benchmark)}
    class_names = out.package.manifest.class_names
    labels = labels_for(out.benchmark, out.package, sources)
    return {**targets, "label": [class_names[i] for i in labels]}


def evaluate(out: Outputs) -> dict[str, Any]:
    import numpy as np

    from .probing import FOLDS, PERMUTATIONS, PROBE_CS, binary_target, probe, reading

    schema = out.package.manifest.input_schema
    # Which raw column each model feature comes from (one-hot columns give several).
    feature_columns = np.asarray([step.column for step in schema.steps
                                  for _ in step.feature_names()])
    result: dict[str, Any] = {
        "layers": {layer: {k: out.package.manifest.representations[layer].get(k)
                           for k in ("module", "width", "pbs_count")}
                   for layer in out.activations},
        "method": (f"{FOLDS}-fold stratified cross-validated logistic regression (standardized, "
                   f"L2, C the best of {', '.join(map(str, PROBE_CS))} on the same folds) per "
                   "target, the largest group against the rest; baselines "
                   f"the majority class and the same probe on the model's inputs; "
                   f"{PERMUTATIONS} target permutations for chance; 95% intervals: Wilson "
                   "(accuracy), bootstrap over samples of the out-of-fold scores (ROC-AUC)"),
        "probes": {}}
    for layer, decrypted in out.activations.items():
        sources = decrypted.sources
        inputs = schema.transform(out.rows.loc[sources]).reshape(len(sources), -1)
        probes: dict[str, Any] = {}
        for name, values in _targets(out, sources).items():
            target = binary_target(values)
            if target is None:
                probes[name] = {"reading": f"{name} cannot be probed: its smaller group has "
                                           f"fewer than {FOLDS} of {len(sources)} samples"}
                continue
            y, description = target
            own = feature_columns == name
            proxies = inputs[:, ~own] if name != "label" and own.any() else None
            p = probe(decrypted.scores, inputs, proxies, y, description, out.seed)
            probes[name] = {**p, "reading": reading(name, p)}
        result["probes"][layer] = probes
    return result


def summary(report: Report) -> list[str]:
    r = report["representation"]
    lines = []
    for layer, probes in r["probes"].items():
        info = r["layers"][layer]
        lines.append(f"  representation of layer {layer} ({info['module']}, {info['width']} "
                     "units):")
        lines += [f"    {name}: {p['reading']}" for name, p in probes.items()]
    return lines


def markdown(report: Report) -> list[str]:
    from .uncertainty import format_metric

    r = report["representation"]
    lines: list[str] = []
    for layer, probes in r["probes"].items():
        info = r["layers"][layer]
        lines += ["", f"## What hidden layer {layer} encodes ({info['module']}, {info['width']} "
                      "units)", "", f"Method: {r['method']}.", "",
                  "| target | layer ROC-AUC | inputs ROC-AUC | chance (permuted) | "
                  "majority accuracy | layer accuracy |", "|---|---|---|---|---|---|"]
        for name, p in probes.items():
            if "layer" not in p:
                lines.append(f"| {name} | n/a | n/a | n/a | n/a | n/a |")
                continue
            cells = [format_metric(p["layer"]["roc_auc"], p["layer"]["roc_auc_interval"]),
                     format_metric(p["inputs"]["roc_auc"], p["inputs"]["roc_auc_interval"]),
                     format_metric(p["permutation"]["roc_auc"], p["permutation"]["interval"]),
                     format_metric(p["majority"]["accuracy"], p["majority"]["accuracy_interval"]),
                     format_metric(p["layer"]["accuracy"], p["layer"]["accuracy_interval"])]
            lines.append(f"| {name} ({p['target']}) | " + " | ".join(cells) + " |")
        lines.append("")
        lines += [f"- {name}: {p['reading']}" for name, p in probes.items()]
    return lines


KIND = AuditKind(
    name="representation", title="Hidden-layer probes",
    description="Representation: linear probes on a published hidden layer's activations, per "
                "sensitive attribute, against the inputs and chance",
    needs_sensitive=True, layers=True, evaluate=evaluate, summary=summary, markdown=markdown)
