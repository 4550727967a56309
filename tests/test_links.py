"""Hostile inputs to the Space's pages: a link is anyone's text (and Gradio renders a warning as
HTML), a Hub package's manifest anyone's JSON."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from fhe_backend.ui import compare, links

EVIL = '<a href="https://evil.example/login">Your audit failed: sign in again</a>'


def test_a_links_values_are_escaped_and_cut_in_its_warnings():
    link = links.parse({"tab": EVIL, "fhe": EVIL * 100, "samples": EVIL})
    assert len(link.warnings) == 3
    for warning in link.warnings:
        assert "<a" not in warning and "&lt;a href=" in warning
        assert len(warning) < 400


def test_compare_names_a_few_of_a_thousand_unknown_models(monkeypatch: pytest.MonkeyPatch):
    shown: list[str] = []
    monkeypatch.setattr(compare.gr, "Warning", lambda text, *a, **k: shown.append(text))
    names = ",".join([EVIL] + [f"model-{i}" for i in range(1000)])
    request = SimpleNamespace(query_params={"tab": "compare", "models": names,
                                            "benchmark": EVIL})
    compare.load_page(request)
    assert shown and all("<a" not in text and len(text) < 600 for text in shown)
    assert any("and 996 more" in text for text in shown)


@pytest.mark.parametrize("measured", [{"fhe_s_per_sample": "fast", "keygen_s": "x"},
                                      {"fhe_s_per_sample": -5.0, "machine": "pc"},
                                      {"fhe_s_per_sample": float("nan"), "keygen_s": True}])
def test_a_hub_packages_measured_figures_are_checked_before_a_page_uses_them(measured):
    """A Hub package's manifest is anyone's JSON: a string for keygen_s was a traceback in the
    Space's estimate and model card, a negative time an estimate of -37 s."""
    import dataclasses
    import json

    from fhe_backend.formats.artifacts import MANIFEST, ModelManifest
    from fhe_backend.hub.references import resolve_model
    from fhe_backend.ui import render

    zoo = resolve_model("breast-cancer-logreg")
    data = json.loads((zoo.path / MANIFEST).read_text())
    manifest = ModelManifest.from_dict({**data, "measured": measured}, "Model")
    package = dataclasses.replace(zoo, manifest=manifest)
    assert "-" not in render.estimate(package, 10, "execute").split("for 10")[0]
    assert "nan" not in render.estimate(package, 10, "execute")
    render.model_card(package)


def test_a_package_claiming_a_zoo_id_does_not_move_the_zoo_models_estimate(monkeypatch):
    """Runs were recorded by model id, which a Hub package chooses: an impostor's slow runs
    became the zoo model's "measured here" estimate."""
    from collections import defaultdict, deque

    from fhe_backend.formats.artifacts import ModelPackage
    from fhe_backend.hub.references import resolve_model
    from fhe_backend.ui import timings

    # This process's own runs (other tests') are not this test's: a Space that ran nothing yet.
    for name in ("_FIXED", "_PER_SAMPLE", "_START"):
        monkeypatch.setattr(timings, name, defaultdict(lambda: deque(maxlen=timings.KEEP)))
    monkeypatch.setattr(timings, "_SLOWDOWN", {})
    monkeypatch.setattr(timings, "_RAN", set())

    class Impostor(ModelPackage):
        fingerprint = "f" * 64  # another package under the zoo model's id

    zoo = resolve_model("breast-cancer-logreg")
    assert timings.state(zoo) == timings.FIRST
    timings.record(Impostor(zoo.path, zoo.manifest), 10, 3600.0, [300.0] * 10)
    assert timings.state(zoo) == timings.FIRST
    assert not timings.estimate(zoo, 10).measured_here
