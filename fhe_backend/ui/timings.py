"""How long a real-FHE audit takes from the click to the result on this Space, estimated from
the Space's own runs.

A run's click-to-result time is ``fixed + n × per_sample``: ``fixed`` is the sandbox child's
start, key generation, the clear reference and the report, ``per_sample`` each sample's
encryption, FHE run and decryption. Every finished audit records both (``per_sample`` from its
transcript's per-sample times, ``fixed`` the rest of the measured wall time), by package
(fingerprint) and by whether it had run in this process before (a first run also compiles and
warms up).
Until a model has run here, its package's figures (measured when it was built) stand in, scaled
by how much slower this Space ran the other models, with the start-up its other models' first
runs took here (a constant measured on a 2-core machine before any ran); the estimate then says
so and gives a wider spread.
"""

from __future__ import annotations

import statistics
import threading
from collections import defaultdict, deque
from dataclasses import dataclass

from ..formats.artifacts import ModelPackage

FIRST, AGAIN = "first run of this model here", "model already run here"
# A first run's start-up besides key generation (child start, compile, clear reference,
# report). german-credit-logreg, 10 samples, first run, on a 2-core x86_64 machine at load 2:
# 7.0 s click to result in a fresh Space, 2.0 to 5.1 s in one that had run other models (warm
# spare children, Concrete's caches); 2.6 s puts the estimate (3.7 s with its keys and samples)
# within 2x of both ends. A loaded Space is slower (breast-cancer-logreg, load 12: 23.7 s): once
# any model ran here, its first run's fixed part is the floor instead, when larger.
START_S = 2.6
# A model's second run, warm, over the first run's fixed part: 0.3 to 0.5 after a cold first
# run at load 12 (breast-cancer-logreg, breast-cancer-xgb), about 1 after a warm one at load 2
# (german-credit-logreg: 2.0 s after a first run of ~2 s); 0.6 is within 2x of both.
AGAIN_RATIO = 0.6
PRIOR_SPREAD = 2.0  # no run of the model here yet: from half to twice the estimate
KEEP = 20  # observations kept per model and state

_LOCK = threading.Lock()
_FIXED: dict[tuple[str, str], deque[float]] = defaultdict(lambda: deque(maxlen=KEEP))
_PER_SAMPLE: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=KEEP))
# This Space's per-sample time over the package's own figure, per model that ran here.
_SLOWDOWN: dict[str, float] = {}
# The fixed part of each package's first run here (child start, compile, key generation, the
# clear reference, the report): what a package that never ran here most likely pays too, on the
# same machine, load and warm children. Key generation differs between circuits; the prior
# never goes below the package's own (scaled) figure.
_START: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=KEEP))
_RAN: set[str] = set()


@dataclass(frozen=True)
class Estimate:
    seconds: float
    low: float
    high: float
    per_sample: float
    measured_here: bool  # from this Space's runs of the model, else the package's figures
    n_runs: int


def state(package: ModelPackage) -> str:
    return AGAIN if package.fingerprint in _RAN else FIRST


def _package_figures(package: ModelPackage) -> tuple[float | None, float]:
    measured = package.manifest.measured
    return measured.get("fhe_s_per_sample"), float(measured.get("keygen_s") or 0.0)


def record(package: ModelPackage, n: int, wall_s: float, sample_seconds: list[float]) -> None:
    """A finished real-FHE audit of ``n`` samples: ``wall_s`` from click to result, and the
    transcript's per-sample FHE times."""
    # By fingerprint: a Hub package may claim a zoo model's id, and its runs were the zoo
    # model's estimate.
    model = package.fingerprint
    package_per_sample, _ = _package_figures(package)
    per_sample = statistics.median(sample_seconds) if sample_seconds else (
        package_per_sample or 0.0)
    with _LOCK:
        fixed = max(0.0, wall_s - n * per_sample)
        if state(package) == FIRST:
            _START[model].append(fixed)
        _FIXED[(model, state(package))].append(fixed)
        _PER_SAMPLE[model].append(per_sample)
        if package_per_sample:
            _SLOWDOWN[model] = per_sample / package_per_sample
        _RAN.add(model)


def estimate(package: ModelPackage, n: int) -> Estimate | None:
    """Click to result for ``n`` samples in real FHE, or None when the package has no measured
    FHE time and the model never ran here."""
    model = package.fingerprint
    package_per_sample, keygen_s = _package_figures(package)
    with _LOCK:
        now = state(package)
        fixed = list(_FIXED.get((model, now), ()))
        if not fixed and now == AGAIN:
            # Only a first run seen: a later one starts warm, shorter by the ratio measured.
            fixed = [f * AGAIN_RATIO for f in _FIXED.get((model, FIRST), ())]
        per_sample_seen = list(_PER_SAMPLE.get(model, ()))
        slowdown = statistics.median(_SLOWDOWN.values()) if _SLOWDOWN else 1.0
        starts = [s for other, seen in _START.items() if other != model for s in seen]
    if per_sample_seen:
        per_sample = statistics.median(per_sample_seen)
    elif package_per_sample:
        per_sample = package_per_sample * slowdown
    else:
        return None
    if fixed:
        mid = statistics.median(fixed) + n * per_sample
        low = min(fixed) + n * min(per_sample_seen or [per_sample])
        high = max(fixed) + n * max(per_sample_seen or [per_sample])
        # One run says little about the spread: never narrower than ±25 % around the estimate.
        return Estimate(mid, min(low, mid / 1.25), max(high, mid * 1.25), per_sample, True,
                        len(fixed))
    start = max(statistics.median(starts) if starts else 0.0, keygen_s * slowdown + START_S)
    mid = start + n * per_sample
    return Estimate(mid, mid / PRIOR_SPREAD, mid * PRIOR_SPREAD, per_sample, False, 0)
