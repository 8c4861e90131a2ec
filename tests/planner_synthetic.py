"""A synthetic Track 2 train set whose image aspect ratios follow the descriptions (planner tests, benchmark).

Each item draws a canvas class, then evidence sentences whose latent strengths (tall strong -2, tall mild
-1, wide mild +1, wide strong +2; close-up sentences 0) add up to the class's distance from square, plus
neutral filler sentences; with probability `noise` one extra random evidence sentence is added without
changing the class (label noise). Its image is a tiny JPEG of the class's exact ratio (times a random
scale, +-1 px on the width), written flat or into images_00..images_10 so the fit has to read real sizes
and resolve shards. The wording is this module's own, partly outside the rule vocabulary.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from PIL import Image

DEFAULT_RATIOS = [9 / 16, 2 / 3, 3 / 4, 1.0, 4 / 3, 3 / 2, 16 / 9]

EVIDENCE: dict[int, list[str]] = {
    -2: [
        "She is shown full-body, head to toe, in a vertical frame.",
        "The full-length figure stands upright from his boots to his hat.",
        "A whole-body view of the dancer standing on tiptoe.",
        "The entire figure is visible, feet planted on the ground.",
    ],
    -1: [
        "He is framed from the waist up.",
        "An upper-body view shows the arms crossed.",
        "A half-length portrait set against a doorway.",
        "She stands beside a stone column.",
    ],
    0: [
        "A tight close-up of the face.",
        "A headshot: the face fills the frame.",
        "Head and shoulders in a centred composition.",
    ],
    1: [
        "A group of friends sits side by side.",
        "Leading lines of a fence cross the picture.",
        "The street stretches out behind the couple.",
        "The family gathers around a picnic blanket.",
    ],
    2: [
        "A wide landscape opens around the small figure.",
        "The coastline and the sea reach the horizon.",
        "A long road runs through a vast desert.",
        "Large negative space of open sky fills most of the frame.",
    ],
}
FILLERS = [
    "The palette is warm and muted, with soft ochre tones.",
    "Soft light falls from a window, modelling the face gently.",
    "The placement of the subject follows the rule of thirds.",
    "A shallow depth of field separates the subject from the background.",
    "Clothing is casual: a denim jacket and a knit scarf.",
    "The mood is calm and contemplative.",
    "Highlights are controlled and the shadows keep their detail.",
    "The visual flow moves from the eyes to the hands.",
    "Textures of wool and skin are rendered sharply.",
    "The colours are harmonious and slightly desaturated.",
]
# offset from square -> ways to reach it with evidence strengths
RECIPES: dict[int, list[list[int]]] = {
    -3: [[-2, -1], [-2, -1, 0]],
    -2: [[-2], [-1, -1]],
    -1: [[-1], [-2, 1]],
    0: [[0], [], [0, 0], [-1, 1]],
    1: [[1], [2, -1]],
    2: [[2], [1, 1]],
    3: [[2, 1], [2, 1, 0]],
}


@dataclass
class SyntheticSet:
    """Where the set was written and what it holds."""

    train_json: Path
    images_dir: Path
    ratios: list[float] = field(default_factory=list)
    """the class ratio of every written record, in order (missing/corrupt ones included)."""
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)


def _image_size(ratio: float, rng: random.Random) -> tuple[int, int]:
    frac = Fraction(ratio).limit_denominator(16)
    scale = rng.randint(16, 24)  # +-1 px stays well inside the class (half the 2:3 - 3:4 gap is ~6%)
    return frac.numerator * scale + rng.choice([-1, 0, 1]), frac.denominator * scale


def make_synthetic_set(
    root: Path,
    n: int,
    *,
    ratios: list[float] | None = None,
    seed: int = 0,
    noise: float = 0.15,
    n_missing: int = 0,
    n_corrupt: int = 0,
) -> SyntheticSet:
    """Write `n` Track 2 train records and their images under `root`.

    Args:
        root (Path): output folder (gets track_2_train.json and images/).
        n (int): number of records.
        ratios (list[float], optional): canvas classes (width / height); must include 1.0.
        seed (int, optional): everything is deterministic given the seed.
        noise (float, optional): probability of one extra evidence sentence that does not move the class.
        n_missing (int, optional): the last records get no image file.
        n_corrupt (int, optional): the records before those get a file that is not an image.
    """
    ratios = sorted(ratios or DEFAULT_RATIOS)
    square = ratios.index(1.0)
    rng = random.Random(seed)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    records = []
    out = SyntheticSet(train_json=root / "track_2_train.json", images_dir=images)
    for i in range(n):
        index = rng.randrange(len(ratios))
        offset = max(-3, min(3, index - square))
        strengths = list(rng.choice(RECIPES[offset]))
        if rng.random() < noise:
            strengths.append(rng.choice(list(EVIDENCE)))
        sentences = [rng.choice(EVIDENCE[s]) for s in strengths] + rng.sample(FILLERS, rng.randint(3, 6))
        rng.shuffle(sentences)
        cut = rng.randint(1, len(sentences) - 1)
        name = f"unsplash_people_{i:05d}_{rng.getrandbits(48):012x}.jpg"
        shard = rng.choice([None, *range(11)])
        folder = images if shard is None else images / f"images_{shard:02d}"
        prefix = "" if shard is None or rng.random() < 0.5 else f"images_{shard:02d}/"
        records.append({
            "image_path": prefix + name,
            "content_description": " ".join(sentences[:cut]),
            "composition_analysis": " ".join(sentences[cut:]),
        })
        out.ratios.append(ratios[index])
        if i >= n - n_missing:
            out.missing.append(prefix + name)
            continue
        folder.mkdir(exist_ok=True)
        if i >= n - n_missing - n_corrupt:
            (folder / name).write_bytes(b"this is not a JPEG file")
            out.corrupt.append(prefix + name)
            continue
        Image.new("RGB", _image_size(ratios[index], rng), (128, 100, 90)).save(folder / name, quality=50)
    out.train_json.write_text(json.dumps(records, indent=1), encoding="utf-8")
    return out
