"""The mode registry, and the sealed mode in the report, the CLI and the Space.

The registry checks and the Space's refusals run no FHE. One real-FHE sealed audit runs through
the Space (breast-cancer-xgb, one batch of 16, the cheapest sealed circuit); the Bias tab's
sealed fairness audit on adult-income-logreg (keys of about 2 GB) is marked heavy.
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

# Concrete keeps a thread-local tag stack that exists only in the thread that imported it: a
# sealed audit in a Gradio worker would otherwise import it there first, and any later
# compile of a Python model on pytest's main thread (test_challenge's world) would fail.
import concrete.fhe  # noqa: F401
import numpy as np
import pytest
from gradio_client import Client
from support import CHROMIUM, TIMEOUT_MS

from fhe_backend import cli, modes
from fhe_backend.auditor.sealed import SealedCounts
from fhe_backend.audits.uncertainty import wilson
from fhe_backend.hub.references import resolve_model
from fhe_backend.hub.zoo import model_ids
from fhe_backend.orchestration import sealed_pbs_per_batch
from fhe_backend.report import markdown_report
from fhe_backend.sealed.circuit import has_sealed
from fhe_backend.sealed.report import ROC_AUC_REASON, sealed_fields

XGB, BREAST = "breast-cancer-xgb", "breast-cancer-test"
# A sealed batch costs its count and one add of the chain (the module's figures, as built).
XGB_PBS_PER_BATCH = sealed_pbs_per_batch(resolve_model(XGB).manifest.sealed)
ADULT, ADULT_BENCHMARK = "adult-income-logreg", "adult-income-test"
SHOTS = Path("/tmp/ui")


def _sealed(model: str) -> None:
    if model not in model_ids() or not has_sealed(resolve_model(model)):
        pytest.skip(f"the zoo has no sealed circuit for {model}")


# -- one registry ----------------------------------------------------------------------------


def _radios(demo: Any) -> dict[str, list[str]]:
    return {block.elem_id: [value for _, value in block.choices]
            for block in demo.blocks.values()
            if getattr(block, "elem_id", None) in ("mode", "bias-mode", "compare-mode")}


def test_every_mode_is_offered_linked_and_parsed(app: tuple[Any, str]) -> None:
    from fhe_backend.ui import links, render

    radios = _radios(app[0])
    assert radios["mode"] == radios["bias-mode"] == list(modes.MODES)
    assert radios["compare-mode"] == list(modes.PER_SAMPLE)  # sealed needs per-model keys
    for name, mode in modes.MODES.items():
        link = links.parse({"tab": "audit", "fhe": name}, ["audit"])
        assert link.fhe == name and not link.warnings
        assert links.query("audit", {"fhe": name}) == f"?tab=audit&fhe={name}"
        assert render.mode_label(name) == mode.label
    assert modes.MODES[modes.SEALED].label == "Sealed (aggregates only)"
    unknown = links.parse({"tab": "audit", "fhe": "nope"}, ["audit"])
    assert unknown.fhe is None
    assert unknown.warnings == [
        "The link names an FHE mode 'nope' that this Space lacks; use execute, simulate or "
        "sealed."]


def test_cli_takes_every_mode_and_the_desk_names_sealed_as_the_registry():
    from fhe_backend.challenge import desk

    parser = cli.build_parser()
    for name in modes.MODES:
        args = parser.parse_args(["audit", "--model", "m", "--benchmark", "b", "--fhe", name])
        assert args.fhe == name
    assert desk.SEALED == modes.SEALED
    with pytest.raises(Exception, match="Unknown FHE mode 'nope'; use execute, simulate or "
                                        "sealed"):
        modes.get("nope")


# -- the sealed report's intervals and undefined metrics -------------------------------------


def _counts(positives: list[list[int]], totals: list[list[int]]) -> SealedCounts:
    return SealedCounts(np.array(positives), np.array(totals), ["a", "b"], "sex", 3, 16,
                        values_decrypted=4)


def test_sealed_report_has_wilson_intervals_and_undefined_reasons():
    package = resolve_model(XGB) if XGB in model_ids() else pytest.skip("no breast-cancer-xgb")
    # Group a: 5 negatives (2 predicted positive), 7 positives (6); group b: 4 and 4 (1, 3).
    fields = sealed_fields(_counts([[2, 6], [1, 3]], [[5, 7], [4, 4]]), package)
    tn, fp, fn, tp = 6, 3, 2, 9
    assert fields["metrics"]["confusion_matrix"] == [[tn, fp], [fn, tp]]
    assert fields["intervals"]["accuracy"] == pytest.approx(list(wilson(tn + tp, 20)))
    assert fields["intervals"]["precision"] == pytest.approx(list(wilson(tp, tp + fp)))
    assert fields["intervals"]["recall"] == pytest.approx(list(wilson(tp, tp + fn)))
    assert fields["intervals"]["f1"] is not None and fields["intervals"]["roc_auc"] is None
    assert fields["metrics"]["roc_auc"] is None
    assert fields["undefined_metrics"] == {"roc_auc": ROC_AUC_REASON}
    assert fields["positive_class"] == "benign" and "binary" in fields["averaging"]
    fairness = fields["fairness"]["sex"]
    assert fairness["positive_class"] == "benign"
    assert fairness["intervals"]["groups"]["a"]["tpr"] == pytest.approx(list(wilson(6, 7)))
    # No predicted positive at all: precision is undefined, with its reason, never 0.
    none = sealed_fields(_counts([[0, 0], [0, 0]], [[5, 7], [4, 4]]), package)
    assert none["metrics"]["precision"] is None and none["intervals"]["precision"] is None
    assert "no sample was predicted as 'benign'" in none["undefined_metrics"]["precision"]
    json.dumps(none, allow_nan=False)
    report = {"model": XGB, "benchmark": BREAST, "fhe_mode": "execute", "n_samples": 20,
              "transcript": {"model_fingerprint": "f"}, **none}
    text = markdown_report(report)
    assert "- mode: execute, sealed: only aggregate counts were decrypted (3 batch(es)" in text
    assert "## What was decrypted\n\n- 4 counts for the whole run (3 batch(es)" in text
    assert "| accuracy | 0.450 (95% CI" in text
    assert f"| roc_auc | n/a ({ROC_AUC_REASON}) |" in text
    assert "| precision | n/a (no sample was predicted as 'benign') |" in text


# -- the Space: offered only with a sealed circuit, capped, refused in one sentence ----------


def test_sealed_is_offered_only_for_models_with_a_sealed_circuit(client: Client) -> None:
    _sealed(XGB)
    radio, _card, _schema, _bench, slider, estimate, cli_line = client.predict(
        XGB, BREAST, "sealed", api_name="/select_model")
    assert [c[1] for c in radio["choices"]] == list(modes.MODES) and radio["value"] == "sealed"
    assert slider["maximum"] == 32 and slider["value"] == 32  # two batches of 16
    assert "2 batches of 16" in slider["info"]
    assert "2 batch(es)** of 16" in estimate and f"{XGB_PBS_PER_BATCH} PBS per batch" in estimate
    assert "--sealed --limit 32" in cli_line
    from fhe_backend.hub.zoo import benchmarks_for
    from fhe_backend.ui import render

    plain = next((m for m in model_ids() if not has_sealed(resolve_model(m))), None)
    if plain is not None:  # a model without a sealed circuit: sealed is not offered, and why
        bench = benchmarks_for(plain)[0]
        radio, *_ = client.predict(plain, bench, "sealed", api_name="/select_model")
        assert [c[1] for c in radio["choices"]] == list(modes.PER_SAMPLE)
        assert radio["value"] == "execute"
        why = render.sealed_unavailable(resolve_model(plain))
        assert radio["info"].startswith(why) and why.startswith(f"No sealed mode for {plain}: ")
        with pytest.raises(Exception, match=f"Model '{plain}' has no sealed audit circuit"):
            client.predict(plain, bench, "sealed", 16, api_name="/run_audit")


def test_sealed_requests_over_the_cap_or_with_per_sample_audits_are_refused(
        client: Client) -> None:
    _sealed(XGB)
    with pytest.raises(Exception, match=r"Sealed audits are limited to 32 samples on this Space "
                                        r"\(2 batches of 16\) and this request needs 171"):
        client.predict(XGB, BREAST, "sealed", None, api_name="/run_audit")
    with pytest.raises(Exception, match="accuracy and fairness only; importance need"):
        client.predict(XGB, BREAST, "sealed", 16, "importance", api_name="/run_audit")
    if ADULT in model_ids():
        estimate, _ = client.predict(ADULT, ADULT_BENCHMARK, ["fairness", "importance"],
                                     "sealed", 20, 0, api_name="/bias_describe")
        pbs = sealed_pbs_per_batch(resolve_model(ADULT).manifest.sealed)  # count + one add
        assert f"{pbs} PBS per batch" in estimate
        assert "untick importance, which need per-sample outputs" in estimate
        with pytest.raises(Exception, match="untick importance"):
            client.predict(ADULT, ADULT_BENCHMARK, ["fairness", "importance"], "sealed", 20,
                           0, api_name="/bias_audit")


@pytest.mark.parametrize("limit", [float("inf"), float("-inf"), 10**400],
                         ids=["inf", "-inf", "400 digits"])
def test_an_api_limit_past_floats_or_a_mode_that_is_not_text_gets_one_sentence(limit: Any):
    """The API takes any JSON: an infinite or 400-digit limit raised OverflowError, and a mode
    sent as a list raised TypeError (unhashable), instead of the sentences the page shows."""
    import gradio as gr

    from fhe_backend.ui import handlers

    with pytest.raises(gr.Error, match="whole number of at least 1"):
        handlers.run_audit_api(XGB, BREAST, "sealed", limit)
    with pytest.raises(gr.Error, match="Unknown FHE mode"):
        handlers.run_audit_api(XGB, BREAST, ["sealed"], 16)  # type: ignore[arg-type]
    with pytest.raises(modes.AuditError, match="Unknown FHE mode"):
        modes.get(["sealed"])  # type: ignore[arg-type]


def test_a_link_restores_the_sealed_mode(client: Client) -> None:
    from fhe_backend.ui import handlers

    _sealed(XGB)

    request = types.SimpleNamespace(
        query_params={"tab": "audit", "model": XGB, "fhe": "sealed", "samples": "16"})
    _model, radio, *_rest = handlers.load_page(request)
    assert radio.value == "sealed"
    banner = _rest[6]
    assert "opened from a link" in banner


# -- real FHE: one batch of the cheapest sealed circuit --------------------------------------


def test_sealed_audit_in_the_space_decrypts_only_counts(client: Client) -> None:
    _sealed(XGB)
    # As the page does: choosing the model sets the Mode radio's choices for this session (an
    # earlier test chose a model without a sealed circuit, which left execute chosen and
    # dropped sealed from them: Gradio now refuses "sealed" in this session until then).
    client.predict(XGB, BREAST, "execute", api_name="/select_model")
    banner, metrics, _plot, figures, preview, transcript, files, _verdict = client.predict(
        XGB, BREAST, "sealed", 16, api_name="/audit")
    assert "Mode: Sealed (aggregates only)" in banner and "16 samples" in banner
    headers = metrics["headers"]
    assert headers[-1] == "95% interval"
    from fhe_backend.ui.render import metric_label

    rows = {row[0]: row[1:] for row in metrics["value"]["data"]}
    roc_auc = rows[metric_label("roc_auc")]  # no scores are decrypted: n/a, and why
    assert rows[metric_label("accuracy")][1].startswith("[") and roc_auc[1] == "n/a"
    assert roc_auc[0].startswith("n/a (")
    assert rows["confusion matrix equal to the clear circuit's"][0] in ("yes", "no")
    assert dict(figures["value"]["data"])["batches (samples per batch)"] == "1 (16)"
    assert len(preview["value"]) == 128  # the first input ciphertext's first 64 bytes in hex
    view = transcript["value"]
    assert view["fhe_mode"] == "sealed"
    assert view["decrypted"]["n_batches"] == 1 and view["decrypted"]["values_total"] == 4
    assert view["decrypted"]["per_batch"] is False
    assert "prediction" not in json.dumps(view).replace("predicted", "")
    saved = json.loads(next(Path(f) for f in files["value"]
                            if str(f).endswith("-sealed.json")).read_text())
    assert saved["sealed"] is True and saved["fhe_mode"] == "execute"
    assert saved["intervals"]["accuracy"] is not None
    assert saved["undefined_metrics"]["roc_auc"] == ROC_AUC_REASON
    assert "fairness" not in saved  # breast-cancer-test has no sensitive column
    assert sum(map(sum, saved["metrics"]["confusion_matrix"])) == 16
    assert any(str(f).endswith("audit-bundle.zip") for f in files["value"])


@pytest.mark.heavy
def test_bias_tab_sealed_fairness_from_counts(client: Client) -> None:
    _sealed(ADULT)
    outputs = client.predict(ADULT, ADULT_BENCHMARK, ["fairness"], "sealed", 32, 0,
                             api_name="/bias_audit")
    assert "Sealed (aggregates only)" in outputs[0]
    labels = [o.get("label") for o in outputs if isinstance(o, dict)]
    assert "Fairness per group · Sealed (aggregates only)" in labels, labels


# -- in Chromium, dark colour scheme ---------------------------------------------------------


def _dark_page(browser: Any) -> Any:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    context = browser.new_context(viewport={"width": 1280, "height": 900},
                                  color_scheme="dark")
    return context.new_page()


def _low_contrast(page: Any) -> list[str]:
    from test_browser_visitors import LOW_CONTRAST_JS

    return page.evaluate(LOW_CONTRAST_JS)


def test_sealed_link_in_a_dark_browser(app: tuple[Any, str], browser: Any) -> None:
    """``?fhe=sealed`` restores the mode, its cost and cap are shown, every text stays readable;
    the Bias tab says in one sentence which audits a sealed run cannot answer."""
    from playwright.sync_api import expect

    _sealed(XGB)
    page = _dark_page(browser)
    page.goto(f"{app[1]}?tab=audit&model={XGB}&fhe=sealed&samples=16")
    expect(page.locator("#mode input[value=sealed]")).to_be_checked(timeout=TIMEOUT_MS)
    expect(page.locator("#estimate")).to_contain_text("16 samples in 1 batch(es) of 16")
    expect(page.locator("#estimate")).to_contain_text(f"{XGB_PBS_PER_BATCH} PBS per batch")
    expect(page.locator("#samples")).to_contain_text("2 batches of 16")
    expect(page.locator("#result-banner")).to_contain_text("opened from a link")
    assert not _low_contrast(page)
    if ADULT in model_ids():
        page.goto(f"{app[1]}?tab=bias&model={ADULT}&fhe=sealed&samples=16")
        expect(page.locator("#bias-mode input[value=sealed]")).to_be_checked(
            timeout=TIMEOUT_MS)
        expect(page.locator("#bias-estimate")).to_contain_text(
            "untick counterfactual, importance, surrogate", timeout=TIMEOUT_MS)
        assert not _low_contrast(page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "sealed-bias-dark.png"), full_page=True)


@pytest.mark.heavy
def test_sealed_result_in_a_dark_browser(app: tuple[Any, str], browser: Any) -> None:
    """A sealed audit run from the page (one batch, about 3 minutes): the banner names the
    mode, the transcript panel shows what was decrypted, every text stays readable."""
    from playwright.sync_api import expect

    _sealed(XGB)
    page = _dark_page(browser)
    page.goto(f"{app[1]}?tab=audit&model={XGB}&fhe=sealed&samples=16")
    expect(page.locator("#estimate")).to_contain_text("1 batch(es)", timeout=60_000)
    page.locator("#run").click()
    expect(page.locator("#result-banner")).to_contain_text("Sealed (aggregates only)",
                                                           timeout=1_200_000)
    expect(page.locator("#transcript")).to_contain_text("values_total")
    expect(page.locator("#metrics")).to_contain_text("95% interval")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "sealed-audit-dark.png"), full_page=True)
    assert not _low_contrast(page)
