"""The met-target share measured afresh on real photos (mediapipe pose, mask, face), one pass per image, cached;
and the same ruler for two runs through `compare`."""

from __future__ import annotations

from pathlib import Path

import pytest
from compare_fixtures import item_row, write_run
from PIL import Image

from portraitcraft.config import VisionConfig
from portraitcraft.eval.compare import compare
from portraitcraft.eval.compare_targets import TargetRuler, enforced_targets
from portraitcraft.schemas import CompositionTargets

pytest.importorskip("mediapipe")
skdata = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("photos")
    astronaut = Image.fromarray(skdata.astronaut())  # 512x512, the astronaut a little left of centre (x ~ 0.45)
    out = {"astronaut": folder / "astronaut.png", "coffee": folder / "coffee.png",
           "astronaut_right": folder / "astronaut_right.png"}
    astronaut.save(out["astronaut"])
    Image.fromarray(skdata.coffee()).save(out["coffee"])
    astronaut.crop((0, 0, 260, 512)).save(out["astronaut_right"])  # a tall crop: she sits right of its centre
    return out


def test_met_targets_on_real_photos(photos: dict[str, Path], tmp_path: Path) -> None:
    ruler = TargetRuler(cache_dir=tmp_path / "cache")
    centred = ruler.check(photos["astronaut"], {"horizontal": "center", "orientation": "square", "gaze": "camera"})
    assert centred.met == {"horizontal": True, "gaze": True, "orientation": True} and centred.share == 1.0
    wrong = ruler.check(photos["astronaut"], {"horizontal": "right", "orientation": "portrait"})
    assert wrong.met == {"horizontal": False, "orientation": False} and wrong.share == 0.0
    moved = ruler.check(photos["astronaut_right"], {"horizontal": "right", "orientation": "portrait"})
    assert moved.share == 1.0
    nobody = ruler.check(photos["coffee"], {"horizontal": "left", "orientation": "landscape"})
    assert nobody.met == {"horizontal": False, "orientation": True} and nobody.unmeasured == ["horizontal"]
    assert ruler.check(photos["coffee"], {}).share is None  # no target: nothing to meet
    assert ruler.analysed == 4
    again = TargetRuler(cache_dir=tmp_path / "cache")  # a second compare: every verdict from the cache
    assert again.check(photos["astronaut"], {"horizontal": "right", "orientation": "portrait"}).cached
    assert again.check(photos["coffee"], {"horizontal": "left", "orientation": "landscape"}).unmeasured == \
        ["horizontal"]
    assert again.analysed == 0
    other_ruler = TargetRuler(VisionConfig(max_side=256), cache_dir=tmp_path / "cache")  # new settings: measured
    assert other_ruler.check(photos["astronaut"], {"horizontal": "center"}).share == 1.0
    assert other_ruler.analysed == 1


def test_unreadable_final_image_is_an_error_not_a_crash(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    check = TargetRuler().check(bad, {"horizontal": "left"})
    assert check.error and "bad.png" in check.error and check.share is None
    assert "missing.png" in (TargetRuler().check(tmp_path / "missing.png", {"horizontal": "left"}).error or "")


def test_enforced_targets_are_the_set_keys_the_gate_keeps() -> None:
    targets = CompositionTargets(horizontal="left", people=2, phrases={"horizontal": "on the left"})
    assert enforced_targets(targets) == ["horizontal", "people"]

    class Gated(CompositionTargets):  # targets whose evidence leaves `people` unenforced
        def enforced(self, key: str) -> bool:
            return getattr(self, key, None) is not None and key != "people"

    assert enforced_targets(Gated(horizontal="left", people=2)) == ["horizontal"]


def test_compare_measures_both_runs_with_one_ruler(photos: dict[str, Path], tmp_path: Path) -> None:
    targets = {"horizontal": "right", "orientation": "portrait"}
    images_a = {"astronaut.png": Image.open(photos["astronaut"])}
    images_b = {"astronaut.png": Image.open(photos["astronaut_right"])}
    a = write_run(tmp_path / "a", [item_row("astronaut.png", passed=False, targets=targets)], images=images_a)
    b = write_run(tmp_path / "b", [item_row("astronaut.png", passed=True, targets=targets)], images=images_b)
    data = compare([a, b], boot=200, ruler=TargetRuler(cache_dir=tmp_path / "cache")).to_json()
    assert [r["met_target_share"] for r in data["runs"]] == [0.0, 1.0]
    assert data["runs"][1]["met_targets"]["by_rule"]["horizontal"] == {"met": 1, "enforced": 1, "share": 1.0}
    met = next(c for c in data["comparisons"] if c["metric"] == "met_target_share")
    assert (met["delta"], met["wins"], met["losses"]) == (1.0, 1, 0)


def test_targets_recorded_with_unknown_keys_are_still_measured(photos: dict[str, Path]) -> None:
    check = TargetRuler().check(photos["astronaut"], {"horizontal": "center", "some_newer_key": {"x": 1}})
    assert check.error is None and check.met == {"horizontal": True}
