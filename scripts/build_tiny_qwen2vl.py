"""Build a tiny random Qwen2-VL checkpoint (tokenizer, processor, weights) offline, for vLLM tests.

No hub access: the byte-level BPE tokenizer is trained in-process on a generated corpus, the weights are
random (fixed seed), and a planted logit bias makes replies short: the last hidden state carries a large
constant on dimension 0 and the lm_head rows of "closing" tokens read that dimension, ranked so that a
string closes first (`"`), then the object (`}`), then the turn (end-of-turn), then `,` / `]` and their
merges. Under a JSON grammar, replies close after a few tokens (greedy replies are minimal); they are
schema-valid garbage: good for testing structure, counts, logprobs, errors and concurrency, never content.

    .venv/bin/python scripts/build_tiny_qwen2vl.py /tmp/tiny-qwen2vl            # build (about 5 s)
    .venv/bin/python scripts/build_tiny_qwen2vl.py /tmp/tiny-qwen2vl --seed 3   # another random model
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast, Qwen2VLForConditionalGeneration

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
BPE_VOCAB = 480  # byte alphabet (256) + merges; the specials come on top
MAX_PIXELS = 224 * 224  # 16x16 patches of 14 px -> at most 64 visual tokens after the 2x2 merge
MIN_PIXELS = 56 * 56
# closing token text -> share of the planted bias (see the module docstring)
CLOSING_RANK = {'"': 1.0, "}": 0.9, "<|im_end|>": 0.85}
CLOSING_CHARS = set('"},]')
OTHER_CLOSING_SHARE = 0.7  # `,`, `]` and merges of closing characters such as `",` or `"}`

# A Qwen-style ChatML template: string or OpenAI-style part lists; images/videos become vision placeholders.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] in ('image', 'image_url') %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif part['type'] in ('video', 'video_url') %}{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_WORDS = (
    "the", "a", "portrait", "photo", "of", "person", "face", "head", "hands", "pose", "camera", "light",
    "shadow", "left", "right", "centre", "upper", "lower", "frame", "subject", "background", "sharp",
    "soft", "warm", "cool", "colour", "contrast", "score", "level", "answer", "choice", "yes", "no", "good",
    "bad", "excellent", "poor", "fair", "grade", "rule", "check", "pass", "fail", "reason", "confidence",
    "high", "medium", "low", "image", "describe", "rate", "composition", "lighting", "focus", "symmetry",
    "crop", "eye", "gaze", "smile", "shoulder", "body",
)


def _corpus(rng: random.Random, lines: int = 4000) -> list[str]:
    """Deterministic text with prose, JSON objects and numbers, so common JSON pieces get merged."""
    out: list[str] = []
    for i in range(lines):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(3, 12))]
        if i % 3 == 0:
            key = rng.choice(_WORDS)
            value: object = rng.choice([rng.choice(_WORDS), rng.randint(0, 100), round(rng.random(), 3)])
            out.append(json.dumps({key: value, "reason": " ".join(words)}))
        else:
            out.append(" ".join(words).capitalize() + rng.choice([".", "?", "!", ":"]))
    return out


def build_tokenizer(seed: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with Qwen2-VL's special tokens, wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(random.Random(seed)), trainer=trainer)
    tok.add_special_tokens(SPECIAL_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=4096,
    )


def build_model(tokenizer: PreTrainedTokenizerFast, seed: int, bias: float) -> Qwen2VLForConditionalGeneration:
    """The random Qwen2-VL with the planted closing-token bias (see the module docstring)."""
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    vocab_size = len(tokenizer)
    hidden = 64
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": hidden,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,  # head_dim 32 = 2 * sum(mrope_section)
            "num_key_value_heads": 1,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "embed_dim": 64,
            "num_heads": 2,
            "mlp_ratio": 2,
            "hidden_size": hidden,  # the merger projects straight into the text width
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()

    with torch.no_grad():
        model.get_input_embeddings().weight[:, 0] = 1.0  # dominates dim 0 of the residual stream
        head = model.get_output_embeddings().weight
        head[:, 0] = 0.0
        for token, token_id in tokenizer.get_vocab().items():
            share = _closing_share(tokenizer, token)
            if share:
                head[token_id, 0] = bias * share
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    return model


def _closing_share(tokenizer: PreTrainedTokenizerFast, token: str) -> float:
    """The share of the planted bias a vocabulary token gets (0 for ordinary tokens)."""
    if token in CLOSING_RANK:
        return CLOSING_RANK[token]
    text = tokenizer.convert_tokens_to_string([token]).strip()
    if text in CLOSING_RANK:
        return CLOSING_RANK[text]
    return OTHER_CLOSING_SHARE if text and set(text) <= CLOSING_CHARS else 0.0


def build_tiny_qwen2vl(out_dir: Path, *, seed: int = 0, bias: float = 0.8) -> Path:
    """Write config, safetensors weights, tokenizer and processor files into `out_dir`.

    Example: `build_tiny_qwen2vl(Path("/tmp/tiny"))` then `vllm ... --model /tmp/tiny`.
    """
    from transformers import Qwen2VLImageProcessor

    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(seed)
    model = build_model(tokenizer, seed, bias)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    # Saved piecewise: Qwen2VLProcessor() also wants a video processor, which needs torchvision. The server's
    # AutoProcessor assembles the processor from these files (preprocessor_config.json serves both).
    Qwen2VLImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS).save_pretrained(out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder to write the checkpoint into")
    parser.add_argument("--seed", type=int, default=0, help="weights and tokenizer seed (default 0)")
    parser.add_argument("--bias", type=float, default=0.8, help="planted closing-token bias (default 0.8)")
    args = parser.parse_args(argv)
    out = build_tiny_qwen2vl(args.out_dir, seed=args.seed, bias=args.bias)
    files = sorted(p.name for p in out.iterdir())
    print(f"tiny Qwen2-VL written to {out}: {', '.join(files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
