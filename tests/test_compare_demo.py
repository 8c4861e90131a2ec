"""The demo comparison: the three demo photos through `generate --init-images` with `--strategy loop` and
`--strategy one-shot`, then `compare --json`. Offline the loop only crops (no synthetic fill, issue 22): it passes
the camera photo (a mirrored crop) and leaves the astronaut and Grace Hopper open as "needs outpainting", so it
wins 1, ties 2, loses 0 on passed (exact McNemar p = 1.0) and meets far more targets, at one reframe per final
image; the page shows the three pairs of images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_run import run_cli

pytest_plugins = ["diffusion_fixtures"]
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.diffusion
def test_loop_against_one_shot_on_the_demo_photos(tmp_path: Path, tiny_zimage: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mediapipe")
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    demo = __import__("demo")
    photos = tmp_path / "photos"
    demo.copy_photos(photos)
    items = [{"image_path": n, "content_description": c, "composition_analysis": comp}
             for n, (c, comp) in demo.PHOTOS.items()]
    (tmp_path / "photos.json").write_text(json.dumps(items))
    monkeypatch.chdir(ROOT)  # configs/offline.toml names the tiny model relative to the repository
    model = json.dumps(str(tiny_zimage))
    offline = ["--config", str(ROOT / "configs" / "offline.toml"), "--set", f"generator.model={model}",
               "--set", f"editor.model={model}", "--set", f"run.cache_dir={json.dumps(str(tmp_path / 'cache'))}",
               "--set", "planner.long_side=512"]  # as scripts/demo.py: the photos' own scale
    for strategy in ("loop", "one-shot"):
        res = run_cli(["generate", str(tmp_path / "photos.json"), *offline, "--init-images", str(photos),
                       "--strategy", strategy, "--out", str(tmp_path / strategy), "--json"], capsys, monkeypatch)
        assert res.exit_code == 0, res.output[-3000:]
    res = run_cli(["compare", str(tmp_path / "one-shot"), str(tmp_path / "loop"), "--json", "--out",
                   str(tmp_path / "cmp"), "--set", f"run.cache_dir={json.dumps(str(tmp_path / 'cache'))}"],
                  capsys, monkeypatch)
    assert res.exit_code == 0, res.output[-3000:]
    data = json.loads(res.stdout)
    one_shot, loop = data["runs"]
    assert (one_shot["pass_rate"], loop["pass_rate"]) == (0.0, pytest.approx(1 / 3, abs=1e-3))
    passed = next(c for c in data["comparisons"] if c["metric"] == "pass_rate")
    assert (passed["wins"], passed["ties"], passed["losses"]) == (1, 2, 0)
    assert passed["p_value"] == pytest.approx(1.0)  # one discordant pair: binomial(1, 0.5), two-sided
    assert loop["cost_per_final_image"]["reframes"] == 1.0 and one_shot["cost_per_final_image"]["reframes"] == 0.0
    reframes = next(c for c in data["comparisons"] if c["metric"] == "cost_per_final_image.reframes")
    assert reframes["delta"] == 1.0 and reframes["losses"] == 3  # the loop pays one reframe per image
    assert loop["met_target_share"] > 0.8 and one_shot["met_target_share"] < 0.5  # measured afresh
    assert data["unpaired"] == [] and data["problems"] == []
    html = (tmp_path / "cmp" / "compare.html").read_text()
    for name in demo.PHOTOS:
        assert f'src="../one-shot/submission/{name}"' in html and f'src="../loop/submission/{name}"' in html
