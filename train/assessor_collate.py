"""The assessor LoRA's batches: a record's image and chat exactly as `understand` shows them, answer-only labels.

The image goes through the assessor's own path (`portraitcraft.agents.assessor.prepare_image` for the records'
view, then the VLM client's pixel budget `[assessor] max_image_pixels`; the client sends PNG, which is lossless),
then through the model's processor, like the server does with the request. The chat is the record's system and
user text with the image first, and the answer as the completion: TRL's vision collator renders it with the
model's chat template and masks every prompt token (labels -100), so the loss is on the assistant answer and
its end-of-turn only.

    collator = AssessorCollator(processor, cfg.assessor)
    batch = collator([record.row() for record in records])   # input_ids, attention_mask, pixel_values, labels
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from portraitcraft.agents.assessor import prepare_image
from portraitcraft.agents.assessor_sft import base_view
from portraitcraft.config import AssessorConfig
from portraitcraft.errors import DataError
from portraitcraft.tools.images import ImageError, resize_to_budget


def assessor_image(path: str | Path, cfg: AssessorConfig) -> Image.Image:
    """The image as the assessor's request carries it: the records' view, then the client's pixel budget.

    Raises:
        DataError: the file cannot be decoded (names it).
    """
    try:
        shown = prepare_image(path, base_view(cfg))
    except (ImageError, OSError) as exc:
        raise DataError(f"{path}: the image cannot be decoded for training ({exc})") from None
    return resize_to_budget(shown, cfg.max_image_pixels)


def prompt_messages(row: dict[str, Any], image: Image.Image | None = None) -> list[dict[str, Any]]:
    """The prompt turns of a record in the chat-template layout: system text, then the image and the user text.

    Without `image` the image part is a placeholder that TRL's collator fills from the example's `images`.
    """
    messages: list[dict[str, Any]] = []
    if row["system"]:
        messages.append({"role": "system", "content": row["system"]})
    part: dict[str, Any] = {"type": "image"} if image is None else {"type": "image", "image": image}
    messages.append({"role": "user", "content": [part, {"type": "text", "text": row["user"]}]})
    return messages


def completion_messages(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The assistant turn (the one the loss is computed on)."""
    return [{"role": "assistant", "content": row["answer"]}]


class AssessorCollator:
    """Rows of `AssessorRecord.row()` -> a batch with answer-only labels (TRL's vision collator inside).

    Args:
        processor (ProcessorMixin): the model's processor (tokenizer + image processor + chat template).
        cfg (AssessorConfig): the assessor whose image resolution the batches use.
        max_length (int, optional): cut sequences to this many tokens (the answer's end is cut).
    """

    def __init__(self, processor: Any, cfg: AssessorConfig, max_length: int | None = None) -> None:
        from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

        self.cfg = cfg
        self.inner = DataCollatorForVisionLanguageModeling(processor=processor, max_length=max_length,
                                                           completion_only_loss=True)

    def example(self, row: dict[str, Any]) -> dict[str, Any]:
        """One row as TRL's prompt-completion example (the image decoded and sized like the request's)."""
        image = assessor_image(row["images"][0], self.cfg)
        return {"prompt": prompt_messages(row), "completion": completion_messages(row), "images": [image]}

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return self.inner([self.example(row) for row in rows])


__all__ = ["AssessorCollator", "assessor_image", "completion_messages", "prompt_messages"]
