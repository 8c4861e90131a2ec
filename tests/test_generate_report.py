"""report.html: static, relative image links (the folder can be moved), loaded in a real headless Chromium with
every image decoded and no console error."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from fake_vlm import make_client
from generate_fixtures import ScriptedDrawer
from test_generate_graph import run

from portraitcraft.graphs.generate_report import report_data, write_report
from portraitcraft.schemas import Track2Spec

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


async def make_run(tmp_path: Path, fake_vlm: Any) -> Path:
    fake_vlm.script.default({"detected": False, "evidence": "fine", "instruction": ""})  # geometry disagrees
    specs = [Track2Spec(image_path="a.jpg", content="a woman <b>in red</b>", composition="left third"),
             Track2Spec(image_path="b.png", content="a man", composition="left third"),
             Track2Spec(image_path="e.png", content=" ", composition="")]
    async with make_client(fake_vlm) as vlm:
        _, folder = await run(tmp_path, specs, ScriptedDrawer(drafts=[0.8], edits=[0.2, 0.2]), vlm=vlm,
                              sections={"critic": {"enabled": True, "geometry": True, "rules": ["placement"]}})
    return folder.root


async def test_report_content(tmp_path: Path, fake_vlm: Any) -> None:
    root = await make_run(tmp_path, fake_vlm)
    data = report_data(root)
    assert data["summary"]["n_items"] == 3 and data["summary"]["n_failed"] == 1
    assert len(data["disagreements"]) == 2 and data["histogram"] == [(1, 2)]
    html = write_report(root).read_text()
    assert "a woman &lt;b&gt;in red&lt;/b&gt;" in html  # escaped
    assert 'src="items/a/round_0.png"' in html and 'src="submission/a.jpg"' in html
    assert "description is empty" in html and "VLM vs geometry disagreements (2)" in html
    assert "http://" not in html and "https://" not in html  # no network


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/test.sh installs it with apt-get)")
async def test_report_in_headless_chromium(tmp_path: Path, fake_vlm: Any) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    root = await make_run(tmp_path, fake_vlm)
    write_report(root)
    moved = tmp_path / "moved"
    shutil.move(root, moved)  # relative links: the folder still works elsewhere
    import asyncio

    def load() -> tuple[int, bool, list[str], str]:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = browser.new_page()
                errors: list[str] = []
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.on("requestfailed", lambda r: errors.append(f"failed: {r.url}"))
                page.goto((moved / "report.html").as_uri())
                page.wait_for_load_state("load")
                count = page.evaluate("document.images.length")
                decoded = page.evaluate(
                    "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
                return count, decoded, errors, page.inner_text("body")
            finally:
                browser.close()

    count, decoded, errors, text = await asyncio.to_thread(load)
    assert count == 2 * 2 + 2  # two rounds + a final for each of the two finished items
    assert decoded and errors == []
    assert "pass rate" in text and "horizontal" in text


def test_report_shows_each_gpu_worker_from_the_saved_summary(tmp_path: Path) -> None:
    """Per-worker utilisation and executor events (Ray: actor deaths) come from summary.json into the report."""
    import json

    from portraitcraft.runs import ResultsLog

    ResultsLog(tmp_path / "results.jsonl").append({"id": "a", "image_path": "a.png", "status": "done", "passed": True,
                                                   "rounds": 0, "history": []})
    gpu = {"executor": "ray", "jobs": 18, "worker_utilisation": {"actor-0": 0.931, "actor-1": 0.5},
           "workers": {"actor-0": {"busy_seconds": 9.3, "jobs": 12, "failed": 0},
                       "actor-1": {"busy_seconds": 5.0, "jobs": 6, "failed": 1}},
           "events": ["actor-1 died; 1 job retried on actor-0"]}
    (tmp_path / "summary.json").write_text(json.dumps({"gpu_utilisation": 0.7, "gpu": gpu}))
    html = write_report(tmp_path).read_text()
    assert "<td>actor-0</td><td>0.931</td><td>9.3</td><td>12</td><td>0</td>" in html
    assert "actor-1 died; 1 job retried on actor-0" in html and "GPU executor</th><td>ray" in html
    (tmp_path / "summary.json").write_text(json.dumps({"gpu": {**gpu, "jobs": 0}}))  # nothing drawn: no table
    assert "GPU workers" not in write_report(tmp_path).read_text()
