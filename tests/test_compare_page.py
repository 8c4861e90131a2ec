"""compare.html: static, relative links, no network; in a real headless Chromium every image decodes, there is
no console error, and the disagreement filter shows only the items where the runs disagree."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
from compare_fixtures import item_row, write_run
from PIL import Image

from portraitcraft.eval.compare import compare
from portraitcraft.eval.compare_page import write_page

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
skdata = pytest.importorskip("skimage.data")


def make_runs(base: Path) -> tuple[Path, Path]:
    pics = {"astronaut.png": Image.fromarray(skdata.astronaut()).resize((96, 96)),
            "camera.png": Image.fromarray(skdata.camera()).convert("RGB").resize((96, 96)),
            "coffee.png": Image.fromarray(skdata.coffee()).resize((120, 80))}
    a = write_run(base / "runs" / "one-shot", [
        item_row("astronaut.png", passed=False, open_rules=("horizontal",)),
        item_row("camera.png", passed=True),
        item_row("coffee.png", passed=False, open_rules=("subject",)),
    ], images=pics, config={"loop": {"strategy": "one-shot"}})
    b = write_run(base / "runs" / "loop", [
        item_row("astronaut.png", passed=True, rounds=1, cost={"reframes": 1}),
        item_row("camera.png", passed=True),
        item_row("coffee.png", passed=True, rounds=2, cost={"edits": 2, "gpu_seconds": 3.0}),
        item_row("<i>odd&amp.png", passed=False, status="failed"),
    ], images=pics, config={"loop": {"strategy": "loop"}})
    return a, b


def test_page_content_is_static_and_escaped(tmp_path: Path) -> None:
    a, b = make_runs(tmp_path)
    html = write_page(compare([a, b], boot=300), tmp_path / "cmp").read_text()
    assert 'src="../runs/one-shot/submission/astronaut.png"' in html
    assert 'src="../runs/loop/submission/coffee.png"' in html
    assert "http://" not in html and "https://" not in html  # no network
    assert "&lt;i&gt;odd&amp;amp.png" in html and "<i>odd" not in html  # item ids are escaped
    assert "<code>loop.strategy</code>" in html  # the manifests' differences at the top
    assert html.index("What differs") < html.index("Summary") < html.index("Paired comparisons")
    assert 'id="cost-chart"' in html and html.count("<circle") == 2  # one point per run
    assert "docs/guides/compare.md" in html


def _load(page: Path) -> dict[str, Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    visible = "Array.from(document.querySelectorAll('tr.item')).filter(r => r.style.display !== 'none').length"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            tab = browser.new_page()
            errors: list[str] = []
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            tab.on("pageerror", lambda e: errors.append(str(e)))
            tab.on("requestfailed", lambda r: errors.append(f"failed: {r.url}"))
            tab.goto(page.as_uri())
            tab.wait_for_load_state("load")
            out = {"images": tab.evaluate("document.images.length"),
                   "decoded": tab.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"),
                   "rows": tab.evaluate(visible)}
            tab.check("#only-disagree")
            out["filtered"] = tab.evaluate(visible)
            out["filtered_keys"] = tab.evaluate("Array.from(document.querySelectorAll('tr.item'))"
                                                ".filter(r => r.style.display !== 'none')"
                                                ".map(r => r.querySelector('td b').textContent)")
            tab.uncheck("#only-disagree")
            out["unfiltered"] = tab.evaluate(visible)
            out["errors"] = errors
            return out
        finally:
            browser.close()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
async def test_page_in_headless_chromium(tmp_path: Path) -> None:
    a, b = make_runs(tmp_path / "work")
    write_page(compare([a, b], boot=300), tmp_path / "work" / "cmp")
    shutil.move(tmp_path / "work", tmp_path / "moved")  # relative links: the tree still works elsewhere
    seen = await asyncio.to_thread(_load, tmp_path / "moved" / "cmp" / "compare.html")
    assert seen["images"] == 6 and seen["decoded"] and seen["errors"] == []  # three items x two runs
    assert seen["rows"] == 4 and seen["unfiltered"] == 4
    assert seen["filtered"] == 3  # camera passes in both; the failed-in-one item counts as a disagreement
    assert sorted(seen["filtered_keys"]) == ["<i>odd&amp.png", "astronaut.png", "coffee.png"]
