"""The final-image tables (issue 22), on the three public-domain demo photos through the real models.

    .venv/bin/python benchmarks/final_image.py tilt     # people at any tilt: subject found, tilt and its sign
    .venv/bin/python benchmarks/final_image.py crop     # crop before pad: 3 photos x {left,center,right} x 4 aspects

`tilt` turns each photo clockwise by -30..30 degrees (steps of 10) and prints whether a subject is found, the
measured body tilt, and that tilt minus the unturned photo's (it should follow the turn, with its sign).
`crop` runs the reframing editor crop-only and then with padding allowed (a reflect fill standing in for the
outpainting model; both verified: the result measured again), and prints for each case whether a pad-free
crop met the target (`crop WxH at x,y`), else the best crop and where the critic measures the subject in it,
and the padding used when padding is allowed.
"""

from __future__ import annotations

import argparse
import sys
import time

from PIL import Image

PHOTOS = ("camera", "astronaut", "grace_hopper")
ASPECTS = ("9:16", "2:3", "1:1", "3:2")


def photo(name: str) -> Image.Image:
    """The photo as RGB, from the installed scikit-image / matplotlib packages."""
    if name == "grace_hopper":
        import matplotlib.cbook as cbook

        with cbook.get_sample_data("grace_hopper.jpg") as fh:
            return Image.open(fh).convert("RGB")
    from skimage import data

    return Image.fromarray(getattr(data, name)()).convert("RGB")


def tilt_table() -> None:
    from portraitcraft.tools.vision import analyze

    print(f"{'photo':<13} {'turn':>5} {'subject':>8} {'tilt':>7} {'delta':>7}  sign")
    for name in PHOTOS:
        img = photo(name)
        base = analyze(img).subject
        base_tilt = base.tilt_deg if base is not None and base.tilt_deg is not None else 0.0
        for turn in range(-30, 31, 10):
            turned = img.rotate(-turn, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=(128, 128, 128))
            t0 = time.perf_counter()
            s = analyze(turned).subject
            ms = (time.perf_counter() - t0) * 1000
            if s is None or s.tilt_deg is None:
                print(f"{name:<13} {turn:>+5d} {'yes' if s else 'NO':>8} {'-':>7} {'-':>7}  -   ({ms:.0f} ms)")
                continue
            delta = s.tilt_deg - base_tilt
            ok = "ok" if turn == 0 or (delta > 0) == (turn > 0) else "WRONG"
            print(f"{name:<13} {turn:>+5d} {'yes':>8} {s.tilt_deg:>+7.1f} {delta:>+7.1f}  {ok}  ({ms:.0f} ms)")


def crop_table() -> None:
    from portraitcraft.agents.reframe import ReframeError, parse_aspect, reframe
    from portraitcraft.config import VisionConfig
    from portraitcraft.tools.vision import analyze

    print(f"{'photo':<13} {'target':<7} {'aspect':<5} {'crop-only':<38} {'with padding allowed'}")
    for name in PHOTOS:
        img = photo(name)
        analysis = analyze(img)
        for target in ("left", "center", "right"):
            for aspect in ASPECTS:
                ratio = parse_aspect(aspect)
                cells = []
                for cfg in (VisionConfig(), VisionConfig(reframe_fill="reflect")):
                    try:
                        r = reframe(img, analysis, horizontal=target, aspect=ratio, config=cfg, verify=True)
                    except ReframeError:
                        cells.append("no crop keeps the head / joints")
                        continue
                    w, h = r.image.size
                    if r.needs_outpainting:
                        s = r.after.subject
                        cells.append(f"best crop {w}x{h}, " + (f"measures {s.horizontal}" if s else "no subject"))
                    elif any(r.padding):
                        cells.append(f"pad {list(r.padding)} kept {r.kept_fraction:.2f}")
                    else:
                        cells.append(f"crop {w}x{h} at {r.crop_box[0]},{r.crop_box[1]}")
                print(f"{name:<13} {target:<7} {aspect:<5} {cells[0]:<38} {cells[1]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("table", choices=("tilt", "crop"))
    args = ap.parse_args()
    tilt_table() if args.table == "tilt" else crop_table()
    return 0


if __name__ == "__main__":
    sys.exit(main())
