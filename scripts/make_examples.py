"""Regenerate examples/: a tiny PortraitCraft-format dataset with procedurally drawn images.

Run: python scripts/make_examples.py [--out examples]. Deterministic: the same files every time.
The images are stick-figure "portraits" (a gradient backdrop, a horizon, one or two figures placed on
thirds); the descriptions say where the figures are, so planner and judge demos have something to check.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

ATTRIBUTES = (
    "Color Harmony", "Visual Style Consistency", "Sharpness", "Light and Shadow Modeling",
    "Creativity and Originality", "Exposure Control", "Application of Classical Composition Principles",
    "Depth of Field and Layering", "Visual Center Stability", "Visual Flow Guidance",
    "Structural Support Stability", "Appropriateness of Negative Space", "Subject Integrity",
)  # fmt: skip

PALETTES = [((250, 200, 150), (90, 60, 120)), ((170, 210, 240), (40, 90, 60)), ((30, 30, 60), (200, 120, 40)),
            ((240, 240, 230), (120, 120, 110)), ((200, 90, 70), (40, 30, 30)), ((120, 180, 200), (230, 210, 170))]
SCENES = [
    ("portrait", (96, 128), "a woman in a red coat standing full-body on a quiet street", "left third"),
    ("landscape", (128, 80), "a hiker on a coastline with a wide sea and a long road leading to the horizon",
     "right third"),
    ("square", (112, 112), "a close-up headshot of a smiling man with short hair", "centre"),
    ("portrait", (90, 135), "two friends walking together in a park, full-body, autumn trees", "left third"),
    ("landscape", (144, 96), "a cyclist small in a vast desert landscape with large negative space",
     "left third"),
    ("square", (120, 120), "a tight portrait of an elderly woman looking to the right", "centre"),
]


def draw(seed: int, size: tuple[int, int], placement: str, figures: int = 1) -> Image.Image:
    rng = random.Random(seed)
    w, h = size
    top, bottom = PALETTES[seed % len(PALETTES)]
    img = Image.new("RGB", size)
    px = img.load()
    for y in range(h):
        t = y / max(1, h - 1)
        row = tuple(int(top[c] * (1 - t) + bottom[c] * t) for c in range(3))
        for x in range(w):
            px[x, y] = row
    d = ImageDraw.Draw(img)
    horizon = int(h * rng.choice([0.62, 0.66, 0.7]))
    d.line([(0, horizon), (w, horizon)], fill=(60, 60, 60), width=1)
    cx = {"left third": w / 3, "right third": 2 * w / 3, "centre": w / 2}[placement]
    for i in range(figures):
        x = cx + i * w * 0.12
        scale = h * (0.5 if placement != "centre" else 0.8)
        head = scale * 0.12
        top_y = horizon - scale * 0.9 if placement != "centre" else h * 0.15
        colour = (rng.randrange(120, 255), rng.randrange(20, 120), rng.randrange(20, 120))
        d.ellipse([x - head, top_y, x + head, top_y + 2 * head], fill=(230, 190, 160))
        d.rectangle([x - head * 1.2, top_y + 2 * head, x + head * 1.2, top_y + scale * 0.6], fill=colour)
        d.line([(x - head * 0.6, top_y + scale * 0.6), (x - head * 0.8, top_y + scale * 0.9)], fill=colour, width=2)
        d.line([(x + head * 0.6, top_y + scale * 0.6), (x + head * 0.8, top_y + scale * 0.9)], fill=colour, width=2)
    return img


QUESTIONS = [  # (attribute asked about, the true statement, three false ones); the truth's letter rotates
    ("Subject Integrity", "The subject is complete and clearly separated from the background.",
     ["The subject's head is cropped by the top edge.", "Two subjects overlap so that neither is readable.",
      "There is no identifiable subject."]),
    ("Visual Center Stability", "The figure sits on the {place}, balanced by the open space opposite it.",
     ["The figure is pressed against the bottom edge, so the frame tips downward.",
      "Several equally strong subjects compete for the centre.", "The horizon is tilted, so the frame leans."]),
    ("Appropriateness of Negative Space", "The plain sky above the horizon leaves calm room around the figure.",
     ["The frame is crowded edge to edge with detail.", "The figure fills the whole frame, leaving no space.",
      "The empty space sits behind the figure's back and pulls the eye out of the frame."]),
    ("Light and Shadow Modeling", "The flat, even light gives the figure almost no modelling.",
     ["Hard side light carves deep shadows across the face.", "A strong backlight turns the figure into a "
      "silhouette.", "Spotlit highlights are blown out on the face."]),
]
ANSWER_LETTERS = "CADB"  # the true option's letter for test items 0..3: a constant "A" baseline scores 0.25


def question(j: int, place: str) -> tuple[str, dict[str, str], str]:
    """The j-th test item's question, options and answer letter (varied: not every answer is A)."""
    attribute, truth, wrong = QUESTIONS[j % len(QUESTIONS)]
    letter = ANSWER_LETTERS[j % len(ANSWER_LETTERS)]
    falsehoods = iter(wrong)
    options = {k: (truth.format(place=place) if k == letter else next(falsehoods)) for k in "ABCD"}
    text = f"Regarding the {attribute} in this image, which of the following best describes the visual evidence?"
    return text, options, letter


