"""The assessor adapter is trained on the prompt `understand` sends: one exported record through the training
collator and through the assessor's request builder (a real request to the fake VLM server) gives the same
messages, the same image pixels and the same chat-template rendering; the loss sees the answer only."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from fake_vlm import make_client
from PIL import Image

from portraitcraft.agents.assessor import Assessor
from portraitcraft.agents.assessor_sft import base_view
from portraitcraft.config import AssessorConfig
from portraitcraft.train.assessor_data import read_records

pytestmark = pytest.mark.diffusion
pytest.importorskip("trl")
pytest_plugins = ["assessor_fixtures"]

from assessor_helpers import IMAGES, TINY_PIXELS, export_records  # noqa: E402

from portraitcraft.train.assessor_collate import AssessorCollator, assessor_image  # noqa: E402
from portraitcraft.train.assessor_model import load_processor  # noqa: E402


def _decode(url: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")


def _as_template(messages: list[dict], image: Image.Image | None = None) -> list[dict]:
    """Wire messages (image_url data URLs) as chat-template messages with the decoded image."""
    out = []
    for m in messages:
        content = m["content"]
        if isinstance(content, list):
            content = [{"type": "image", "image": image if image is not None else _decode(p["image_url"]["url"])}
                       if p["type"] == "image_url" else p for p in content]
        out.append({"role": m["role"], "content": content})
    return out


def _answer(body: dict) -> dict:
    from portraitcraft.schemas import ATTRIBUTES

    return {"criteria": dict.fromkeys(ATTRIBUTES, 5.0), "overall": 50}


@pytest.mark.parametrize("settings", [{}, {"output": "levels", "explanations": True, "dialect": "plain"}],
                         ids=["scores-vllm", "levels-explained-plain"])
async def test_training_prompt_is_the_request_prompt(settings, tiny_qwen2vl, fake_vlm, tmp_path) -> None:
    cfg = AssessorConfig(max_image_pixels=TINY_PIXELS, temperature=0.0, **settings)
    rec = export_records(tmp_path / "rec", cfg)
    record = read_records(rec, cfg, image_roots=[IMAGES]).records[0]
    processor = load_processor(str(tiny_qwen2vl))
    collator = AssessorCollator(processor, cfg)
    example = collator.example(record.row())

    if settings.get("output") == "levels":
        from portraitcraft.schemas import ATTRIBUTES

        fake_vlm.script.default({"explanation": "ok", "criteria": dict.fromkeys(ATTRIBUTES, "Good"), "overall": 70})
    else:
        fake_vlm.script.default(fn=_answer)
    async with make_client(fake_vlm, dialect=cfg.dialect, max_image_pixels=cfg.max_image_pixels) as client:
        result = await Assessor(cfg, client).assess(record.image, None, base_view(cfg))
    assert result["error"] is None and len(result["samples"]) == 1
    [request] = fake_vlm.chat_requests
    wire = request.body["messages"]

    # Same turns, same text, image first then text.
    trained = example["prompt"]
    assert [m["role"] for m in wire] == [m["role"] for m in trained] == ["system", "user"]
    assert wire[0]["content"] == trained[0]["content"] == record.system
    assert [p["type"] for p in wire[1]["content"]] == ["image_url", "text"]
    assert [p["type"] for p in trained[1]["content"]] == ["image", "text"]
    assert wire[1]["content"][1]["text"] == trained[1]["content"][1]["text"] == record.user
    # Same pixels: the request's PNG decodes to exactly the image the collator trains on.
    sent = _decode(wire[1]["content"][0]["image_url"]["url"])
    trained_image = example["images"][0]
    assert sent.size == trained_image.size and sent.size[0] * sent.size[1] <= TINY_PIXELS
    assert np.array_equal(np.asarray(sent), np.asarray(trained_image))
    assert np.array_equal(np.asarray(assessor_image(record.image, cfg)), np.asarray(trained_image))
    # Same rendering through the model's chat template and processor: the same tokens reach the model.
    served_text = processor.apply_chat_template(_as_template(wire), add_generation_prompt=True, tokenize=False)
    trained_text = processor.apply_chat_template(_as_template(trained, trained_image), add_generation_prompt=True,
                                                 tokenize=False)
    assert served_text == trained_text
    served_ids = processor(images=[sent], text=[served_text], return_tensors="pt")["input_ids"][0].tolist()
    batch = collator([record.row()])
    n = len(served_ids)
    assert batch["input_ids"][0][:n].tolist() == served_ids
    assert (batch["labels"][0][:n] == -100).all()  # no loss on the prompt (image tokens included)


def test_loss_is_on_the_answer_only(tiny_qwen2vl, assessor_records) -> None:
    rec, images = assessor_records
    cfg = AssessorConfig(max_image_pixels=TINY_PIXELS)
    records = read_records(rec, cfg, image_roots=[images]).records[:2]
    processor = load_processor(str(tiny_qwen2vl))
    batch = AssessorCollator(processor, cfg)([r.row() for r in records])
    tok = processor.tokenizer
    for i, record in enumerate(records):
        labels = batch["labels"][i]
        kept = labels[labels != -100].tolist()
        assert tok.decode(kept) == record.answer + "<|im_end|>\n"
        image_token = tok.convert_tokens_to_ids("<|image_pad|>")
        assert image_token in batch["input_ids"][i].tolist() and image_token not in kept
    assert batch["pixel_values"].shape[0] == int(batch["image_grid_thw"].prod(dim=1).sum())
