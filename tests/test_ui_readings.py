"""The page's readings and figures as a reader meets them (issue 15): coded categories by their
documented meaning, one name per digit pixel, a warned low-fidelity surrogate, pruned surrogate
splits, fairness tick labels apart. Pure functions: no Space launched."""

from __future__ import annotations

import json
from itertools import combinations
from typing import Any

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from fhe_backend.hub.references import resolve_model
from fhe_backend.hub.zoo import assets_dir, model_ids
from fhe_backend.ui import bias_render, names, render

GERMAN, DIGITS = "german-credit-logreg", "digits-cnn"


def _need(model: str) -> None:
    if model not in model_ids():
        pytest.skip(f"the zoo has no {model}")


def test_code_table_is_vendored_and_complete_for_the_german_model() -> None:
    _need(GERMAN)
    table = json.loads((assets_dir() / "data" / "german-codes.json").read_text())
    schema = resolve_model(GERMAN).manifest.input_schema.to_dict()
    for column in schema["columns"]:
        if column["type"] == "categorical" and column["name"] != "sex":
            assert set(column["categories"]) <= set(table["columns"][column["name"]])
    assert table["columns"]["credit-history"]["A33"] == "delay in paying off in the past"


def test_german_codes_read_with_their_meaning() -> None:
    _need(GERMAN)
    namer = names.namer(["credit-history=A33", "age"])
    assert namer("credit-history=A33") == (
        "credit-history: delay in paying off in the past (A33)")
    assert namer("age") == "age"
    schema = render.schema_markdown(resolve_model(GERMAN))
    assert "no checking account (A14)" in schema


def _surrogate_report(model: str, rules: str, fidelity: float,
                      weights: dict[str, float]) -> dict[str, Any]:
    return {"model": model, "benchmark": "b", "fhe_mode": "simulate", "n_samples": 10,
            "surrogate": {"max_depth": 3, "n_probes": 100, "fidelity": fidelity, "rules": rules,
                          "linear": {"fidelity": 0.9, "weights": {"x": weights}}}}


RULES = """\
|--- pixel_46 <= 0.50
|   |--- pixel_3 <= 1.50
|   |   |--- class: 3
|   |--- pixel_3 >  1.50
|   |   |--- class: 3
|--- pixel_46 >  0.50
|   |--- class: 5
"""


def test_one_name_per_digit_pixel_and_same_class_splits_pruned() -> None:
    _need(DIGITS)
    report = _surrogate_report(DIGITS, RULES, 0.9, {"pixel_46": 0.5})
    reading = bias_render.surrogate_reading(report, ["3", "5"])
    assert "pixel_46" not in reading and "pixel (5, 6)" in reading
    assert "pixel (5, 6)" in bias_render._weights(report)  # the weights say it the same way
    assert "pixel (0, 3)" not in reading  # its split gave class 3 on both sides: pruned
    assert "1 pruned" in reading
    rules = reading.split("```text\n")[1]
    assert rules.count("class: 3") == 1 and rules.count("class: 5") == 1


def test_low_fidelity_surrogate_is_warned() -> None:
    report = _surrogate_report("any", RULES, 0.33, {"a": 1.0})
    assert "Low fidelity (33%)" in bias_render.surrogate_reading(report, ["a", "b"])
    good = _surrogate_report("any", RULES, 0.95, {"a": 1.0})
    assert "Low fidelity" not in bias_render.surrogate_reading(good, ["a", "b"])


def test_unparsable_rules_are_kept_as_they_are() -> None:
    assert bias_render.readable_rules("not a tree", []) == ("not a tree", 0)


def _group(n: int) -> dict[str, Any]:
    return {"n": n, "selection_rate": 0.5, "tpr": 0.5, "fpr": 0.5, "accuracy": 0.5}


def test_fairness_tick_labels_do_not_overlap() -> None:
    report = {"model": GERMAN, "benchmark": "german-credit-test", "fhe_mode": "simulate",
              "n_samples": 300,
              "fairness": {
                  "sex": {"groups": {"female": _group(90), "male": _group(210)},
                          "demographic_parity_difference": 0.1},
                  "age-group": {"groups": {"25 and over": _group(250), "under 25": _group(50)},
                                "demographic_parity_difference": 0.2}}}
    fig = bias_render.fairness_figure(report)
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    boxes = [label.get_window_extent(renderer) for ax in fig.axes
             for label in ax.get_xticklabels() if label.get_text()]
    assert len(boxes) == 4
    assert not any(a.overlaps(b) for a, b in combinations(boxes, 2))


def test_confusion_matrix_leaves_room_for_the_plot_label() -> None:
    report = {"model": "m", "fhe_mode": "simulate",
              "metrics": {"confusion_matrix": [[1, 2], [3, 4]]}}
    fig = render.confusion_figure(report, ["a", "b"])
    fig.canvas.draw()
    height = fig.get_size_inches()[1]
    # The axes end at least two label lines (2 × LABEL_IN inches) below the figure's top.
    assert (1 - fig.axes[0].get_position().y1) * height >= 2 * render.LABEL_IN - 0.05


def test_metric_intervals_shown_when_the_report_has_them() -> None:
    report = {"metrics": {"accuracy": 0.9, "roc_auc": None}, "clear_reference": {},
              "n_samples": 10, "n_failed": 0,
              "intervals": {"accuracy": [0.8, 0.95], "roc_auc": None}}
    rows = {row[0]: row for row in render.metric_rows(report)}
    accuracy, roc_auc = render.metric_label("accuracy"), render.metric_label("roc_auc")
    assert render.metric_headers(report)[-1] == "95% interval"
    assert rows[accuracy][2] == "[0.8000, 0.9500]" and rows[roc_auc][1:] == ["n/a", "n/a"]
    plain = {k: v for k, v in report.items() if k != "intervals"}
    assert render.metric_headers(plain) == ["metric", "value"]
    assert all(len(row) == 2 for row in render.metric_rows(plain))


