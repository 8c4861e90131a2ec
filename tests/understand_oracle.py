"""A scripted "oracle" assessor for the fake VLM: it recognises each image and answers like a perfect model.

Images are recognised by their mean colour (mirror-invariant and nearly resize-invariant) against the
labelled examples, so every view of an image, flipped or shrunk, gets the ground truth: levels as scores
inside their band (with a little per-sample jitter), the total score, and the labelled option (its text, or
its mirrored text in a flipped view), found under whatever letter the view shows it; without labelled
options, the option whose text contains `correct_word`. Directional questions are answered by
looking at the image: the option naming the side where the bright square is.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from fake_vlm import Answer, answer_choices, answer_schema, request_images, user_text
from PIL import Image

from portraitcraft.agents.views import swap_directions
from portraitcraft.schemas import ATTRIBUTES

LEVEL_SCORE = {"A": 3.0, "B": 6.0, "C": 8.0}
LEVEL_NAME = {"A": "Poor", "B": "Medium", "C": "Good"}


def mean_colour(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB").resize((16, 16)), dtype=float).reshape(-1, 3).mean(axis=0)


def bright_side(img: Image.Image) -> str:
    """'left' or 'right': the half of the image with more brightness."""
    arr = np.asarray(img.convert("L"), dtype=float)
    half = arr.shape[1] // 2
    return "left" if arr[:, :half].sum() > arr[:, half:].sum() else "right"


class Oracle:
    """`fake_vlm.script.default(fn=Oracle(...))`; counts the samples it wrote."""

    def __init__(self, labels: list[Mapping[str, Any]], images: Mapping[str, Path], *, correct_word: str = "complete",
                 qa: Mapping[str, Any] | None = None) -> None:
        self.truth = []
        for item in labels:
            with Image.open(images[Path(item["image_path"]).name]) as img:
                self.truth.append((mean_colour(img), item))
        self.correct_word = correct_word
        self.qa = dict(qa or {})
        self.count = itertools.count()
        self.samples = 0

    def identify(self, img: Image.Image) -> Mapping[str, Any]:
        colour = mean_colour(img)
        return min(self.truth, key=lambda t: float(np.abs(t[0] - colour).sum()))[1]

    def __call__(self, body: dict[str, Any]) -> Any:
        self.samples += 1
        jitter = (next(self.count) % 5 - 2) * 0.2  # -0.4 .. 0.4
        schema = answer_schema(body)
        images = request_images(body)
        text = user_text(body)
        if answer_choices(body) is not None:  # the logprob overall digit
            total = self.identify(images[0])["total_score"]
            digit = min(9, max(0, round(total / 100 * 9)))
            other = str(max(0, digit - 1)) if digit else "1"
            return Answer(str(digit), [str(digit)], [{str(digit): math.log(0.75), other: math.log(0.25)}])
        if schema is not None and "correct" in schema.get("properties", {}):  # the open-answer grader
            return {"correct": "left" in text.split("Candidate answer:", 1)[-1].lower()}
        shown = dict(re.findall(r"^([A-Z])[.)] (.*)$", text, flags=re.M))
        if schema is not None and "criteria" in schema.get("properties", {}):
            return self._assessment(schema, images[0], shown, jitter)
        return self._qa(schema or {}, images[0] if images else None, shown)

    def _pick(self, shown: Mapping[str, str], img: Image.Image | None,
              item: Mapping[str, Any] | None = None) -> str:
        if item is not None and item.get("answer") in (item.get("options") or {}):
            correct = item["options"][item["answer"]]
            for letter, option in shown.items():  # a mirrored view shows the option with its words swapped
                if option in (correct, swap_directions(correct)):
                    return letter
        side = bright_side(img) if img is not None else None
        for letter, option in shown.items():
            if side is not None and re.search(rf"\b{side}\b", option, flags=re.I):
                return letter
        for letter, option in shown.items():
            if self.correct_word in option.lower():
                return letter
        return next(iter(shown))

    def _assessment(self, schema: Mapping[str, Any], img: Image.Image, shown: Mapping[str, str],
                    jitter: float) -> dict[str, Any]:
        item = self.identify(img)
        levels_mode = "Poor" in json.dumps(schema)
        criteria = {}
        for attr in ATTRIBUTES:
            code = item["criteria"][attr]["level"]
            criteria[attr] = LEVEL_NAME[code] if levels_mode else round(LEVEL_SCORE[code] + jitter, 1)
        out: dict[str, Any] = {"criteria": criteria, "overall": int(item["total_score"] + 2 * jitter * 5)}
        if "explanation" in schema.get("properties", {}):
            out = {"explanation": "oracle", **out}
        if "answer" in schema.get("properties", {}):
            out["answer"] = self._pick(shown, img, item)
        return out

    def _qa(self, schema: Mapping[str, Any], img: Image.Image | None, shown: Mapping[str, str]) -> dict[str, Any]:
        answer = schema.get("properties", {}).get("answer", {})
        kind = answer.get("type")
        if kind == "boolean":
            return {"answer": True}
        if kind == "array":
            return {"answer": sorted(k for k, v in shown.items() if "subject" in v.lower())}
        if "enum" in answer:
            return {"answer": self._pick(shown, img)}
        side = bright_side(img) if img is not None else "left"
        return {"answer": f"The subject is on the {side}."}