def name(i: int, plus: bool = False) -> str:
    h = f"{random.Random(i).getrandbits(48):012x}"
    return f"unsplash_{'plus_' if plus else ''}people_{i:05d}_{h}.jpg"


def content(scene: str) -> str:
    return (f"The photograph shows {scene}. Clothing and skin tones are natural; the palette is soft and "
            "coherent, with warm highlights and muted shadows. The mood is calm and contemplative.")


def composition(orientation: str, placement: str) -> str:
    framing = {"portrait": "a vertical frame", "landscape": "a wide horizontal frame", "square": "a square frame"}
    return (f"The subject is placed on the {placement} of {framing[orientation]}, following the rule of thirds. "
            "Soft light comes from the left, modelling the face with gentle shadows on the right side. "
            "The background is softly blurred, separating foreground and background for depth. "
            "The horizon line sits in the lower third and leads the eye across the frame; "
            "generous negative space surrounds the subject and keeps the visual centre stable.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="examples")
    out = Path(ap.parse_args().out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "images" / "images_00").mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)

    t1_train, t1_test, t1_labels = [], [], []
    for i in range(10):
        orient, size, scene, place = SCENES[i % len(SCENES)]
        fname = name(100 + i, plus=(i % 4 == 3))
        folder = out / "images" / ("images_00" if i % 2 else "")
        draw(100 + i, size, place, figures=2 if "two" in scene else 1).save(folder / fname, quality=85)
        base = rng.uniform(3.0, 8.5)
        scores = {a: round(min(10.0, max(0.0, base + rng.uniform(-1.5, 1.5))), 1) for a in ATTRIBUTES}
        total = round(min(100, max(0, 0.86 * sum(scores.values()) - 8.92 + rng.uniform(-3, 3))))
        if i < 6:
            t1_train.append({
                "image_path": fname,
                "criteria": {a: {"score": s, "reason": f"{a} is judged {s}/10 for this {orient} frame."}
                             for a, s in scores.items()},
                "total_score": total,
            })
        else:
            text, options, answer = question(i - 6, place)
            t1_test.append({"image_path": fname, "criteria": {a: {"level": "x"} for a in ATTRIBUTES},
                            "total_score": 0, "question": text, "options": options, "answer": "x"})
            levels = {a: {"level": "A" if s < 5 else ("B" if s < 7 else "C")} for a, s in scores.items()}
            t1_labels.append({"image_path": fname, "criteria": levels, "total_score": total,
                              "question": text, "options": options, "answer": answer})

    t2_train, t2_test = [], []
    for i, (orient, size, scene, place) in enumerate(SCENES):
        fname = name(200 + i)
        draw(200 + i, size, place, figures=2 if "two" in scene else 1).save(out / "images" / fname, quality=85)
        t2_train.append({"image_path": fname, "content_description": content(scene),
                         "composition_analysis": composition(orient, place)})
    for i, (orient, _size, scene, place) in enumerate(SCENES[:4]):
        t2_test.append({"image_path": name(300 + i), "content_description": content(scene),
                        "composition_analysis": composition(orient, place)})

    files = {"track_1_train.json": t1_train, "track_1_test.json": t1_test,
             "track_1_test_labels.json": t1_labels, "track_2_train.json": t2_train, "track_2_test.json": t2_test}
    for fname, data in files.items():
        (out / fname).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "descriptions.txt").write_text(
        "A dancer mid-leap on the right third of a wide empty stage, lit from the left.\n"
        "A close-up headshot of a child laughing, centred, soft window light.\n", encoding="utf-8")
    print(f"wrote {sum(len(v) for v in files.values())} items and their images to {out}")


if __name__ == "__main__":
    main()
