"""Differentially private sealed counts: the exact sampler, its delta and range, the per-key
daily budget, and the intervals widened for the noise (fhe_backend/sealed/dp*.py, budget.py)."""

from __future__ import annotations

import json
import math
import threading
from datetime import UTC, datetime

import numpy as np
import pytest
from scipy import stats

from fhe_backend.errors import AuditError, BudgetError, PrivacyError
from fhe_backend.sealed import dp
from fhe_backend.sealed.budget import DPBudget, parse_budget

# -- the mechanism -----------------------------------------------------------------------------


@pytest.mark.parametrize("epsilon", [0.3, 1.0])
def test_the_exact_sampler_draws_the_discrete_laplace_distribution(epsilon):
    z = np.array(dp.draw(epsilon, 20_000))
    assert z.min() >= -dp.NOISE_OFFSET and z.max() < dp.NOISE_OFFSET
    r = math.exp(-epsilon)
    edges = np.arange(-6, 7)  # cells -6..6, and one for each tail
    expected = (1 - r) / (1 + r) * r ** np.abs(edges)
    tail = r ** 7 / (1 + r)
    observed = [*(np.sum(z == k) for k in edges), np.sum(z < -6), np.sum(z > 6)]
    expected = np.array([*expected, tail, tail]) * len(z)
    assert stats.chisquare(observed, expected).pvalue > 1e-4
    assert abs(z.mean()) < 5 * dp.describe(epsilon)["noise_sd"] / math.sqrt(len(z))


def test_noise_is_conditioned_on_the_counters_range(monkeypatch):
    # A source that first draws far outside the range: the draw is redone, never clipped.
    values = iter([-513, 900, 511, -512, 3])
    monkeypatch.setitem(dp.MECHANISMS, "discrete_laplace", dp.Mechanism(
        "discrete_laplace", "", lambda _eps: next(values), dp._laplace_simulated,
        dp._laplace_delta, dp._laplace_sd))
    assert dp.draw(1.0, 3) == [511, -512, 3]


def test_delta_is_the_far_ends_probability_and_negligible_in_range():
    for epsilon in (0.05, 0.3, 1.0):
        r = math.exp(-epsilon)
        edge = (1 - r) / (1 + r) * r ** 511 / (1 - r ** 512)
        assert dp.describe(epsilon)["delta"] == pytest.approx(edge, rel=1e-9)
    assert dp.describe(0.05)["delta"] < 1e-12
    # Below the range the counter's 1024 values would leave a real chance outside.
    assert math.exp(-0.01 * 512) > 1e-3


@pytest.mark.parametrize("bad", [0.0, 0.04, 10.5, float("nan"), "x", None])
def test_epsilon_outside_the_range_is_one_sentence(bad):
    with pytest.raises(PrivacyError, match=r"^Epsilon must be a number from 0.05 to 10") as e:
        dp.check_epsilon(bad)
    assert issubclass(PrivacyError, AuditError) and "\n" not in str(e.value)


def test_describe_states_the_mechanism_and_never_the_noise():
    entry = dp.describe(1)
    assert entry["mechanism"] == "discrete_laplace" and entry["epsilon"] == 1.0
    assert entry["sensitivity"] == 1 and "one row" in entry["neighbouring"]
    assert entry["noise_range"] == [-512, 511]
    assert set(entry) == {"mechanism", "epsilon", "delta", "sensitivity", "neighbouring",
                          "noise_range", "noise_sd", "description"}
    json.dumps(entry, allow_nan=False)


def test_epsilon_is_the_decimal_it_was_written_as():
    assert dp._rational(0.1) == dp.Fraction(1, 10)
    assert dp._rational(2) == 2


# -- the budget --------------------------------------------------------------------------------

NOON = datetime(2026, 12, 6, 12, tzinfo=UTC)
NEXT_DAY = datetime(2026, 12, 7, 0, 0, 1, tzinfo=UTC)


@pytest.mark.parametrize("text, value", [("2/day", 2.0), ("0.5 / day", 0.5), ("3", 3.0),
                                         ("1e-1/DAY", 0.1)])
def test_parse_budget(text, value):
    assert parse_budget(text) == value


@pytest.mark.parametrize("text", ["", "0/day", "-1", "2/week", "inf", "two", "2/day/day"])
def test_a_budget_that_does_not_parse_is_one_sentence(text):
    with pytest.raises(PrivacyError, match=r"^A privacy budget reads like '2/day'"):
        parse_budget(text)


def test_budget_accumulates_refuses_and_resets_the_next_utc_day(tmp_path):
    budget = DPBudget(tmp_path / "b.json")
    for _ in range(10):
        budget.charge("key-a", 0.1, 1.0, now=NOON)  # ten 0.1s fit in 1, float sums or not
    with pytest.raises(BudgetError) as refused:
        budget.charge("key-a", 0.1, 1.0, now=NOON)
    message = str(refused.value)
    assert "spent epsilon 1 of its 1 for today (UTC), 0 left" in message
    assert "resets at 2026-12-07T00:00:00+00:00" in message and "\n" not in message
    assert budget.charge("key-b", 1.0, 1.0, now=NOON) == pytest.approx(0)  # another key
    assert budget.charge("key-a", 0.5, 1.0, now=NEXT_DAY) == pytest.approx(0.5)
    # Past days are pruned: the file holds today's keys only.
    days = json.loads((tmp_path / "b.json").read_text())["days"]
    assert list(days) == ["2026-12-07"] and days["2026-12-07"] == {"key-a": 0.5}
    assert budget.spent("key-a", now=NEXT_DAY) == 0.5


def test_a_run_larger_than_the_whole_budget_is_refused(tmp_path):
    with pytest.raises(BudgetError, match=r"spent epsilon 0 of its 0\.5"):
        DPBudget(tmp_path / "b.json").charge("k", 1.0, 0.5, now=NOON)


@pytest.mark.parametrize("content", [b"{", b"[]", b'{"version": 1, "days": {"x": {}}}',
                                     b'{"version": 1, "days": {"2026-12-06": {"k": -1}}}',
                                     b'{"version": 1, "days": {"2026-12-06": {"k": "1"}}}'])
def test_a_corrupt_budget_file_is_refused_never_reset(tmp_path, content):
    path = tmp_path / "b.json"
    path.write_bytes(content)
    with pytest.raises(BudgetError, match="refused rather than reset"):
        DPBudget(path).charge("k", 1.0, 2.0, now=NOON)
    assert path.read_bytes() == content


def test_concurrent_charges_are_serialized(tmp_path):
    budget, refused = DPBudget(tmp_path / "b.json"), []

    def charge() -> None:
        for _ in range(10):
            try:
                budget.charge("k", 0.25, 3.0, now=NOON)
            except BudgetError:
                refused.append(1)

    threads = [threading.Thread(target=charge) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 40 attempts at 0.25 against 3: exactly 12 fit, whatever the interleaving.
    assert budget.spent("k", now=NOON) == pytest.approx(3.0) and len(refused) == 28


def test_the_budget_file_defaults_to_the_home_folder(monkeypatch, tmp_path):
    from fhe_backend import settings

    monkeypatch.setenv(settings.HOME.name, str(tmp_path))
    monkeypatch.delenv(settings.DP_BUDGET.name, raising=False)
    assert settings.dp_budget_path() == tmp_path / "dp-budget.json"
    monkeypatch.setenv(settings.DP_BUDGET.name, str(tmp_path / "x.json"))
    assert settings.dp_budget_path() == tmp_path / "x.json"
