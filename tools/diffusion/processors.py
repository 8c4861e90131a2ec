"""An image-only Qwen2-VL processor for the Qwen-Image-Edit pipelines.

`Qwen2VLProcessor` also builds a video processor, which needs torchvision; PyPI's torchvision does not import
next to torch 2.13 CPU. The edit pipelines only send images, so this subclass drops the video part and uses the
PIL image processor. It reads the same `processor/` folder as the real one.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from transformers import AutoTokenizer, Qwen2VLProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.processing_utils import ProcessorMixin

IMAGE_TOKEN = "<|image_pad|>"
VIDEO_TOKEN = "<|video_pad|>"


class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
    """`Qwen2VLProcessor` without its video processor (no torchvision needed).

    Example:
        >>> proc = load_image_only_processor("Qwen/Qwen-Image-Edit")  # doctest: +SKIP
    """

    def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: str | None = None,
                 **kwargs: Any) -> None:
        self.image_token = getattr(tokenizer, "image_token", None) or IMAGE_TOKEN
        self.video_token = getattr(tokenizer, "video_token", None) or VIDEO_TOKEN
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


def torchvision_available() -> bool:
    """True when torchvision can be imported (then the stock `Qwen2VLProcessor` works)."""
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        import torchvision  # noqa: F401
    except Exception:  # a torchvision built for another torch fails at import (`torchvision::nms`)
        return False
    return True


def image_only_processor(tokenizer: Any, **image_kwargs: Any) -> ImageOnlyQwen2VLProcessor:
    """A fresh processor around `tokenizer` (used to build tiny models); `image_kwargs` go to the image part."""
    return ImageOnlyQwen2VLProcessor(image_processor=Qwen2VLImageProcessorPil(**image_kwargs), tokenizer=tokenizer)


def load_image_only_processor(model: str, subfolder: str = "processor", **hub_kwargs: Any) -> ImageOnlyQwen2VLProcessor:
    """Load the image processor and tokenizer of a Qwen-Image-Edit checkpoint's `processor/` folder.

    Args:
        model (str): hub id or local folder of the pipeline.
        subfolder (str, optional, defaults to "processor"): the processor's folder inside it.
        **hub_kwargs: `revision`, `local_files_only`, ... passed to both `from_pretrained` calls.
    """
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(model, subfolder=subfolder, **hub_kwargs)
    tokenizer = AutoTokenizer.from_pretrained(model, subfolder=subfolder, **hub_kwargs)
    return ImageOnlyQwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer)
