"""Behaviour audits from probe outputs: counterfactual flips, feature importance, surrogates.

All of these compare the model's decrypted answers on probes (see ``probes``) with its answers
on the real samples. They run on the auditor's side; the server only ever saw ciphertexts.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.tree import DecisionTreeClassifier, export_text

from ..auditor.client import Decrypted
from ..formats.schema import InputSchema
from .uncertainty import (
    as_interval,
    bootstrap,
    clustered_mean,
    clustered_proportion,
    none_observed_upper,
    wilson,
)

EPS = 1e-9
# Below this many real samples a behaviour audit (fairness, counterfactual, importance,
# surrogate) is inconclusive: its intervals are too wide to clear or blame anything.
MIN_SAMPLES = 30
NO_EFFECT = ("no effect on these {n} samples; it acts on at most {upper:.1%} of rows (exact "
             "95% upper bound)")
NO_NET_EFFECT = "no net effect on these {n} samples ({moved} moved, in both directions)"
CLUSTERED = {
    "flip_rate": "Korn-Graubard interval at the effective sample size (design effect of the "
                 "probes clustered by sample)",
    "mean_score_change": "cluster-robust standard error by sample, Student's t",
    "mean_abs_score_change": "cluster-robust standard error by sample, Student's t",
}
NO_SPREAD = ("every probe changed the score by the same amount (or fewer than two samples): "
             "no spread to measure an interval from")
FIDELITY_INTERVAL = ("Wilson score interval over the held-out probes, for the fitted surrogate "
                     "(its agreement with the model on probes drawn like these)")
DESCRIBES = "describes the fitted surrogate, not an estimate of the audited model"
# Each feature's interval is its own; several features' intervals are not a joint statement.
PER_FEATURE = ("per-feature 95% percentile bootstrap over samples: each feature's own interval, "
               "not simultaneous across features (occlusion's simultaneous_interval, when the "
               "stopping rule was met, holds for all features at once)")


def margin(scores: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """The model's confidence in ``classes``, in log-odds: for a linear model this is linear in
    the inputs, which makes importances comparable with weights."""
    p = np.clip(scores[np.arange(len(scores)), classes], EPS, 1 - EPS)
    return np.log(p / (1 - p))


def _by_source(real: Decrypted) -> dict[str, int]:
    return {source: i for i, source in enumerate(real.sources)}


def _reference(real: Decrypted, probes: Decrypted) -> tuple[np.ndarray, np.ndarray]:
    """For each probe, the index of its real sample; the class whose margin is tracked."""
    index = _by_source(real)
    rows = np.array([index[q.source] for q in probes.queries], dtype=int)
    positive = real.scores.shape[1] == 2
    classes = np.ones(len(rows), dtype=int) if positive else real.predictions[rows]
    return rows, classes


def counterfactual(real: Decrypted, probes: Decrypted) -> dict[str, Any]:
    """Per attribute: how often changing it flips the prediction, and the mean score change,
    each with a 95% interval that treats one sample's probes (one per other value of the
    attribute) as a cluster: they move together, so they are not independent evidence."""
    if not probes.queries:
        return {}
    rows, classes = _reference(real, probes)
    flipped = probes.predictions != real.predictions[rows]
    change = probes.scores[np.arange(len(rows)), classes] - real.scores[rows, classes]
    out: dict[str, Any] = {}
    attributes = np.array([q.probe["attribute"] for q in probes.queries])
    for attribute in sorted(set(attributes)):  # the probes arrive shuffled
        mask = attributes == attribute
        samples, per_sample = np.unique(rows[mask], return_inverse=True)
        sizes = np.bincount(per_sample)
        intervals = {
            "flip_rate": as_interval(clustered_proportion(
                np.bincount(per_sample, weights=flipped[mask]), sizes)),
            "mean_score_change": as_interval(clustered_mean(change[mask], rows[mask])),
            "mean_abs_score_change": as_interval(clustered_mean(np.abs(change[mask]),
                                                                rows[mask]))}
        out[str(attribute)] = {
            "n_probes": int(mask.sum()),
            "n_samples": len(samples),
            "flip_rate": float(flipped[mask].mean()),
            "mean_score_change": float(change[mask].mean()),
            "mean_abs_score_change": float(np.abs(change[mask]).mean()),
            "intervals": intervals,
            "interval_methods": CLUSTERED,
        }
        missing = {name: NO_SPREAD for name, bounds in intervals.items() if bounds is None}
        if missing:  # a number without an interval says why
            out[str(attribute)]["no_interval"] = missing
    return out


def occlusion(real: Decrypted, probes: Decrypted, columns: list[str]) -> dict[str, Any]:
    """Mean |change of the log-odds| when a column is set to the auditor's baseline, globally
    and per sample."""
    rows, classes = _reference(real, probes)
    delta = np.abs(margin(real.scores[rows], classes) - margin(probes.scores, classes))
    per_sample: dict[str, dict[str, float]] = defaultdict(dict)
    totals: dict[str, list[float]] = defaultdict(list)
    for query, d in zip(probes.queries, delta, strict=True):
        feature = query.probe["feature"]
        totals[feature].append(float(d))
        per_sample[query.source][feature] = float(d)
    return {
        "method": "occlusion",
        "n_queries": len(probes.queries),
        "score": "mean |change of log-odds| when the feature is set to the baseline",
        "intervals": PER_FEATURE,
        "features": _with_intervals(_features(columns, totals), per_sample, real.sources),
        "per_sample": dict(per_sample),
    }


def _with_intervals(features: list[dict[str, Any]], per_sample: dict[str, dict[str, float]],
                    sources: list[str]) -> list[dict[str, Any]]:
    """Each feature's 95% interval and rank (1 = most important) with its interval, by
    bootstrap over the real samples, and how many samples it moved. A feature that moved none
    has no interval (a bootstrap of zeros would read [0, 0], as if it could act on no row) but
    an exact upper bound on the share of rows it could act on."""
    names = [f["name"] for f in features]
    samples = [s for s in sources if s in per_sample]
    table = np.array([[per_sample[s].get(n, np.nan) for n in names] for s in samples])
    n = len(samples)

    def ranks(values: np.ndarray) -> np.ndarray:  # 1 = largest; ties share the best rank
        return rankdata(-values, method="min").astype(float)

    def statistic(i: np.ndarray) -> np.ndarray:
        means = np.nanmean(table[i], axis=0) if len(table) else np.zeros(len(names))
        return np.concatenate([means, ranks(np.nan_to_num(means))])

    bounds = bootstrap(statistic, n) if n and names else None
    point = ranks(np.array([f["importance"] for f in features]))
    for j, feature in enumerate(features):
        feature["rank"] = int(point[j])
        feature["interval"] = as_interval(bounds, j)
        rank = as_interval(bounds, len(names) + j)
        feature["rank_interval"] = None if rank is None else [int(np.floor(rank[0])),
                                                              int(np.ceil(rank[1]))]
        moved = int(np.sum(np.nan_to_num(np.abs(table[:, j])) > 0)) if n else 0
        feature["moved_rows"] = moved
        if n and moved == 0:
            upper = none_observed_upper(n)
            feature.update(interval=None, moved_share_upper=upper,
                           reading=NO_EFFECT.format(n=n, upper=upper))
        elif feature["importance"] == 0:
            feature["reading"] = NO_NET_EFFECT.format(n=n, moved=moved)
    return features


def _features(columns: list[str], values: dict[str, list[float]]) -> list[dict[str, Any]]:
    """Mean score per column, in the columns' order (0 for a column without probes)."""
    return [{"name": c, "importance": float(np.mean(values[c])) if values[c] else 0.0}
            for c in columns]


