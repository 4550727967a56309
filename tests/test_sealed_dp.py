"""Differentially private sealed counts: the exact sampler, its delta and range, the per-key
daily budget, and the intervals widened for the noise (fhe_backend/sealed/dp*.py, budget.py)."""

from __future__ import annotations

import json
import math
import threading
from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from fhe_backend.auditor.sealed import SealedCounts
from fhe_backend.audits.fairness import compare_groups
from fhe_backend.audits.uncertainty import wilson
from fhe_backend.errors import AuditError, BudgetError, PrivacyError
from fhe_backend.sealed import dp
from fhe_backend.sealed.budget import DPBudget, parse_budget
from fhe_backend.sealed.dp_report import NoiseWidener, _gaps, _group_rates, _rates, clip_counts
from fhe_backend.sealed.report import sealed_fields

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
    assert stats.chisquare(observed, expected).pvalue > 1e-6  # unseeded (secrets): rarely flaky
    assert abs(z.mean()) < 5 * dp.describe(epsilon)["noise_sd"] / math.sqrt(len(z))


def test_noise_is_conditioned_on_the_counters_range(monkeypatch):
    # A source that first draws far outside the range: the draw is redone, never clipped.
    values = iter([-513, 900, 511, -512, 3])
    monkeypatch.setitem(dp.MECHANISMS, "discrete_laplace", replace(
        dp.MECHANISMS["discrete_laplace"], draw_one=lambda _eps: next(values)))
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


def test_an_auditor_choosing_rows_reads_predictions_through_the_noise():
    """The guarantee is per row: one input in 8, 16, ..., 512 rows of a cell spells 7
    predictions in binary above epsilon-1 noise, in one run."""
    info = dp.chosen_rows(1.0)
    m, step = info["predictions_per_cell_per_run"], info["rows_per_step"]
    assert (m, step) == (7, 8) and step * (2 ** m - 1) <= dp.MAX_COUNT < step * (2 ** (m + 1) - 1)
    rng = np.random.default_rng(5)
    bits = rng.integers(0, 2, (5000, m))
    counts = bits @ (step * 2 ** np.arange(m)) + dp.simulated_noise(1.0, (5000,), 11)
    read = np.clip(np.rint(counts / step), 0, 2 ** m - 1).astype(np.int64)
    share = (((read[:, None] >> np.arange(m)) & 1) == bits).all(axis=1).mean()
    assert share >= info["all_right"] - 0.01 and share > 0.95
    assert dp.chosen_rows(0.05)["predictions_per_cell_per_run"] == 3  # even at the least epsilon


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


# -- the widened intervals ---------------------------------------------------------------------

CLASSES = SimpleNamespace(manifest=SimpleNamespace(class_names=["malignant", "benign"]))
DP1 = {"mechanism": "discrete_laplace", "epsilon": 1.0}


def _counts(positives, totals, groups=("all",), column=None) -> SealedCounts:
    return SealedCounts(positives=np.array(positives), totals=np.array(totals),
                        groups=list(groups), group_column=column, n_batches=1, batch_size=16)


def _coverage(cells: np.ndarray, n: int, epsilon: float, replicates: int, seed: int,
              ) -> tuple[float, float]:
    """Share of ``replicates`` test sets of ``n`` rows (cell probabilities ``cells``, rows: true
    label) whose accuracy interval holds the true accuracy, from noisy counts: widened, and
    noise-free (Wilson on the clipped counts)."""
    rng, truth = np.random.default_rng(seed), float(np.trace(cells))
    noise = dp.simulated_noise(epsilon, (replicates, 1, 2), seed + 1)
    held = held_plain = 0
    for r in range(replicates):
        c = rng.multinomial(n, cells.reshape(-1)).reshape(2, 2)
        totals, positives = c.sum(axis=1)[None], c[:, 1][None]
        clipped, _ = clip_counts(positives + noise[r], totals, ["all"])
        correct = int(totals[0, 0] - clipped[0, 0] + clipped[0, 1])
        plain = wilson(correct, n)
        wide = NoiseWidener(clipped, totals, epsilon).rates({"accuracy": plain})["accuracy"]
        held += wide[0] <= truth <= wide[1]
        held_plain += plain[0] <= truth <= plain[1]
    return held / replicates, held_plain / replicates


