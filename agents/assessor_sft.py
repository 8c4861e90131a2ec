"""Track 1 training items as chat fine-tuning records, with exactly the assessor's inference prompt and schema.

The system text, the user text (`portraitcraft.agents.assessor.request_text` for the original view, plus the schema the
client appends on `plain` endpoints) and the answer schema (`answer_schema`) are the ones `Assessor.assess`
sends, so a model fine-tuned on these records is asked the same way at test time. Train items have no
question, so the records use the no-question variant of the same template and schema. Images are referenced
by path. Layouts:

- "openai": OpenAI chat fine-tuning JSONL (`messages` with an `image_url` part).
- "sharegpt": LLaMA-Factory's ShareGPT multimodal layout (`messages` with `<image>` in the user turn,
  `images`, `system`) plus its `dataset_info.json` entry.
- "swift": ms-swift's `messages` + `images` layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from portraitcraft.agents.assessor import answer_schema, full_user_text, request_text, system_text
from portraitcraft.agents.views import View
from portraitcraft.config import AssessorConfig
from portraitcraft.schemas import ATTRIBUTES, Track1TrainItem

SftFormat = Literal["openai", "sharegpt", "swift"]
SFT_FORMATS: tuple[str, ...] = ("openai", "sharegpt", "swift")
EXPLANATION_CHARS = 600
DATASET_NAME = "portraitcraft_track1"


def base_view(cfg: AssessorConfig) -> View:
    """The view training records show: the original image, options as given, the first template."""
    return View("orig/sft", False, max(cfg.max_pixels), 0, cfg.templates[0])


def target_answer(item: Track1TrainItem, cfg: AssessorConfig) -> str:
    """The assistant turn: the train labels as the assessor's answer JSON (validated by its schema)."""
    schema = answer_schema(cfg.output, (), cfg.explanations)
    if cfg.output == "levels":
        criteria: dict[str, Any] = {a: item.criteria[a].level.value for a in ATTRIBUTES}
    else:
        criteria = {a: round(float(item.criteria[a].score), 1) for a in ATTRIBUTES}
    data: dict[str, Any] = {"criteria": criteria, "overall": round(float(item.total_score))}
    if cfg.explanations:
        reasons = [f"{a}: {item.criteria[a].reason.strip()}" for a in ATTRIBUTES if item.criteria[a].reason.strip()]
        data = {"explanation": " ".join(reasons)[:EXPLANATION_CHARS], **data}
    return schema.model_validate(data).model_dump_json(by_alias=True)


def sft_record(item: Track1TrainItem, image: str | Path, cfg: AssessorConfig, fmt: SftFormat) -> dict[str, Any]:
    """One training record in the layout `fmt`.

    Example:
        >>> rec = sft_record(item, "/data/a.jpg", cfg.assessor, "swift")                # doctest: +SKIP
        >>> rec["images"], rec["messages"][1]["content"][:7]                            # doctest: +SKIP
        (['/data/a.jpg'], '<image>')
    """
    prompt, _, _ = request_text(None, base_view(cfg), cfg)
    user = full_user_text(prompt, answer_schema(cfg.output, (), cfg.explanations), cfg.kind)
    system = system_text()
    answer = target_answer(item, cfg)
    path = str(image)
    if fmt == "openai":
        return {"messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": path}},
                                         {"type": "text", "text": user}]},
            {"role": "assistant", "content": answer},
        ]}
    if fmt == "sharegpt":
        return {"messages": [{"role": "user", "content": f"<image>{user}"},
                             {"role": "assistant", "content": answer}],
                "system": system, "images": [path]}
    if fmt == "swift":
        return {"messages": [{"role": "system", "content": system},
                             {"role": "user", "content": f"<image>{user}"},
                             {"role": "assistant", "content": answer}],
                "images": [path]}
    raise ValueError(f"unknown SFT format {fmt!r}; expected one of {SFT_FORMATS}")


def dataset_info(file_name: str) -> dict[str, Any]:
    """LLaMA-Factory's dataset_info.json entry for the ShareGPT file."""
    return {DATASET_NAME: {
        "file_name": file_name, "formatting": "sharegpt",
        "columns": {"messages": "messages", "images": "images", "system": "system"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
    }}


__all__ = ["SFT_FORMATS", "base_view", "dataset_info", "sft_record", "target_answer"]
