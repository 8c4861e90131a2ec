"""Mining and pairs export through the REAL vision models on real photos (mediapipe, bundled weights)."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from fake_vlm import make_client
from PIL import Image
from vision_fixtures import analyzed, load, pad, photos  # noqa: F401

from portraitcraft.graphs.mine import run_mining
from portraitcraft.schemas import Track2Spec
from portraitcraft.tools.pairs_export import export_pairs, vision_pose


def _pair_folders(photos: dict[str, Path], root: Path) -> tuple[Path, Path]:  # noqa: F811
    """Real side: the subject pushed to the viewer's left (wide pad on the right); generated: the opposite."""
    real, gen = root / "real", root / "gen"
    real.mkdir()
    gen.mkdir()
    for name in ("grace_hopper", "astronaut"):
        img = load(photos[name])
        w = img.width
        pad(img, right=w).save(real / f"{name}.png")
        pad(img, left=w).save(gen / f"{name}.png")
    return real, gen


def test_real_geometry_finds_the_side_error_and_checks_vlm_claims(photos: dict[str, Path], tmp_path: Path,  # noqa: F811
                                                                   fake_vlm: Any) -> None:
    from portraitcraft.tools.vision import analyze

    real, gen = _pair_folders(photos, tmp_path)
    items = [Track2Spec(image_path=f"{n}.png", content="a portrait", composition="subject on the left third")
             for n in ("grace_hopper", "astronaut")]

    def reply(body: dict[str, Any]) -> dict[str, Any]:
        if "Name this failure mode" in json.dumps(body["messages"]):
            return {"title": "Lighting", "category": "lighting", "question": "Is the light wrong?",
                    "instruction": "Fix the light.", "guidance": "Look at the shadows."}
        return {"discrepancies": [{"aspect": "placement", "difference": "the subject is on the right side",
                                   "instruction": "move the subject to the viewer's left"}]}

    fake_vlm.script.default(fn=reply)

    async def go() -> Any:
        async with make_client(fake_vlm) as vlm:
            return await run_mining(items, images=real, counterparts=gen, out=tmp_path / "m", analyze=analyze,
                                    vlm=vlm)

    summary = asyncio.run(go())
    assert summary.n_done == 2
    side = next(m for m in summary.modes if m["geometry"] == "horizontal")
    assert side["count"] == 2
    rows = [json.loads(x) for x in (tmp_path / "m" / "results.jsonl").read_text().splitlines()]
    for row in rows:
        assert row["real_features"]["horizontal"] == "left" and row["generated_features"]["horizontal"] == "right"
        vlm_claims = [d for d in row["discrepancies"] if d["source"] == "vlm"]
        assert [d["check"] for d in vlm_claims] == ["confirmed"]

    # the same VLM claim on a pair with NO side difference is contradicted by geometry and not clustered
    same = tmp_path / "same"
    same.mkdir()
    for name in ("grace_hopper", "astronaut"):
        Image.open(real / f"{name}.png").save(same / f"{name}.png")

    async def again() -> Any:
        async with make_client(fake_vlm) as vlm:
            return await run_mining(items, images=real, counterparts=same, out=tmp_path / "m2", analyze=analyze,
                                    vlm=vlm)

    summary = asyncio.run(again())
    assert summary.contradicted == 2 and summary.modes == []


def test_export_carries_the_chosen_pose_measured_by_the_real_models(photos: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    run = tmp_path / "run"
    (run / "items").mkdir(parents=True)
    img = load(photos["grace_hopper"])
    img.save(run / "items" / "final.png")
    pad(img, left=img.width // 2).resize(img.size).save(run / "items" / "draft.png")
    (run / "pairs.jsonl").write_text(json.dumps({"id": "gh", "prompt": "Grace Hopper, head and shoulders",
                                                 "chosen": "items/final.png", "rejected": "items/draft.png"}) + "\n")
    report = export_pairs([run], tmp_path / "out", fmt="pickapic", pose_fn=vision_pose)
    assert report.written == 1 and report.pose_missing == 0
    [row] = pq.read_table(tmp_path / "out" / "pairs.parquet").to_pylist()
    keypoints = json.loads(row["pose_keypoints"])
    nose, left, right = keypoints["nose"], keypoints["left_shoulder"], keypoints["right_shoulder"]
    assert 0 < nose[0] < img.width and 0 < nose[1] < img.height
    assert right[0] < nose[0] < left[0]  # facing the camera: her right shoulder on the viewer's left
    pose = Image.open(io.BytesIO(row["pose_image"]))
    assert pose.size == img.size and pose.getbbox() is not None  # a skeleton was drawn
    features = json.loads(row["provenance"])["features"]
    assert features["chosen"]["horizontal"] == "center" and features["rejected"]["horizontal"] == "right"