@pytest.mark.parametrize("n, cells", [
    (171, [[0.35, 0.02], [0.033, 0.597]]),  # breast-cancer-test's size and accuracy 0.947
    (30, [[0.3, 0.0], [0.01, 0.69]]),  # few rows, accuracy 0.99: clipping at the edges
])
@pytest.mark.parametrize("epsilon", [1.0, 0.2])
def test_widened_accuracy_intervals_cover_and_noise_free_ones_do_not(n, cells, epsilon):
    widened, plain = _coverage(np.array(cells), n, epsilon, 2000, seed=7)
    assert widened >= 0.94, (widened, plain)
    assert plain < 0.93 < widened  # the noise-free interval claims more than it knows


BREAST_TOTALS = [[63, 108]]  # malignant, benign rows of breast-cancer-test
BREAST = [[5, 104]]  # predicted benign: 5 false, 104 true positives; accuracy 162/171 = 0.947


def test_at_epsilon_1_the_accuracy_interval_widens_by_at_most_002():
    plain = sealed_fields(_counts(BREAST, BREAST_TOTALS), CLASSES)
    noisy = sealed_fields(replace(_counts(BREAST, BREAST_TOTALS), dp=DP1), CLASSES)
    assert noisy["metrics"]["accuracy"] == pytest.approx(162 / 171)
    (lo, hi), (wlo, whi) = plain["intervals"]["accuracy"], noisy["intervals"]["accuracy"]
    assert wlo <= lo and whi >= hi
    assert 0 < (whi - wlo) - (hi - lo) <= 0.02
    for name in ("balanced_accuracy", "precision", "recall", "f1"):
        (lo, hi), (wlo, whi) = plain["intervals"][name], noisy["intervals"][name]
        assert wlo <= lo and whi >= hi and (whi - wlo) > (hi - lo), name
    assert noisy["intervals"]["roc_auc"] is None and "noise" in noisy["interval_methods"]
    entry = noisy["dp"]
    assert entry["epsilon"] == 1.0 and entry["mechanism"] == "discrete_laplace"
    assert entry["sensitivity"] == 1 and entry["delta"] < 1e-200 and entry["clipped"] == []
    assert "quadrature" in entry["widening"] and "dp" not in plain
    json.dumps(noisy, allow_nan=False)


def test_fairness_intervals_are_widened_too():
    counts = _counts([[6, 40], [3, 20]], [[40, 50], [30, 25]], ("f", "m"), "sex")
    plain = sealed_fields(counts, CLASSES)["fairness"]["sex"]
    noisy = sealed_fields(replace(counts, dp=DP1), CLASSES)["fairness"]["sex"]

    def wider(a, b):
        return b[0] <= a[0] and b[1] >= a[1] and b[1] - b[0] > a[1] - a[0]

    for gap in ("demographic_parity_difference", "equalized_odds_difference",
                "equal_opportunity_difference", "demographic_parity_ratio"):
        assert wider(plain["intervals"][gap], noisy["intervals"][gap]), gap
    for rate in ("selection_rate", "tpr", "fpr"):
        assert wider(plain["pairwise"][rate]["m"]["interval"],
                     noisy["pairwise"][rate]["m"]["interval"]), rate
        assert wider(plain["intervals"]["groups"]["m"][rate],
                     noisy["intervals"]["groups"]["m"][rate]), rate
    assert wider(plain["pairwise"]["selection_rate"]["m"]["ratio_interval"],
                 noisy["pairwise"]["selection_rate"]["m"]["ratio_interval"])
    assert noisy["demographic_parity_difference"] == plain["demographic_parity_difference"]


