"""One registry of audit kinds (issue 16): every kind implements the interface and has a view,
and a kind added to the registry reaches the CLI's --audits, the Bias tab's choices and cost
rows, the plan, the evaluation, the CLI's text and the Markdown report with nothing else
changed."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import numpy as np
import pytest

from fhe_backend import audits
from fhe_backend.auditor.client import Decrypted
from fhe_backend.auditor.probes import Query
from fhe_backend.audits import AUDITS, AuditKind, AuditOptions, Outputs, Planning
from fhe_backend.cli import _metrics_text, build_parser
from fhe_backend.errors import AuditError
from fhe_backend.hub.references import resolve_benchmark, resolve_model
from fhe_backend.report import markdown_report
from fhe_backend.ui import bias, bias_render

MODEL, BENCHMARK = "breast-cancer-logreg", "breast-cancer-test"


def test_every_kind_implements_the_interface_and_has_a_view():
    assert list(AUDITS) == ["accuracy", "fairness", "counterfactual", "importance", "surrogate",
                            "representation"]
    probes = [probe for kind in AUDITS.values() for probe in kind.queries]
    assert len(probes) == len(set(probes)), "a probe kind belongs to one audit"
    for name, kind in AUDITS.items():
        assert isinstance(kind, AuditKind) and kind.name == name
        assert kind.title and kind.description.lower().startswith(name)
        assert all(isinstance(k, str) and v for k, v in kind.queries.items())
        assert (kind.plan is not None) == bool(kind.queries), name  # probes need a plan
        if not kind.always:
            assert None not in (kind.evaluate, kind.summary, kind.markdown), name
            assert name in bias_render.VIEWS, f"{name} has no view in the Bias tab"
    assert set(bias_render.VIEWS) == set(bias_render.sections())


def test_the_tab_and_the_cli_say_what_they_said_before_the_registry():
    assert bias_render.audits_info() == ("Accuracy is always measured. Fairness, "
                                         "counterfactual and representation need a benchmark "
                                         "with sensitive attributes.")
    assert bias_render.cost_rows()["samples"] == "accuracy and fairness (the samples themselves)"
    assert _audits_help() == ("comma-separated: accuracy,fairness,counterfactual,importance,"
                              "surrogate,representation (accuracy is always included)")
    with pytest.raises(AuditError, match="choose from accuracy, fairness"):
        AuditOptions.parse("fairness,nonsense")


def _audits_help() -> str:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    (action,) = [a for a in sub.choices["audit"]._actions if a.dest == "audits"]
    return action.help


def _plan(p: Planning) -> list[Any]:
    """One probe per sample: the sample itself, unchanged, named as a probe."""
    frame = p.benchmark.frame.reset_index(drop=True)
    return [(frame, [Query(s, {"kind": "echo"}) for s in p.benchmark.sample_ids()])]


def _evaluate(out: Outputs) -> dict[str, Any]:
    echo = out.decrypted.select("echo")
    same = dict(zip(out.real.sources, out.real.predictions, strict=True))
    return {"n_probes": len(echo.queries),
            "agree": sum(int(same[q.source] == p) for q, p in zip(echo.queries,
                                                                   echo.predictions,
                                                                   strict=True))}


ECHO = AuditKind(
    name="echo", title="Echo", description="Echo: each sample asked twice",
    queries={"echo": "echo: the samples again"}, plan=_plan, evaluate=_evaluate,
    summary=lambda report: [f"  echo: {report['echo']['agree']} answers agree"],
    markdown=lambda report: ["", "## Echo", "", f"- agree: {report['echo']['agree']}"])


@pytest.fixture
def echo(monkeypatch):
    monkeypatch.setitem(AUDITS, "echo", ECHO)
    return ECHO


def test_a_registered_kind_reaches_the_cli_and_the_tab(echo):
    assert "echo" in _audits_help().split(" ")[1].split(",")
    assert AuditOptions.parse("echo").audits == ("accuracy", "echo")
    assert (echo.description, "echo") in bias_render.audit_choices()
    assert bias_render.cost_rows()["echo"] == "echo: the samples again"
    bench = dataclasses.replace(resolve_benchmark(BENCHMARK), sensitive_columns=[])
    assert bias.fitting_audits(bench) == ["importance", "surrogate", "echo"]


def test_a_registered_kind_is_planned_evaluated_and_reported(echo):
    package, bench = resolve_model(MODEL), resolve_benchmark(BENCHMARK).head(6)
    options = AuditOptions.parse("echo")
    plan = audits.build_plan(bench, package, options)
    summary = audits.plan_summary(plan, package, "simulate")
    assert summary["queries"] == {"samples": 6, "echo": 6} and summary["n_queries"] == 12
    # Stand-in answers (no circuit: the routing is under test), the same for a sample and its
    # probe, one class or the other by the sample's position.
    position = {s: i for i, s in enumerate(bench.sample_ids())}
    answers = Decrypted(plan.queries, np.array([[0.3, 0.7] if position[q.source] % 2 else
                                                [0.8, 0.2] for q in plan.queries]))
    report = {"model": MODEL, "benchmark": BENCHMARK, "fhe_mode": "simulate", "n_samples": 6,
              "transcript": {"model_fingerprint": "f"},
              **audits.evaluate(answers, bench, package, options)}
    assert report["echo"] == {"n_probes": 6, "agree": 6}
    assert "  echo: 6 answers agree" in _metrics_text(report).splitlines()
    assert "## Echo" in markdown_report(report)
    assert report["readings"]["conclusive"] is False  # a behaviour audit on 6 samples


def test_audits_option_tolerates_empty_entries_and_keeps_one_of_each():
    # "accuracy," (a trailing comma) or "" named an unknown audit called '' before.
    assert AuditOptions.parse("").audits == ("accuracy",)
    assert AuditOptions.parse("fairness,").audits == ("accuracy", "fairness")
    assert AuditOptions.parse(" , fairness ,fairness,accuracy").audits == ("accuracy", "fairness")
    with pytest.raises(AuditError, match="Unknown audit"):
        AuditOptions.parse("ａｃｃｕｒａｃｙ")  # full-width letters are not a kind's name


def test_an_audit_needing_sensitive_attributes_is_refused_before_anything_runs():
    # Fairness read the attributes only when evaluating: after the whole (FHE) run.
    from fhe_backend.orchestration import plan_audit

    with pytest.raises(AuditError, match="no sensitive attributes"):
        plan_audit(MODEL, BENCHMARK, fhe_mode="simulate", limit=3, audits="fairness")


@pytest.mark.parametrize("audits", [123, [1], {"fairness": 1}, ["accuracy", None]])
def test_audits_that_are_not_names_get_one_sentence(audits: Any):
    """The Space's /run_audit takes any JSON: a number or a list of numbers raised TypeError or
    AttributeError ("failed unexpectedly") instead of saying what the audits must be."""
    with pytest.raises(AuditError, match="names separated by commas"):
        AuditOptions.parse(audits)


def test_an_unknown_audit_name_is_quoted_short():
    with pytest.raises(AuditError) as caught:
        AuditOptions.parse(",".join(["x" * 100_000] * 50))
    assert len(str(caught.value)) < 400
