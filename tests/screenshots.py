"""The README's screenshots, taken from the Space as a visitor sees it (`make screenshots`).

Launches the Space in-process on the embedded zoo, drives Debian's Chromium with Playwright
and writes small PNGs into ``assets/screenshots/``: an audit (simulate, so that it takes
seconds), the bias audits, the sealed mode's cost before a run, the leaderboard of the bundled
demo challenge, and the Audit tab on a 400 px phone in dark mode. Not a test: run it after a
change to the page and look at the pictures.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "assets" / "screenshots"
TIMEOUT_MS = 180_000


def _save(png: bytes, name: str, width: int | None = None) -> None:
    """A palette PNG (a tenth of the size, text stays sharp), at most ``width`` pixels wide."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    if width and image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    OUT.mkdir(parents=True, exist_ok=True)
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(OUT / name, optimize=True)
    print(f"{OUT / name}: {image.width}x{image.height}, {(OUT / name).stat().st_size // 1024} KB")


def _between(page: Any, top: str, bottom: str) -> dict[str, float]:
    """The page region from the top of one element to the bottom of another."""
    a, b = page.locator(top).first.bounding_box(), page.locator(bottom).first.bounding_box()
    scroll = page.evaluate("window.scrollY")  # boxes are in viewport coordinates, clips not
    a["y"], b["y"] = a["y"] + scroll, b["y"] + scroll
    y = a["y"] - 12
    return {"x": 0, "y": y, "width": page.viewport_size["width"],
            "height": b["y"] + b["height"] + 12 - y}


def _audit(page: Any, url: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{url}?tab=audit&model=breast-cancer-logreg&fhe=simulate&samples=40")
    expect(page.locator("#model-card")).to_contain_text("Input features", timeout=TIMEOUT_MS)
    expect(page.locator("#estimate")).to_contain_text("on 40 samples", timeout=TIMEOUT_MS)
    page.locator("#run").click()
    expect(page.locator("#result-banner")).to_contain_text("accuracy", timeout=TIMEOUT_MS)
    page.wait_for_timeout(1500)  # the plots are drawn after the banner
    _save(page.screenshot(full_page=True, clip=_between(page, "#result-banner", "#confusion")),
          "audit.png", 1000)


def _bias(page: Any, url: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{url}?tab=bias&model=adult-income-logreg&fhe=simulate&samples=60")
    expect(page.locator("#bias-estimate")).to_contain_text("total", timeout=TIMEOUT_MS)
    page.locator("#bias-run").click()
    expect(page.locator("#bias-counterfactual-reading")).to_contain_text(
        "flips", timeout=TIMEOUT_MS)
    page.wait_for_timeout(1500)
    _save(page.screenshot(full_page=True, clip=_between(page, "#bias-banner",
                                                        "#bias-counterfactual-reading")),
          "bias.png", 1000)


def _sealed(page: Any, url: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{url}?tab=audit&model=breast-cancer-xgb&fhe=sealed&samples=32")
    expect(page.locator("#mode input[value=sealed]")).to_be_checked(timeout=TIMEOUT_MS)
    expect(page.locator("#estimate")).to_contain_text(re.compile("[Ss]ealed"), timeout=TIMEOUT_MS)
    page.wait_for_timeout(500)
    _save(page.screenshot(full_page=True, clip=_between(page, "#mode", "#estimate")),
          "sealed.png", 1000)


def _leaderboard(page: Any, url: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{url}?tab=leaderboard")
    expect(page.locator("#lb-table")).to_contain_text("demo", timeout=TIMEOUT_MS)
    page.wait_for_timeout(500)
    _save(page.screenshot(full_page=True, clip=_between(page, "#lb-challenge", "#lb-table")),
          "leaderboard.png", 1000)


def _phone(browser: Any, url: str) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 400, "height": 860}, color_scheme="dark",
                                  device_scale_factor=1)
    page = context.new_page()
    page.goto(url)
    expect(page.locator("#model-card")).to_contain_text("Input features", timeout=TIMEOUT_MS)
    page.wait_for_timeout(500)
    _save(page.screenshot(), "phone-dark.png")
    context.close()


def main() -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ["GRADIO_TEMP_DIR"] = tempfile.mkdtemp(prefix="fhe-audit-shots-")
    sys.path[:0] = [str(REPO / "tests"), str(REPO)]  # support.py, and this checkout's package
    from playwright.sync_api import sync_playwright
    from support import CHROMIUM, CHROMIUM_ARGS

    from fhe_backend.ui import build_demo, launch_options

    demo = build_demo()
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **launch_options())
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                 args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1280, "height": 900},
                                          device_scale_factor=1)
            page = context.new_page()
            for shot in (_audit, _bias, _sealed, _leaderboard):
                shot(page, url)
            context.close()
            _phone(browser, url)
            browser.close()
    finally:
        demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
