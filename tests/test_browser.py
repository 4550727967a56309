"""The Space in a real browser: Playwright (Python) drives Debian's Chromium.

Playwright's own browser download cannot run here, so the system Chromium is used; the tests
skip when it is absent. The finished audit is saved as a screenshot to look at.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import CHROMIUM, TIMEOUT_MS

from fhe_backend.hub.zoo import model_ids

SCREENSHOT_COPY = Path("/tmp/ui/audit.png")  # a stable place to look at the last run
BIAS_SCREENSHOT = Path("/tmp/ui/bias.png")
MODEL, BENCHMARK = "breast-cancer-logreg", "breast-cancer-test"
ADULT = "adult-income-logreg"  # its benchmark has sensitive attributes: every audit applies

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}")


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


def _pick(page: Any, dropdown: str, option: str) -> None:
    page.locator(f"{dropdown} input").click()
    page.get_by_role("option", name=option).click()


def test_real_fhe_audit_from_the_page(url: str, page: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page.goto(url)
    expect(page.locator("#model-card")).to_contain_text("Input features", timeout=TIMEOUT_MS)
    _pick(page, "#model", MODEL)
    _pick(page, "#benchmark", BENCHMARK)
    page.locator("#mode").get_by_text("Real FHE").click()
    samples = page.locator("#samples input[type=number]")
    samples.fill("12")
    samples.press("Enter")
    expect(page.locator("#estimate")).to_contain_text("12 samples")

    page.locator("#run").click()
    banner = page.locator("#result-banner")
    expect(banner).to_contain_text("accuracy", timeout=TIMEOUT_MS)
    text = banner.inner_text()
    assert "Mode: real FHE (execute)" in text and "12 samples" in text
    accuracy = float(re.search(r"accuracy (\d\.\d{4})", text).group(1))
    assert 0.0 <= accuracy <= 1.0
    expect(page.locator("#metrics").get_by_role("row", name=re.compile(r"^accuracy"))
           ).to_contain_text(f"{accuracy:.4f}")
    expect(page.locator("#reports")).to_contain_text(".md")

    _screenshot(page, tmp_path, SCREENSHOT_COPY)


def _screenshot(page: Any, tmp_path: Path, copy: Path) -> None:
    shot = tmp_path / copy.name
    page.screenshot(path=str(shot), full_page=True)
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, copy)


def test_bias_tab_reads_its_results_out(url: str, page: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    if ADULT not in model_ids():
        pytest.skip(f"the zoo has no {ADULT}: build it (make assets), or point FHE_AUDIT_ASSETS "
                    "at a zoo that has it")
    page.goto(url)
    page.get_by_role("tab", name="Bias & interpretability").click()
    estimate = page.locator("#bias-estimate")
    expect(estimate).to_contain_text("total", timeout=TIMEOUT_MS)
    # The defaults: a model whose benchmark has sensitive attributes, simulation.
    expect(page.locator("#bias-model input")).to_have_value(ADULT)
    expect(page.locator("#bias-mode input[value=simulate]")).to_be_checked()
    samples = page.locator("#bias-samples input[type=number]")
    samples.fill("30")
    samples.press("Enter")
    # The cost follows the inputs: 30 samples, each with sex swapped once and race 4 times.
    expect(estimate.get_by_role("row", name=re.compile("^counterfactual"))).to_contain_text(
        re.compile(r"\b150\b"))

    page.locator("#bias-run").click()
    flips = page.locator("#bias-counterfactual-reading")
    expect(flips).to_contain_text("Changing sex flips", timeout=TIMEOUT_MS)
    found = re.search(r"Changing sex flips (\d+\.\d)% of predictions \(n=(\d+) probes; "
                      r"95% CI (\d+\.\d)% to (\d+\.\d)%, probes clustered by sample\)",
                      flips.inner_text())
    assert found and found.group(2) == "30", flips.inner_text()
    rate, low, high = (float(found.group(i)) for i in (1, 3, 4))
    assert 0 <= low <= rate <= high <= 100 and low < high  # an interval, never a point
    assert "simulation" in flips.inner_text()  # the mode, next to the result
    expect(page.locator("#bias-fairness-reading")).to_contain_text(
        "demographic parity difference")
    expect(page.locator("#bias-surrogate-reading")).to_contain_text("class:")  # the rules
    expect(page.locator("#bias-reports")).to_contain_text(".md")
    _screenshot(page, tmp_path, BIAS_SCREENSHOT)


def test_link_preselects_the_inputs(url: str, page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(f"{url}?model={MODEL}&benchmark={BENCHMARK}&fhe=simulate")
    expect(page.locator("#model-card")).to_contain_text("Input features", timeout=TIMEOUT_MS)
    expect(page.locator("#benchmark input")).to_have_value(BENCHMARK)
    expect(page.locator("#mode input[value=simulate]")).to_be_checked()
    expect(page.locator("#estimate")).to_contain_text("no FHE")
