"""Hostile Space links: a link is anyone's text, and Gradio renders a warning as HTML."""

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
