"""The importance audit's promises, checked by simulation (no FHE, a few seconds): the stopping
rule's tolerance holds for all features at once in at least 95% of pilots, and a feature that
moved no sampled row gets an upper bound on the share of rows it acts on, never [0, 0]."""

from __future__ import annotations

import numpy as np
import pytest

from fhe_backend.audits import sampling
from fhe_backend.audits.explain import _with_intervals
from fhe_backend.audits.uncertainty import none_observed_upper

PILOTS = 400


def _scores(kind: str, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Occlusion-like scores (|change of log-odds| >= 0): skewed, heavy-tailed, and one feature
    that acts on few rows."""
    rare = 0.1 if kind == "skewed" else 0.02
    return {
        "dominant": (rng.exponential(1.0, n) if kind == "skewed" else
                     np.where(rng.random(n) < 0.2, rng.exponential(3, n),
                              rng.exponential(0.2, n))),
        "folded": np.abs(rng.normal(0.3, 0.5, n)),
        "lognormal": rng.lognormal(-2, 1.2, n),
        "rare": np.where(rng.random(n) < rare, rng.exponential(5 if rare < 0.1 else 1.5, n),
                         0.0),
        "sparse": np.where(rng.random(n) < 0.3, rng.gamma(0.5, 2, n), 0.0),
    }


@pytest.mark.parametrize("kind", ["skewed", "heavy"])
def test_stopping_rule_tolerance_holds_in_95_percent_of_pilots(kind):
    """Stein's two-stage rule with a Bonferroni t quantile: in each simulated audit the pilot
    fixes the tolerance and the size, a fresh sample of that size is measured, and the promise
    holds when every feature's mean is within the tolerance of its true mean. The old rule (the
    pilot's sd with the normal quantile) held in 0.90-0.93 of pilots here."""
    rng = np.random.default_rng(20)
    truth = {f: float(np.mean(v)) for f, v in _scores(kind, 2_000_000, rng).items()}
    held = 0
    for _ in range(PILOTS):
        pilot = {f: list(v) for f, v in _scores(kind, sampling.PILOT, rng).items()}
        tol = sampling.tolerance(pilot)
        n = max(sampling.PILOT, sampling.needed(pilot, tol))
        final = _scores(kind, n, rng)
        held += all(abs(float(np.mean(final[f])) - truth[f]) <= tol for f in truth)
    assert held / PILOTS >= 0.95, held / PILOTS


def test_stopping_rule_quantile_is_simultaneous():
    """More features, a wider quantile: the promise is for all of them at once."""
    assert sampling.quantile(1, 100) == pytest.approx(1.984, abs=1e-3)  # t_99 at 0.975
    assert sampling.quantile(10, 100) > sampling.quantile(2, 100) > sampling.quantile(1, 100)


def test_a_feature_that_moved_no_sampled_row_gets_an_upper_bound_not_zero_width():
    """A feature acting on 2% of rows, audited on 60 samples, moves none of them in about 30% of
    audits, where a bootstrap read [0, 0], excluding its true importance. Such a feature now has
    no interval but an upper bound on the share of rows it acts on."""
    rng = np.random.default_rng(3)
    share, n, unseen = 0.02, 60, 0
    for _ in range(20):
        rare = np.where(rng.random(n) < share, rng.exponential(2.0, n), 0.0)
        sources = [f"s{i}" for i in range(n)]
        per_sample = {s: {"rare": float(r), "common": 1.0 + i % 3}
                      for i, (s, r) in enumerate(zip(sources, rare, strict=True))}
        features = [{"name": "rare", "importance": float(rare.mean())},
                    {"name": "common", "importance": 2.0}]
        out = _with_intervals(features, per_sample, sources)[0]
        assert out["moved_rows"] == int(np.sum(rare > 0))
        if out["moved_rows"] == 0:
            unseen += 1
            assert out["interval"] is None and out["moved_share_upper"] >= share
            assert out["reading"].startswith(f"no effect on these {n} samples; it acts on at "
                                             "most 4.9% of rows")
        else:
            assert out["interval"] is not None and out["interval"][1] > 0
    assert unseen >= 3  # the case is common, not a corner


@pytest.mark.parametrize("n", [3, 30, 60, 171, 1000])
def test_none_observed_bound_fails_at_most_5_percent_of_the_time(n):
    """Exactly: for any true share p, the bound is wrong only when nothing moved (probability
    (1 - p)^n) and the bound is below p; that never exceeds 5%."""
    upper = none_observed_upper(n)
    shares = np.linspace(1e-4, 0.999, 5000)
    wrong = np.where(upper < shares, (1 - shares) ** n, 0.0)
    assert wrong.max() <= 0.05 + 1e-12
    assert upper <= 3.0 / n + 1e-9 or n < 30  # about the rule of three


def test_simultaneous_interval_only_when_the_rule_was_met():
    features = [{"name": "a", "importance": 0.5}, {"name": "b", "importance": 0.02}]
    sampling.simultaneous(features, {"met": True, "tolerance": 0.1})
    assert features[0]["simultaneous_interval"] == pytest.approx([0.4, 0.6])
    assert features[1]["simultaneous_interval"] == pytest.approx([0.0, 0.12])
    unmet = [{"name": "a", "importance": 0.5}]
    sampling.simultaneous(unmet, {"met": False, "tolerance": 0.1})
    assert "simultaneous_interval" not in unmet[0]


def test_space_states_the_promise_when_the_rule_was_met():
    from fhe_backend.ui import bias_render

    record = {"rule": "r", "n_available": 1000, "pilot": 100, "n_samples": 342, "met": True,
              "tolerance": 0.191, "guarantee": sampling.GUARANTEE, "reached": {}}
    reading = bias_render.sampling_reading(record)
    assert "Promise: every feature's occlusion importance within the tolerance" in reading
    assert "(tolerance 0.191)" in reading
    assert "Promise" not in bias_render.sampling_reading({**record, "met": False})
