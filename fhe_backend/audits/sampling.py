"""How many samples the importance audit probes: enough for tight intervals, no more.

Occlusion and permutation cost samples x columns (x repeats) FHE queries: on the zoo's adult
benchmark that is 24,000 of a full bias audit's 32,000. They are estimated on a random
subsample whose size is chosen before anything is encrypted, by a two-stage rule run on
Concrete's simulator of the same circuit (the auditor holds the model package, so this reveals
nothing new to anyone):

1. pilot: probe ``PILOT`` random samples (all of them if the benchmark has no more);
2. for each feature, the 95% half-width of its mean occlusion score is z * sd / sqrt(n); take
   the smallest n for which every feature's half-width is at most ``RELATIVE`` times the largest
   importance (never below ``ABSOLUTE``);
3. probe that many samples (at least the pilot, at most the benchmark), in FHE.

Occlusion sets the size: its scores are continuous. Permutation importance (a drop of accuracy,
each sample losing or gaining a correct answer) is far noisier per sample: on the adult
benchmark the same tolerance would need several times the benchmark. It is measured on the same
subsample and reported with the half-widths it reached, marked not tight when they exceed the
tolerance. The report states the rule, the pilot, the chosen size and the half-widths reached.
The intervals here are the normal approximation of a mean over samples
(:func:`fhe_backend.audits.uncertainty.half_width`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..auditor.benchmarks import PlainBenchmark
from ..auditor.client import Decrypted
from ..auditor.probes import QueryPlan, baseline, occlusion_rows, permutation_rows, real_plan
from .explain import occlusion, permutation_drops
from .uncertainty import Z95, half_width

PILOT = 100
RELATIVE = 0.15
ABSOLUTE = 0.01
RULE = (f"two-stage: a pilot of {PILOT} random samples (all when fewer) on Concrete's "
        "simulator gives each feature's standard deviation sd; the subsample is the smallest n "
        f"with {Z95:.2f} * sd / sqrt(n) <= max({RELATIVE} * largest importance, {ABSOLUTE}) for "
        "every feature's occlusion score, between the pilot and the benchmark; permutation is "
        "measured on the same subsample")

Simulator = Callable[[QueryPlan], Decrypted]


def tolerance(values: dict[str, list[float]]) -> float:
    largest = max((abs(float(np.mean(v))) for v in values.values() if v), default=0.0)
    return max(RELATIVE * largest, ABSOLUTE)


def needed(values: dict[str, list[float]]) -> int:
    """The smallest n whose half-width meets the tolerance for every feature."""
    tol = tolerance(values)
    sds = [float(np.std(v, ddof=1)) for v in values.values() if len(v) > 1]
    return max((math.ceil((Z95 * sd / tol) ** 2) for sd in sds), default=0)


def per_feature(real: Decrypted, probes: Decrypted, y_true: np.ndarray, columns: list[str],
                ) -> dict[str, dict[str, list[float]]]:
    """Each probed sample's value per feature: |change of log-odds| (occlusion), loss of
    correctness (permutation)."""
    out: dict[str, dict[str, list[float]]] = {"occlusion": {}, "permutation": {}}
    per_sample = occlusion(real, probes.select("occlusion"), columns)["per_sample"]
    for column in columns:
        out["occlusion"][column] = [v[column] for v in per_sample.values() if column in v]
    drops = permutation_drops(real, probes.select("permutation"), y_true)
    for column in columns:
        out["permutation"][column] = list(drops.get(column, []))
    return out


def reached(values: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    """The half-widths an audit reached, per method and feature, against the tolerance."""
    out: dict[str, Any] = {}
    for method, by_feature in values.items():
        widths = {f: half_width(v) for f, v in by_feature.items() if v}
        tol = tolerance(by_feature)
        out[method] = {"tolerance": tol,
                       "half_widths": {f: (w if math.isfinite(w) else None)
                                       for f, w in widths.items()},
                       "tight": all(w <= tol for w in widths.values())}
    return out


def choose_subsample(
    benchmark: PlainBenchmark, columns: list[str], repeats: int, seed: int,
    y_true: Callable[[list[str]], np.ndarray], simulate: Simulator | None,
) -> tuple[list[str], dict[str, Any]]:
    """The sample ids to probe for importance, and the record of how they were chosen."""
    ids = benchmark.sample_ids()
    order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    record: dict[str, Any] = {"rule": RULE, "n_available": len(ids), "pilot": min(PILOT, len(ids))}
    if len(ids) <= PILOT or simulate is None:
        record["n_samples"] = len(ids)
        if simulate is None and len(ids) > PILOT:
            record["note"] = "upper bound: the pilot that sizes the subsample was not run"
        return ids, record
    pilot = subset(benchmark, order[:PILOT])
    plan = real_plan(pilot)
    plan.extend(*occlusion_rows(pilot, columns, baseline(benchmark.frame, columns)))
    plan.extend(*permutation_rows(pilot, columns, repeats, seed))
    answers = simulate(plan)
    real = answers.select(None)
    values = per_feature(real, answers, y_true(real.sources), columns)
    n = max(PILOT, needed(values["occlusion"]))
    record.update(n_samples=min(n, len(ids)), pilot_needed=n)
    return order[:record["n_samples"]], record


def subset(benchmark: PlainBenchmark, ids: list[str]) -> PlainBenchmark:
    """The benchmark's rows with these ids, in the benchmark's order."""
    keep = benchmark.frame[benchmark.id_column].astype(str).isin(set(ids))
    frame = benchmark.frame[keep].reset_index(drop=True)
    return PlainBenchmark(**{**benchmark.__dict__, "frame": frame})
