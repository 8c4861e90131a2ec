"""Vision throughput on this CPU: images/s for `inspect` (pose + person mask + face) at 512 and 1024 px on
the public-domain photos, the reframing editor's seconds per call, and the target extractor's items/s
(portraitcraft.agents.planner.targets, when present).

Run: .venv/bin/python benchmarks/vision.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from portraitcraft.config import VisionConfig  # noqa: E402


def photos() -> list[Image.Image]:
    import skimage.data as skdata
    from matplotlib import cbook

    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as grace:
        return [Image.fromarray(skdata.astronaut()), Image.fromarray(skdata.camera()).convert("RGB"),
                grace.convert("RGB"), Image.fromarray(skdata.coffee())]


def at_side(img: Image.Image, side: int) -> Image.Image:
    scale = side / max(img.size)
    return img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)


DESCRIPTIONS = [
    ("A woman in a red coat stands in a snowy park.",
     "She is placed on the left third of the frame, shown from the knees up, turned toward the viewer's right, "
     "looking off into the distance; generous negative space on the right."),
    ("An old fisherman mends a net on a pier at dawn.",
     "A close-up portrait: his face sits slightly right of centre, eyes on the upper third line, gazing to his "
     "left (the viewer's right). Vertical format."),
    ("Two friends laugh on a bench.", "Both are centred, half-body, facing the camera, in a wide landscape frame."),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="passes over the photos per size")
    args = parser.parse_args()
    from portraitcraft.agents.reframe import reframe
    from portraitcraft.tools.vision import analyze

    images = photos()
    cfg = VisionConfig(max_side=1024)
    t0 = time.perf_counter()
    analyze(images[0], cfg)
    print(f"first call (model loading): {time.perf_counter() - t0:.2f} s")
    for side in (512, 1024):
        batch = [at_side(img, side) for img in images]
        for img in batch:  # warm each size once
            analyze(img, cfg)
        times = []
        for _ in range(args.rounds):
            for img in batch:
                t = time.perf_counter()
                analyze(img, cfg)
                times.append(time.perf_counter() - t)
        print(f"inspect at {side} px: {1 / np.mean(times):.1f} images/s (mean {np.mean(times) * 1000:.0f} ms, "
              f"p90 {np.percentile(times, 90) * 1000:.0f} ms, {len(times)} calls, 4 photos, one process)")
    person = at_side(images[2], 512)
    analysis = analyze(person, cfg)
    times = []
    for target in ("left", "center", "right"):
        t = time.perf_counter()
        reframe(person, analysis, horizontal=target, config=cfg)
        times.append(time.perf_counter() - t)
    print(f"reframe (verified) at 512 px: {np.mean(times):.2f} s per call (left/center/right on grace_hopper)")
    try:
        from portraitcraft.agents.planner.targets import extract_targets
    except ImportError:
        print("target extractor: portraitcraft.agents.planner.targets is absent in this checkout (not measured)")
        return
    n = 0
    t = time.perf_counter()
    while time.perf_counter() - t < 2.0:
        for content, composition in DESCRIPTIONS:
            extract_targets(content, composition)
            n += 1
    print(f"target extractor: {n / (time.perf_counter() - t):.0f} items/s")


if __name__ == "__main__":
    main()
