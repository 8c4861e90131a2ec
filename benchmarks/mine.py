"""Mining and pair-export throughput on this CPU.

    .venv/bin/python benchmarks/mine.py [--items 24] [--side 512] [--json]

Mining: items/s of `portraitcraft.graphs.mine.run_mining` geometry-only (the real vision models on both images of every
item) and with the scripted fake VLM (in-process server, instant answers: the client + graph overhead on top
of vision). Export: pairs/s and images encoded per second for the pickapic parquet with and without pose
(pose = one more vision pass per image). Real photos: skimage's astronaut and camera, the generated side a
mirrored copy (a side error the geometry sees).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from PIL import Image, ImageOps  # noqa: E402

from portraitcraft.graphs.mine import run_mining  # noqa: E402
from portraitcraft.schemas import Track2Spec  # noqa: E402
from portraitcraft.tools.pairs_export import export_pairs, vision_pose  # noqa: E402


def _photos(side: int) -> list[Image.Image]:
    from skimage import data

    out = []
    for arr in (data.astronaut(), data.camera()):
        img = Image.fromarray(arr).convert("RGB")
        img.thumbnail((side, side))
        out.append(img)
    return out


def _dataset(root: Path, n: int, side: int) -> tuple[list[Track2Spec], Path, Path]:
    photos = _photos(side)
    real, gen = root / "real", root / "gen"
    real.mkdir(parents=True)
    gen.mkdir(parents=True)
    items = []
    for i in range(n):
        photo = photos[i % len(photos)]
        photo.save(real / f"p{i:04d}.png")
        ImageOps.mirror(photo).save(gen / f"p{i:04d}.png")
        items.append(Track2Spec(image_path=f"p{i:04d}.png", content="a person", composition="on the left third"))
    return items, real, gen


def _reply(body: dict) -> dict:
    if "Name this failure mode" in json.dumps(body["messages"]):
        return {"title": "Side error", "category": "placement", "question": "Is the subject on the wrong side?",
                "instruction": "Move the subject.", "guidance": "Check the side."}
    return {"discrepancies": [{"aspect": "placement", "difference": "the subject is on the other side",
                               "instruction": "mirror the layout"}]}


async def _mine(items: list, real: Path, gen: Path, out: Path, vlm: object | None) -> float:
    from portraitcraft.tools.vision import analyze

    analyze(real / "p0000.png")  # load the models outside the timing
    start = time.perf_counter()
    await run_mining(items, images=real, counterparts=gen, out=out, analyze=analyze, vlm=vlm, concurrency=2)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=24)
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from fake_vlm import FakeVLMServer, make_client

    results: dict[str, float | int] = {"items": args.items, "side": args.side}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        items, real, gen = _dataset(root, args.items, args.side)
        seconds = asyncio.run(_mine(items, real, gen, root / "geo", None))
        results["mine_geometry_items_per_s"] = args.items / seconds
        with FakeVLMServer() as server:
            server.script.default(fn=_reply)

            async def with_vlm() -> float:
                async with make_client(server) as vlm:
                    return await _mine(items, real, gen, root / "vlm", vlm)

            seconds = asyncio.run(with_vlm())
        results["mine_vlm_items_per_s"] = args.items / seconds
        for pose in (False, True):
            start = time.perf_counter()
            report = export_pairs([root / "geo"], root / f"export-{pose}", fmt="pickapic", min_difference=0.0,
                                  pose_fn=vision_pose if pose else None)
            seconds = time.perf_counter() - start
            key = "with_pose" if pose else "no_pose"
            results[f"export_{key}_pairs_per_s"] = report.written / seconds
            results[f"export_{key}_images_per_s"] = 2 * report.written / seconds
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for key, value in results.items():
            print(f"{key:32s} {value:10.2f}" if isinstance(value, float) else f"{key:32s} {value:10d}")


if __name__ == "__main__":
    main()