def test_widened_fairness_intervals_cover_a_zero_gap_under_noise():
    """Two groups of about 50 rows with equal rates (selection rate 0.28), epsilon 0.2: the
    Newcombe difference and the simultaneous parity gap, widened, hold the true 0."""
    rng, replicates, names = np.random.default_rng(3), 200, ["g0", "g1"]
    noise = dp.simulated_noise(0.2, (replicates, 2, 2), 12)
    held = {"difference": [0, 0], "demographic_parity_difference": [0, 0]}
    for r in range(replicates):
        sizes = rng.multinomial(100, [0.5, 0.5])
        positives = rng.binomial(sizes, 0.3)
        totals = np.stack([sizes - positives, positives], axis=1)
        cells = np.stack([rng.binomial(totals[:, 0], 0.1), rng.binomial(totals[:, 1], 0.7)], 1)
        clipped, _ = clip_counts(cells + noise[r], totals, names)
        plain = compare_groups({name: {
            "n": int(totals[g].sum()), "selected": int(clipped[g].sum()),
            "positives": int(totals[g, 1]), "negatives": int(totals[g, 0]),
            "tp": int(clipped[g, 1]), "fp": int(clipped[g, 0])} for g, name in enumerate(names)})
        wide = NoiseWidener(clipped, totals, 0.2).fairness(
            {**plain, "intervals": {**plain["intervals"], "groups": {}}}, names)
        other = next(n for n in names if n != plain["reference_group"])
        for i, result in enumerate((wide, plain)):
            diff = result["pairwise"]["selection_rate"][other]["interval"]
            gap = result["intervals"]["demographic_parity_difference"]
            held["difference"][i] += diff[0] <= 0 <= diff[1]
            held["demographic_parity_difference"][i] += gap[0] <= 0 <= gap[1]
    for kind, (widened, plain_held) in held.items():  # measured: 0.995, 0.97; plain 0.645
        assert widened / replicates >= 0.93 and plain_held / replicates < 0.8, (kind, held)


@pytest.mark.parametrize("positives, totals", [([[6, 40], [3, 20]], [[40, 50], [30, 25]]),
                                               ([[0, 9], [2, 0]], [[0, 9], [12, 3]])])
def test_the_widened_statistics_are_the_reports_own_values(positives, totals):
    """The widening centres on its own vectorised statistics: they must be the report's."""
    counts = _counts(positives, totals, ("f", "m"), "sex")
    fields = sealed_fields(counts, CLASSES)
    base, tot = np.array(positives)[None], np.array(totals)
    for name, value in _rates(base, tot).items():
        expected = fields["metrics"][name]
        assert (value[0] == pytest.approx(expected)) if expected is not None else np.isnan(
            value[0]), name
    fairness = fields["fairness"]["sex"]
    for g, name in enumerate(("f", "m")):
        for rate, value in _group_rates(base, tot, g).items():
            expected = fairness["groups"][name][rate]
            assert (value[0] == pytest.approx(expected)) if expected is not None else np.isnan(
                value[0]), (name, rate)
    for gap, value in _gaps(base, tot).items():
        assert value[0] == pytest.approx(fairness[gap]), gap


def test_noisy_counts_outside_their_range_are_clipped_and_reported():
    fields = sealed_fields(replace(_counts([[-2, 110]], BREAST_TOTALS), dp=DP1), CLASSES)
    assert fields["dp"]["clipped"] == [
        {"group": "all", "true_label": 0, "decrypted": -2, "used": 0},
        {"group": "all", "true_label": 1, "decrypted": 110, "used": 108}]
    assert fields["metrics"]["confusion_matrix"] == [[63, 0], [0, 108]]
    assert fields["metrics"]["accuracy"] == 1.0 and fields["intervals"]["accuracy"][1] == 1.0
    assert fields["intervals"]["accuracy"][0] < wilson(171, 171)[0]
    assert "clipped to [0, its total]" in fields["dp"]["point_values"]
    assert fields["dp"]["chosen_rows"]["predictions_per_cell_per_run"] == 7


def test_a_transcript_with_an_epsilon_out_of_range_is_refused():
    with pytest.raises(PrivacyError, match=r"^Epsilon must be"):
        sealed_fields(replace(_counts(BREAST, BREAST_TOTALS),
                              dp={"mechanism": "discrete_laplace", "epsilon": 0}), CLASSES)
    with pytest.raises(PrivacyError, match=r"^Unknown noise mechanism 'gaussian'"):
        sealed_fields(replace(_counts(BREAST, BREAST_TOTALS),
                              dp={"mechanism": "gaussian", "epsilon": 1}), CLASSES)
