"""The prompt fits the text encoder without losing a target: condensing rules, the backend's real budget, the
model's own tokenizer, and the LLM paths (targets and condensing) against the scripted fake VLM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_vlm import make_client

from portraitcraft.agents.planner import Planner
from portraitcraft.agents.planner.condense import same_targets
from portraitcraft.agents.planner.prompt_builder import (
    EstimateCounter,
    PromptBuilder,
    load_token_counter,
    split_sentences,
)
from portraitcraft.agents.planner.role import backend_token_budget
from portraitcraft.agents.planner.targets import extract_targets
from portraitcraft.config import GeneratorConfig, PlannerConfig, load_config
from portraitcraft.schemas import Track2Spec

ITEMS = json.loads((Path(__file__).parent / "data" / "target_descriptions.json").read_text())["items"]


def spec_of(item: dict) -> Track2Spec:
    return Track2Spec(image_path=f"{item['id']}.jpg", content=item["content_description"],
                      composition=item["composition_analysis"])


def sections(prompt: str) -> tuple[str, str]:
    content = prompt.split("[Content]\n")[1].split("\n\n[Composition]")[0]
    return content, prompt.split("[Composition]\n")[1]


@pytest.mark.parametrize("budget,min_share", [(300, 0.9), (200, 0.5)])
def test_condensing_keeps_every_target_of_realistic_descriptions(budget: int, min_share: float) -> None:
    planner = Planner(PlannerConfig(max_prompt_tokens=budget))
    fitted = 0
    for item in ITEMS:
        spec = spec_of(item)
        plan = planner.plan(spec)
        content, composition = sections(plan.prompt)
        assert same_targets(extract_targets(content, composition), plan.targets), item["id"]
        assert plan.prompt_tokens <= plan.prompt_tokens_before and plan.prompt_budget == budget
        if plan.prompt_tokens_before > budget:
            assert plan.prompt_tokens < plan.prompt_tokens_before
        if plan.prompt_tokens <= budget:
            fitted += 1
            assert plan.warnings == []
        else:  # only target and spatial sentences are left: it warns instead of cutting one
            assert "over max_prompt_tokens" in plan.warnings[0]
        kept = set(split_sentences(content) + split_sentences(composition))
        for phrase in plan.targets.phrases.values():  # target sentences are never changed
            for part in phrase.split("; "):
                assert any(part in s for s in kept), (item["id"], part)
    assert fitted >= min_share * len(ITEMS)


def test_condensing_order_filler_then_repeats_then_unkeyed_sentences() -> None:
    content = ("The photograph shows a woman in a red coat standing on a bridge. She is placed on the left third. "
               "The mood is very calm and quite contemplative.")
    composition = ("A woman in a red coat stands on a bridge, which helps to anchor the scene. "
                   "Overall, the palette is warm and muted. Soft light falls from the right.")
    builder = PromptBuilder(max_prompt_tokens=10_000)
    full = builder.build(content, composition)
    assert full.condensed == [] and full.tokens == full.tokens_before
    tight = PromptBuilder(max_prompt_tokens=full.tokens - 8).build(content, composition)
    assert tight.condensed == ["rules:filler"] and tight.dropped == []
    assert "The photograph shows" not in tight.text and "very" not in tight.text and "Overall" not in tight.text
    assert "She is placed on the left third." in tight.text and "Soft light falls from the right." in tight.text
    tighter = PromptBuilder(max_prompt_tokens=full.tokens - 25).build(content, composition)
    assert tighter.condensed[:2] == ["rules:filler", "rules:repeats"]
    assert any(d.startswith("A woman in a red coat stands on a bridge") for d in tighter.dropped)
    assert tighter.tokens <= full.tokens - 25 and tighter.tokens_before == full.tokens


def test_backend_budget_uses_the_pipeline_limit() -> None:
    assert backend_token_budget(GeneratorConfig(backend="qwen-image", max_sequence_length=2048)) == 1024
    assert backend_token_budget(GeneratorConfig(backend="qwen-image", max_sequence_length=768)) == 768
    assert backend_token_budget(GeneratorConfig(backend="zimage-turbo", max_sequence_length=1024)) == 976
    assert backend_token_budget(GeneratorConfig(backend="remote", max_sequence_length=4096)) == 4096
    cfg = load_config(overrides={"generator": {"backend": "qwen-image", "max_sequence_length": 1024}})
    long = spec_of(max(ITEMS, key=lambda i: len(i["content_description"] + i["composition_analysis"])))
    plan = Planner.from_config(cfg).plan(long)
    assert plan.prompt_budget == 1024 and plan.prompt_tokens == plan.prompt_tokens_before  # fits whole
    capped = load_config(overrides={"planner": {"max_prompt_tokens": 128}})
    assert Planner.from_config(capped).plan(long).prompt_budget == 128  # the planner's own setting wins


def test_the_models_own_tokenizer_counts_when_on_disk(tmp_path: Path) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    corpus = [i["content_description"] + " " + i["composition_analysis"] for i in ITEMS]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=["[UNK]"]))
    model = tmp_path / "model"
    (model / "tokenizer").mkdir(parents=True)
    tok.save(str(model / "tokenizer" / "tokenizer.json"))

    counter = load_token_counter(str(model))
    text = corpus[0]
    assert counter.name.startswith("tokenizer ") and counter.count(text) == len(tok.encode(text).ids)
    assert counter.count(text) != EstimateCounter().count(text)
    cut = counter.cut(text, 50)
    assert cut is not None and counter.count(text[:cut]) <= 50 < counter.count(text[: cut + 40])
    assert load_token_counter(str(tmp_path / "nothing")).name == "estimate"
    assert load_token_counter("org/not-in-the-cache").name == "estimate"

    cfg = load_config(overrides={"generator": {"model": str(model), "backend": "qwen-image"}})
    plan = Planner.from_config(cfg).plan(spec_of(ITEMS[0]))
    assert plan.prompt_tokens == counter.count(plan.prompt)


async def test_llm_targets_and_their_fallback(fake_vlm) -> None:
    item = ITEMS[0]
    planner = Planner(targets_mode="llm")
    answer = {"horizontal": {"value": "left", "quote": "not in the text at all", "frame": "viewer"},
              "crop_level": {"value": "full-body", "quote": "full-body", "frame": "viewer"},
              "gaze": {"value": "left", "quote": "looking slightly off to her left", "frame": "viewer"},
              "people": {"value": 1, "quote": "a young woman", "frame": "viewer"}}
    fake_vlm.script.push(answer)
    async with make_client(fake_vlm) as vlm:
        plan = await planner.aplan(spec_of(item), vlm)
    assert plan.targets.gaze == "left" and plan.targets.horizontal is None  # an invented quote drops its target
    assert plan.targets.crop_level == "full-body" and plan.targets.enforced("crop_level")
    assert plan.targets.phrases["gaze"] == "looking slightly off to her left"
    assert plan.targets.evidence["gaze"].source.startswith("llm")
    sent = fake_vlm.chat_requests[0].body["messages"][-1]["content"]
    text = sent if isinstance(sent, str) else " ".join(p.get("text", "") for p in sent)
    assert "VERBATIM" not in text and "character for character" in text and item["composition_analysis"][:60] in text

    fake_vlm.script.fault("status", status=400, message="no such model")
    async with make_client(fake_vlm) as vlm:
        fallback = await planner.aplan(spec_of(item), vlm)
    assert same_targets(fallback.targets, planner.plan(spec_of(item)).targets)
    assert "LLM targets failed" in fallback.warnings[0]


async def test_llm_condensing_is_checked_and_falls_back_to_rules(fake_vlm) -> None:
    item = ITEMS[0]
    spec = spec_of(item)
    planner = Planner(PlannerConfig(max_prompt_tokens=220, condense="llm"), targets_mode="rules")
    rules = planner.plan(spec)
    short_content = ("A young woman in a long camel coat stands on a quiet city street, holding a coffee cup.")
    short_composition = ("The woman is positioned on the left third of a vertical frame and shown full-body. Her "
                         "body faces the camera, but she appears to be looking slightly off to her left.")
    fake_vlm.script.push({"content": short_content, "composition": short_composition})
    async with make_client(fake_vlm) as vlm:
        plan = await planner.aplan(spec, vlm)
    assert short_composition.split(".")[0] in plan.prompt and plan.prompt_tokens <= 220
    assert plan.prompt_tokens_before == rules.prompt_tokens_before > 220
    assert same_targets(plan.targets, rules.targets) and plan.warnings == []

    # an answer that loses the gaze statement is refused: the rules condense instead
    fake_vlm.script.push({"content": short_content, "composition": "The woman stands on the left third."})
    async with make_client(fake_vlm) as vlm:
        refused = await planner.aplan(spec, vlm)
    assert refused.prompt == rules.prompt and "lost a target" in refused.warnings[0]