def permutation(
    real: Decrypted, probes: Decrypted, y_true: np.ndarray, columns: list[str]
) -> dict[str, Any]:
    """Accuracy drop when a column is shuffled across the probed samples (mean over repeats)."""
    drops = permutation_drops(real, probes, y_true)
    index = _by_source(real)
    correct = probes.predictions == y_true[[index[q.source] for q in probes.queries]]
    # Per sample and feature: correct before minus correct after shuffling (mean over repeats),
    # whose mean over samples is the accuracy drop; its interval is bootstrapped over samples.
    changes: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    real_ok = real.predictions == y_true
    for query, ok in zip(probes.queries, correct, strict=True):
        changes[query.source][query.probe["feature"]].append(
            float(real_ok[index[query.source]]) - float(ok))
    per_sample = {s: {f: float(np.mean(v)) for f, v in by.items()} for s, by in changes.items()}
    return {
        "method": "permutation",
        "n_queries": len(probes.queries),
        "score": "drop of accuracy when the feature is shuffled across samples",
        "intervals": PER_FEATURE,
        "features": _with_intervals(_features(columns, drops), per_sample, real.sources),
    }


def permutation_drops(real: Decrypted, probes: Decrypted, y_true: np.ndarray,
                      ) -> dict[str, list[float]]:
    """Per column, each probed sample's loss of correctness when the column is shuffled (mean
    over repeats: 1 lost, 0 unchanged, -1 gained); their mean is the accuracy drop on the
    probed samples, whether they are the whole benchmark or a subsample."""
    index = _by_source(real)
    correct = real.predictions == y_true
    per_sample: dict[tuple[str, str], list[float]] = defaultdict(list)
    for query, prediction in zip(probes.queries, probes.predictions, strict=True):
        i = index[query.source]
        per_sample[(query.probe["feature"], query.source)].append(
            float(correct[i]) - float(prediction == y_true[i]))
    drops: dict[str, list[float]] = defaultdict(list)
    for (feature, _), values in per_sample.items():
        drops[feature].append(float(np.mean(values)))
    return drops


