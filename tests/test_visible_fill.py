"""The critic sees what a person sees: a model-free check flags a filled border strip (blurred flat or
mirrored) and never a plain crop of a real photo; a picture that fails it does not pass the critic."""

from __future__ import annotations

from pathlib import Path

import pytest
from vision_fixtures import PERSON_PHOTOS, analyzed, load, photos  # noqa: F401

from portraitcraft.agents.reframe import parse_aspect, reframe
from portraitcraft.config import CriticConfig, VisionConfig
from portraitcraft.tools.image_checks import measure, verdicts


def fill_verdict(image) -> object:
    [v] = [v for v in verdicts(measure(image), min_sharpness=0, max_clipped=1, max_tilt_deg=90)
           if v.check == "visible_fill"]
    return v


@pytest.mark.parametrize("name", PERSON_PHOTOS)
def test_plain_photos_and_their_crops_show_no_fill(name, photos, analyzed) -> None:  # noqa: F811
    img = load(photos[name])
    assert not fill_verdict(img).detected
    for target, aspect in (("left", "2:3"), ("center", "2:3"), ("right", "1:1")):
        crop = reframe(img, analyzed(name), horizontal=target, aspect=parse_aspect(aspect), verify=False)
        assert crop.padding == (0, 0, 0, 0)
        v = fill_verdict(crop.image)
        assert not v.detected, (name, target, aspect, v.evidence)


@pytest.mark.parametrize(("name", "target", "side"), [("astronaut", "right", "left"),
                                                       ("grace_hopper", "left", "right")])
@pytest.mark.parametrize("fill", ["blur", "reflect"])
def test_a_padded_strip_is_flagged(name, target, side, fill, photos, analyzed) -> None:  # noqa: F811
    padded = reframe(load(photos[name]), analyzed(name), horizontal=target, aspect=1.0, verify=False,
                     config=VisionConfig(reframe_fill=fill))
    assert any(padded.padding)
    checks = measure(padded.image)
    assert checks.fill_side == side and checks.fill_kind == ("flat" if fill == "blur" else "mirror")
    share = max(padded.padding) / padded.image.width
    assert abs(checks.fill_fraction - share) < 0.05  # the strip found is the pad
    v = fill_verdict(padded.image)
    assert v.detected and side in v.evidence


async def test_the_critic_does_not_pass_a_filled_picture(tmp_path: Path, photos, analyzed) -> None:  # noqa: F811
    from portraitcraft.agents.critic import Critic
    from portraitcraft.prompts.rules import load_rules
    from portraitcraft.schemas import CompositionTargets

    img, analysis = load(photos["astronaut"]), analyzed("astronaut")
    crop = reframe(img, analysis, horizontal="center", aspect=1.0, verify=False)
    padded = reframe(img, analysis, horizontal="right", aspect=1.0, verify=False,
                     config=VisionConfig(reframe_fill="blur"))
    crop.image.save(tmp_path / "crop.png")
    padded.image.save(tmp_path / "padded.png")
    critic = Critic(load_rules(), CriticConfig(enabled=False, geometry=False, heuristics=True))
    targets = CompositionTargets()
    ok = await critic.critique(tmp_path / "crop.png", "An astronaut.", "", targets)
    bad = await critic.critique(tmp_path / "padded.png", "An astronaut.", "", targets)
    assert not any(f.detected for f in ok.findings if f.rule == "visible-fill")
    [fill] = [f for f in bad.findings if f.rule == "visible-fill"]
    assert fill.detected and fill.source == "heuristic" and not bad.passed and "left" in fill.evidence