def test_metrics_are_explained_and_each_n_a_gives_its_reason() -> None:
    """A non-expert reads what each metric measures, and why a value is missing."""
    reason = "undefined: only one class among the true labels"
    report = {"metrics": {"accuracy": 1.0, "roc_auc": None}, "n_samples": 3, "n_failed": 0,
              "undefined_metrics": {"roc_auc": reason},
              "clear_reference": {"accuracy": 1.0, "agreement": None,
                                  "compared": "not computed: the audit itself ran in the "
                                              "simulator"}}
    rows = dict(render.metric_rows(report))
    assert rows[render.metric_label("roc_auc")] == f"n/a ({reason})"
    assert render.metric_label("balanced_accuracy").startswith(
        "balanced accuracy (balanced_accuracy): mean of each class's recall")
    # Every metric row, the clear reference's included, says what it measures.
    assert all(": " in label for label in list(rows)[:len(render.METRIC_NAMES) + 2])
    agreement = next(v for k, v in rows.items() if k.startswith("agreement"))
    assert agreement == "n/a (not computed: the audit itself ran in the simulator)"
    report.update(model="m", benchmark="b", fhe_mode="simulate")
    assert "clear circuit n/a (not computed: the audit itself ran" in render.banner(report)


def _subsampled_importance() -> dict[str, Any]:
    """An importance result probed on 146 of 1,000 samples: occlusion tight, permutation not."""
    features = [{"name": "age", "importance": 0.4}, {"name": "sex", "importance": 0.0}]
    return {
        "n_queries": 292, "features": features, "method": "occlusion", "score": "s",
        "permutation": {"n_queries": 292, "method": "permutation", "score": "s",
                        "features": [{"name": "age", "importance": 0.05},
                                     {"name": "sex", "importance": 0.0}]},
        "sampling": {
            "rule": "two-stage: a pilot of 100 random samples", "n_available": 1000,
            "pilot": 100, "n_samples": 146, "pilot_needed": 146,
            "reached": {"occlusion": {"tolerance": 0.06, "tight": True,
                                      "half_widths": {"age": 0.05, "sex": 0.0}},
                        "permutation": {"tolerance": 0.01, "tight": False,
                                        "half_widths": {"age": 0.032, "sex": None}}}},
    }


def test_importance_reading_states_its_subsample_and_stopping_rule() -> None:
    report = {"model": "m", "n_samples": 1000, "importance": _subsampled_importance()}
    reading = bias_render.importance_reading(report, ["a", "b"])
    assert "**Samples probed**: 146 of 1000 (a random subsample, sized by a pilot of 100" in reading
    assert "Occlusion: every feature's 95% half-width is within the tolerance of 0.060 " \
           "(largest 0.050)" in reading
    assert "⚠ Permutation: 95% half-widths up to 0.032, over the tolerance of 0.010" in reading
    assert "Stopping rule: two-stage: a pilot of 100 random samples." in reading
    # The probes covered 146 samples, not the 1,000 audited: so do the sentences about them.
    assert "on these 146 samples" in reading and "1000 samples one changed" not in reading
    every = {**report["importance"]["sampling"], "n_samples": 1000}
    whole = {**report, "importance": {**report["importance"], "sampling": every}}
    assert "1000 of 1000 (every sample)" in bias_render.importance_reading(whole, ["a", "b"])


def test_markdown_report_states_the_importance_subsample() -> None:
    from fhe_backend.report import markdown_report

    text = markdown_report({"model": "m", "benchmark": "b", "fhe_mode": "simulate",
                            "n_samples": 1000, "metrics": {},
                            "transcript": {"model_fingerprint": "f"},
                            "importance": _subsampled_importance()})
    section = text.split("## Importance subsample", 1)[1]
    assert "- probed samples: 146 of 1000 (pilot 100)" in section
    assert "- occlusion: largest 95% half-width 0.0500, tolerance 0.0600: reached" in section
    assert "- permutation: largest 95% half-width 0.0320, tolerance 0.0100: not reached" in section
    assert "- rule: two-stage" in section


def test_an_unseen_models_estimate_takes_the_start_up_other_models_paid_here(monkeypatch):
    """Before a model runs here, its start-up is the one other models' first runs took on this
    Space (its load, its warm children), not a constant measured elsewhere."""
    from collections import defaultdict, deque

    from fhe_backend.hub.references import resolve_model
    from fhe_backend.ui import timings

    for name in ("_FIXED", "_PER_SAMPLE", "_START"):
        monkeypatch.setattr(timings, name, defaultdict(lambda: deque(maxlen=timings.KEEP)))
    monkeypatch.setattr(timings, "_SLOWDOWN", {})
    monkeypatch.setattr(timings, "_RAN", set())
    seen, unseen = resolve_model("breast-cancer-logreg"), resolve_model("german-credit-logreg")
    prior = timings.estimate(unseen, 10)
    assert prior is not None and not prior.measured_here
    # Samples as fast as the package says (no slowdown), but a first run that took 60 s besides
    # them: a Space whose start-up is slow.
    per_sample = float(seen.manifest.measured["fhe_s_per_sample"])
    timings.record(seen, 10, 60.0 + 10 * per_sample, [per_sample] * 10)
    slow = timings.estimate(unseen, 10)
    assert slow is not None and slow.seconds > prior.seconds + 40
    assert timings.estimate(unseen, 10).low < slow.seconds < timings.estimate(unseen, 10).high
