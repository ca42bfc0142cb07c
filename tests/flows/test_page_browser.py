"""The prototype page in a real headless Chromium (Debian's, driven by Playwright): draw a
digit on the canvas, see the top class and the activation images; a screenshot is kept."""
from __future__ import annotations

import base64
import shutil
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow  # a real Chromium

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no chromium on this machine (make test installs Debian's when it can)")
    return path


def test_drawing_a_digit_shows_the_classification(live):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 1400})
        page.goto(live)
        page.wait_for_function("document.querySelectorAll('#model option').length > 0")
        page.select_option("#model", "mnist/cnn@run-s")
        box = page.locator("#pad").bounding_box()
        x0, y0 = box["x"], box["y"]
        page.mouse.move(x0 + 140, y0 + 50)  # a "7": a bar, then a diagonal down
        with page.expect_response(lambda r: "/predict" in r.url) as answer:
            page.mouse.down()
            for x, y in ((200, 50), (150, 150), (120, 240)):
                page.mouse.move(x0 + x, y0 + y, steps=8)
            page.mouse.up()
        assert answer.value.status == 200
        page.wait_for_function("document.getElementById('top').textContent !== '–'")
        page.wait_for_function("document.querySelectorAll('img.fmap').length > 0")
        shown = page.inner_text("#top")
        maps = page.eval_on_selector_all(
            "img.fmap", "els => els.map(e => e.complete && e.naturalWidth > 0)")
        drawn = page.evaluate("document.getElementById('pad').toDataURL('image/png')")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "prototype-page.png"), full_page=True)
        # Then a file that is no image: the error replaces the answer, never sits above it.
        page.set_input_files("#upload", files=[{"name": "notes.png", "mimeType": "image/png",
                                                "buffer": b"this is not a picture"}])
        page.wait_for_function("document.getElementById('error').textContent.length > 0")
        error = page.inner_text("#error")
        after = page.evaluate("[document.getElementById('top').textContent, "
                              "document.querySelectorAll('#probs .prob').length, "
                              "document.querySelectorAll('#layers .layer').length]")
        page.goto(f"{live}/runs")  # the report is shown whole, not clipped by its frame
        page.wait_for_function("(() => { const f = document.querySelector('iframe'); "
                               "return f.contentDocument && f.contentDocument.readyState === "
                               "'complete' && f.clientHeight > 0; })()")
        page.wait_for_timeout(300)
        frame, report = page.evaluate(
            "(() => { const f = document.querySelector('iframe'); return [f.clientHeight, "
            "f.contentDocument.documentElement.scrollHeight]; })()")
        browser.close()
    assert frame >= report > 100, (frame, report)
    assert error.startswith("Not classified: ") and "not an image" in error, error
    assert after == ["–", 0, 0], after
    assert maps and all(maps)  # each conv layer's feature-map grid rendered
    png = base64.b64decode(drawn.split(",", 1)[1])
    api = httpx.post(f"{live}/predict?model=mnist/cnn@run-s", content=png,
                     headers={"content-type": "image/png"}).json()
    assert shown == api["label"]  # the page shows what the API answers for that drawing
    assert (ARTIFACTS / "prototype-page.png").stat().st_size > 10_000
