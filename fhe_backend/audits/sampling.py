"""How many samples the importance audit probes: enough to keep a stated promise, no more.

Occlusion and permutation cost samples x columns (x repeats) FHE queries: on the zoo's adult
benchmark that is 24,000 of a full bias audit's 32,000. They are estimated on a random
subsample whose size is chosen before anything is encrypted, by Stein's two-stage procedure
(Stein 1945, "A two-sample test for a linear hypothesis whose power is independent of the
variance") run on Concrete's simulator of the same circuit (the auditor holds the model
package, so this reveals nothing new to anyone):

1. pilot: probe ``PILOT`` samples drawn by :func:`fhe_backend.auditor.subsample.draw` (all of
   them if the benchmark has no more);
2. the tolerance d = max(``RELATIVE`` x the largest pilot importance, ``ABSOLUTE``) is fixed;
3. n = max over the k features of ceil((t * sd / d)^2), sd the pilot's standard deviation and t
   Student's quantile with pilot - 1 degrees of freedom at 1 - 0.05 / (2k) (Bonferroni over the
   features);
4. probe a fresh draw of n samples (at least the pilot, at most the benchmark), in FHE.

The promise: every feature's mean occlusion score is within d of its value on the population
the benchmark samples, all features at once, with probability at least 95%. Setting n at the
pilot's sd with the normal quantile met its tolerance about half the time (17 of 30 pilots);
per-feature t quantiles covered each feature but all features together only 0.90-0.93 in our
simulations; this rule covered 0.97-0.99, skewed and rare-row features included
(``tests/test_importance_rule.py``). When n exceeds the benchmark every sample is probed and
the record says the promise is not met.

Occlusion sets the size: its scores are continuous. Permutation importance (a drop of accuracy,
each sample losing or gaining a correct answer) is far noisier per sample: on the adult
benchmark the same tolerance would need several times the benchmark. It is measured on the same
subsample and reported with the half-widths it reached, marked not tight when they exceed the
tolerance. The report states the rule, the pilot, the chosen size and the half-widths reached.
The half-widths reached are the normal approximation of a mean over samples
(:func:`fhe_backend.audits.uncertainty.half_width`); each feature's published interval is its
own 95% bootstrap interval (per feature, not simultaneous).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..auditor.benchmarks import PlainBenchmark
from ..auditor.client import Decrypted
from ..auditor.probes import QueryPlan, baseline, occlusion_rows, permutation_rows, real_plan
from ..auditor.subsample import draw
from .explain import occlusion, permutation_drops
from .uncertainty import half_width

PILOT = 100
RELATIVE = 0.15
ABSOLUTE = 0.01
LEVEL = 0.95
RULE = (f"Stein's two-stage procedure: a pilot of {PILOT} stratified random samples (all when "
        "fewer) on Concrete's simulator; the tolerance d = max("
        f"{RELATIVE} x the largest pilot importance, {ABSOLUTE}); the subsample is n = max over "
        "the k features of ceil((t * sd / d)^2), sd each feature's pilot standard deviation and "
        "t Student's quantile (pilot - 1 degrees of freedom) at 1 - 0.05 / (2k), a fresh draw "
        "between the pilot and the benchmark; permutation is measured on the same subsample")
GUARANTEE = ("every feature's occlusion importance within the tolerance of its population "
             "value, all features at once, with probability at least 95%")

Simulator = Callable[[QueryPlan], Decrypted]


def tolerance(values: dict[str, list[float]]) -> float:
    largest = max((abs(float(np.mean(v))) for v in values.values() if v), default=0.0)
    return max(RELATIVE * largest, ABSOLUTE)


def quantile(k: int, pilot: int) -> float:
    """Stein's quantile for ``k`` features at once: Student's t with ``pilot`` - 1 degrees of
    freedom at 1 - 0.05 / (2k)."""
    from scipy import stats

    return float(stats.t.ppf(1 - (1 - LEVEL) / (2 * max(k, 1)), max(pilot - 1, 1)))


def needed(values: dict[str, list[float]], tol: float | None = None) -> int:
    """Stein's second-stage size for the pilot ``values``: every feature's mean within ``tol``
    (default: :func:`tolerance` of the pilot) of the truth, simultaneously, with probability at
    least 95%."""
    tol = tolerance(values) if tol is None else tol
    pilots = [v for v in values.values() if len(v) > 1]
    if not pilots:
        return 0
    t = quantile(len(pilots), min(len(v) for v in pilots))
    return max(math.ceil((t * float(np.std(v, ddof=1)) / tol) ** 2) for v in pilots)


def simultaneous(features: list[dict[str, Any]], record: dict[str, Any]) -> None:
    """Give each occlusion feature the rule's joint statement, importance +- tolerance (at
    least 0: a mean absolute change), as ``simultaneous_interval``, when the rule was met; the
    features' own ``interval`` stays per feature."""
    if not record.get("met") or not record.get("tolerance"):
        return
    d = float(record["tolerance"])
    for feature in features:
        feature["simultaneous_interval"] = [max(0.0, feature["importance"] - d),
                                            feature["importance"] + d]


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


def reached(values: dict[str, dict[str, list[float]]],
            stated: dict[str, float] | None = None) -> dict[str, Any]:
    """The half-widths an audit reached, per method and feature, against the tolerance the
    stopping rule ``stated`` for that method (else the one these values give)."""
    out: dict[str, Any] = {}
    for method, by_feature in values.items():
        widths = {f: half_width(v) for f, v in by_feature.items() if v}
        tol = (stated or {}).get(method) or tolerance(by_feature)
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
    record: dict[str, Any] = {"rule": RULE, "n_available": len(ids), "pilot": min(PILOT, len(ids)),
                              "guarantee": GUARANTEE, "met": False}
    if len(ids) <= PILOT or simulate is None:
        record["n_samples"] = len(ids)
        record["note"] = ("upper bound: the pilot that sizes the subsample was not run"
                          if simulate is None and len(ids) > PILOT else
                          f"every sample probed: the benchmark has no more than the pilot's "
                          f"{PILOT}, so no tolerance is promised")
        return ids, record
    pilot = draw(benchmark, PILOT, seed=seed)
    plan = real_plan(pilot)
    plan.extend(*occlusion_rows(pilot, columns, baseline(benchmark.frame, columns)))
    plan.extend(*permutation_rows(pilot, columns, repeats, seed))
    answers = simulate(plan)
    real = answers.select(None)
    values = per_feature(real, answers, y_true(real.sources), columns)
    tol = tolerance(values["occlusion"])
    n = max(PILOT, needed(values["occlusion"], tol))
    record.update(n_samples=min(n, len(ids)), pilot_needed=n, tolerance=tol, met=n <= len(ids))
    if n > len(ids):
        record["note"] = (f"the rule needs {n} samples and the benchmark has {len(ids)}: every "
                          "sample probed, the tolerance is not guaranteed")
    return draw(benchmark, record["n_samples"], seed=seed).sample_ids(), record


def subset(benchmark: PlainBenchmark, ids: list[str]) -> PlainBenchmark:
    """The benchmark's rows with these ids, in the benchmark's order."""
    keep = benchmark.frame[benchmark.id_column].astype(str).isin(set(ids))
    frame = benchmark.frame[keep].reset_index(drop=True)
    return PlainBenchmark(**{**benchmark.__dict__, "frame": frame})