def readable_features(frame: pd.DataFrame, schema: InputSchema) -> pd.DataFrame:
    """The model's features in the auditor's units: raw numbers, 0/1 per category."""
    parts = {}
    for step in schema.steps:
        values = frame[step.column]
        if step.op == "one_hot":
            for category, name in zip(step.categories, step.feature_names(), strict=True):
                parts[name] = (values.astype(str) == category).astype(float)
        elif step.op == "ordinal":
            parts[step.column] = pd.Categorical(
                values.astype(str), categories=list(step.categories)).codes.astype(float)
        else:
            parts[step.column] = pd.to_numeric(values).astype(float)
    return pd.DataFrame(parts)


def surrogates(
    frame: pd.DataFrame, labels: np.ndarray, schema: InputSchema, class_names: list[str],
    *, seed: int = 0, max_depth: int = 3,
) -> dict[str, Any]:
    """A shallow tree and a sparse linear model fitted to the model's answers on probes;
    fidelity is their agreement with the model on held-out probes."""
    X = readable_features(frame, schema)
    if len(np.unique(labels)) < 2:
        return {"kind": "decision_tree", "fidelity": None,
                "note": "the model gave one label to every probe; nothing to explain"}
    X_fit, X_held, y_fit, y_held = train_test_split(X, labels, test_size=0.3, random_state=seed)
    tree = DecisionTreeClassifier(max_depth=max_depth, random_state=seed).fit(X_fit, y_fit)
    linear = LogisticRegression(penalty="l1", solver="liblinear", C=0.5, random_state=seed)
    scale = X_fit.std().replace(0, 1)
    linear.fit(X_fit / scale, y_fit)
    names = [class_names[int(c)] for c in tree.classes_]
    weights = linear.coef_ / scale.to_numpy()  # back to the auditor's units
    tree_agrees = int(np.sum(tree.predict(X_held) == y_held))
    linear_agrees = int(np.sum(linear.predict(X_held / scale) == y_held))
    # A binary model has one row of weights, for the second class; else one row per class.
    rows = names[1:] if weights.shape[0] == 1 else names
    return {
        "kind": "decision_tree",
        "max_depth": max_depth,
        "n_probes": len(labels),
        "n_held_out": len(y_held),
        "fidelity": tree_agrees / len(y_held),
        "intervals": {"fidelity": as_interval(wilson(tree_agrees, len(y_held)))},
        "interval_methods": {"fidelity": FIDELITY_INTERVAL},
        "no_interval": {"rules": DESCRIBES, "linear.weights": DESCRIBES},
        "rules": export_text(tree, feature_names=list(X.columns), class_names=names),
        "linear": {
            "kind": "sparse_linear",
            "fidelity": linear_agrees / len(y_held),
            "intervals": {"fidelity": as_interval(wilson(linear_agrees, len(y_held)))},
            "weights": {
                label: {name: float(w) for name, w in zip(X.columns, row, strict=True) if w}
                for label, row in zip(rows, weights, strict=True)
            },
        },
    }
