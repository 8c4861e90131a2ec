"""The work behind the generate graph's nodes: each function takes the state and the context and returns a
state update. Kept apart from graphs/generate.py so the graph module reads as wiring."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from portraitcraft.agents.editor import EditPlan, best_round
from portraitcraft.agents.group import group_pairs, group_rewards
from portraitcraft.atomic import save_image_atomic
from portraitcraft.data import find_image
from portraitcraft.errors import InputError, PortraitcraftError
from portraitcraft.graphs.generate_state import GenerateContext, GenerateState, Round
from portraitcraft.schemas import CompositionTargets, Track2Spec
from portraitcraft.tools.image_checks import softness
from portraitcraft.tools.images import hflip, load_image
from portraitcraft.tools.provenance import INIT_KEY, REFRAME_KEY, copy_with_provenance, save_with_provenance


def spec_of(state: GenerateState) -> Track2Spec:
    return Track2Spec.model_validate(state["spec"])


def targets_of(state: GenerateState) -> CompositionTargets:
    return CompositionTargets.model_validate(state.get("targets") or {})


def add_cost(state: GenerateState, **delta: float) -> dict[str, float]:
    cost = dict(state.get("cost") or {})
    for key, value in delta.items():
        cost[key] = round(cost.get(key, 0) + value, 6)
    return cost


class GpuClock:
    """GPU seconds of one drawer call: the drawer's own per-item accounting (`item_seconds`), else wall time."""

    def __init__(self, drawer: Any, item_id: str) -> None:
        self.drawer, self.item_id = drawer, item_id
        self.before = self._seconds()
        self.start = time.perf_counter()

    def _seconds(self) -> float | None:
        get = getattr(self.drawer, "item_seconds", None)
        return float(get(self.item_id)) if callable(get) else None

    def spent(self) -> float:
        after = self._seconds()
        if after is None or self.before is None:
            return time.perf_counter() - self.start
        return after - self.before


def save_round(ctx: GenerateContext, item_id: str, k: int, image: Image.Image,
               records: dict[str, Any] | None = None) -> str:
    """Write round k's image (atomically) with its provenance chunks -- a generated or edited image's own
    parameters, plus `records` (chunk name -> record) -- and return its path relative to the run folder."""
    path = ctx.run.item_dir(item_id) / f"round_{k}.png"
    save_with_provenance(image, path, records)
    return path.relative_to(ctx.run.root).as_posix()


def abs_path(ctx: GenerateContext, rel: str) -> str:
    return str(ctx.run.root / rel)


async def plan_item(state: GenerateState, ctx: GenerateContext) -> dict[str, Any]:
    """Canvas, targets and prompt. With `[vision] targets = "llm" | "hybrid"` and a critic endpoint, the targets
    are read by that model too (quotes checked against the text, cross-checked with the rules)."""
    spec = spec_of(state)
    if not spec.content.strip() and not spec.composition.strip():
        raise InputError(f"item {spec.id}: the description is empty (no content and no composition)")
    vlm = ctx.critic.vlm if ctx.cfg.vision.targets in ("llm", "hybrid") else None
    aplan = getattr(ctx.planner, "aplan", None)
    plan = await aplan(spec, vlm) if vlm is not None and aplan is not None else ctx.planner.plan(spec)
    targets = ctx.targets_of(spec, plan)
    return {"plan": {"width": plan.width, "height": plan.height, "prompt": plan.prompt, "seed": plan.seed,
                     "reasons": list(getattr(plan, "reasons", []))},
            "targets": targets.model_dump(mode="json")}


def photo_canvas(plan: dict[str, Any], photo: tuple[int, int], multiple: int = 16) -> dict[str, Any]:
    """The plan for an init photo: the planned aspect class at the photo's own scale when the planned canvas is
    smaller than the largest crop of that aspect the photo holds (a reframed photo is never shrunk to a small
    drafting canvas, where the vision models stop finding people); a larger planned canvas is kept (the refiner's
    job). Sides are multiples of `multiple` (a regeneration draws at this size) and never exceed the photo.

    Example:
        >>> canvas = photo_canvas({"width": 80, "height": 128, "reasons": []}, (512, 512))
        >>> canvas["width"], canvas["height"]
        (320, 512)
    """
    width, height = plan.get("width"), plan.get("height")
    if not width or not height:
        return plan
    aspect, (pw, ph) = width / height, photo
    fit_w, fit_h = (ph * aspect, ph) if pw / ph >= aspect else (pw, pw / aspect)
    w = h = 0
    for side in range(int(fit_h) // multiple * multiple, 0, -multiple):  # the planned ratio itself, not a near one
        cand = round(side * aspect)
        if cand % multiple == 0 and cand <= fit_w and abs(cand / side - aspect) <= 0.005 * aspect:
            w, h = cand, side
            break
    if w * h <= width * height or min(w, h) < multiple:
        return plan
    reason = f"init photo {pw}x{ph}: the planned {width}x{height} canvas class at the photo's scale -> {w}x{h}"
    return {**plan, "width": w, "height": h, "reasons": [*plan.get("reasons", []), reason]}


async def draw_first(state: GenerateState, ctx: GenerateContext) -> dict[str, Any]:
    """Round 0: the init image named by the item's image_path (--init-images), else a draft."""
    spec, plan = spec_of(state), state["plan"] or {}
    if ctx.init_images is not None:
        lookup = find_image(ctx.init_images, spec.image_path)
        source = lookup.path
        if source is None:  # say which: missing, a link out of the folder, a device or pipe
            raise InputError(f"item {spec.id}: no init image {spec.image_path!r} under {ctx.init_images} "
                             f"({lookup.problem})")
        image = await asyncio.to_thread(load_image, source, name=f"init image {source}")
        rel = await asyncio.to_thread(save_round, ctx, spec.id, 0, image, {INIT_KEY: {"source": str(source)}})
        first = Round(round=0, image=rel, seed=None, made_by="init", findings=None, passed=None, action=None)
        return {"rounds": [first], "cost": add_cost(state), "plan": photo_canvas(plan, image.size)}
    seed = int(plan["seed"])
    clock = GpuClock(ctx.drawer, spec.id)
    image = await ctx.drawer.generate(plan["prompt"], plan["width"], plan["height"], seed, item_id=spec.id,
                                      negative_prompt=ctx.cfg.generator.negative_prompt)
    gpu = clock.spent()
    rel = await asyncio.to_thread(save_round, ctx, spec.id, 0, image)
    first = Round(round=0, image=rel, seed=seed, made_by="draft", findings=None, passed=None, action=None)
    return {"rounds": [first], "cost": add_cost(state, generations=1, gpu_seconds=gpu)}


async def critique_last(state: GenerateState, ctx: GenerateContext) -> dict[str, Any]:
    """Critique the newest round; its person mask is written beside its image (the drift guard reads it)."""
    spec = spec_of(state)
    last = dict(state["rounds"][-1])
    path = abs_path(ctx, last["image"])
    out = await ctx.critic.critique(path, spec.content, spec.composition, targets_of(state))
    mask = await asyncio.to_thread(save_mask, ctx, spec.id, last["round"], out.analysis_object)
    last.update(findings=[f.model_dump(mode="json") for f in out.findings], passed=out.passed,
                disagreements=out.disagreements, failures=out.failures, analysis=out.analysis,
                heuristics=out.heuristics, mask=mask)
    ctx.emit("critique", id=spec.id, round=last["round"], passed=out.passed, vlm_seconds=out.vlm_seconds,
             vlm_calls=out.vlm_calls)
    return {"rounds": [last], "cost": add_cost(state, vlm_calls=out.vlm_calls, vlm_seconds=out.vlm_seconds)}


def save_mask(ctx: GenerateContext, item_id: str, k: int, analysis: Any) -> str | None:
    """Round k's person mask as a lossless 1-bit PNG beside its image; None when no person was found."""
    mask = getattr(analysis, "mask", None)
    if mask is None:
        return None
    path = ctx.run.item_dir(item_id) / f"round_{k}.mask.png"
    save_image_atomic(Image.fromarray(np.asarray(mask, dtype=bool)), path)
    return path.relative_to(ctx.run.root).as_posix()


def mask_of(state: GenerateState, ctx: GenerateContext) -> Any:
    """Image path (run-relative) -> its person mask, from the mask file its round recorded at critique; a round
    without one (a run made before masks were recorded) is measured again. Never a run-wide memory cache."""
    by_image = {r.get("image"): r for r in state["rounds"]}

    def get(rel: str) -> Any:
        recorded = by_image.get(rel, {})
        if recorded.get("mask"):
            return load_mask(abs_path(ctx, recorded["mask"]))
        if "mask" in recorded or ctx.critic.analyze is None:
            return None  # measured: no person (or nothing can measure it)
        analysis = ctx.critic.analyze(load_image(abs_path(ctx, rel)))
        return getattr(analysis, "mask", None)
    return get


def load_mask(path: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("L")) > 127

def next_plan(state: GenerateState, ctx: GenerateContext) -> EditPlan:
    """The editor's decision, adjusted to the strategy and the generation budget."""
    rounds, plan = state["rounds"], state["plan"] or {}
    if ctx.strategy == "best-of-n":  # independent samples: the same prompt, a new seed, no feedback
        return EditPlan("regenerate", "", len(rounds) - 1, "best-of-n: another independent sample",
                        prompt=plan.get("prompt", ""))
    decision = ctx.editor.decide(rounds, targets_of(state), prompt=plan.get("prompt", ""), mask_of=mask_of(state, ctx),
                                  path_of=lambda rel: abs_path(ctx, rel))
    if decision.action == "regenerate" and (state.get("cost") or {}).get("generations", 0) >= \
            ctx.cfg.loop.max_generations and ctx.editor.can_edit:
        decision.action, decision.reason = "edit", decision.reason + "; generation budget spent: edit instead"
    return decision


async def apply_plan(state: GenerateState, ctx: GenerateContext, decision: EditPlan) -> dict[str, Any]:
    """Carry out one editor decision: a new round image, the previous round annotated with what was done."""
    spec, plan = spec_of(state), state["plan"] or {}
    rounds = [dict(r) for r in state["rounds"]]
    k = len(rounds)
    base = rounds[decision.base_round]
    seed = int(plan.get("seed", 0)) + k
    cost: dict[str, float] = {}
    image: Image.Image | None = None
    record: dict[str, Any] | None = None
    made_by = decision.action
    if decision.action == "reframe":
        image, error, record = await _reframe(ctx, base["image"], decision, plan, k=k, seed=seed,
                                              item_id=spec.id)
        cost["reframes"] = int(image is not None)
        if image is None:  # the crop cannot meet the target: record it and edit instead
            rounds[-1]["reframe_error"] = error
            decision.reason += f"; reframe failed ({error}), edited instead"
            decision.action = made_by = "edit" if ctx.editor.can_edit else "regenerate"
            decision.prompt = decision.prompt or plan.get("prompt", "")
    clock = GpuClock(ctx.drawer, spec.id)
    if decision.action == "edit":
        source = await asyncio.to_thread(load_image, abs_path(ctx, base["image"]))
        image = await ctx.drawer.edit(source, decision.instruction, seed=seed, item_id=spec.id)
        cost.update(edits=1, gpu_seconds=clock.spent())
    elif decision.action == "regenerate":
        image = await ctx.drawer.generate(decision.prompt or plan.get("prompt", ""), plan["width"], plan["height"],
                                          seed, item_id=spec.id, negative_prompt=ctx.cfg.generator.negative_prompt)
        cost.update(generations=1, gpu_seconds=clock.spent())
    assert image is not None
    records = {REFRAME_KEY: record} if decision.action == "reframe" and record else None
    rel = await asyncio.to_thread(save_round, ctx, spec.id, k, image, records)
    rounds[-1].update(action=decision.action, instruction=decision.instruction, reason=decision.reason,
                      edit=decision.to_json())
    new = Round(round=k, image=rel, seed=seed if decision.action != "reframe" else None, made_by=made_by,
                findings=None, passed=None, action=None, base_round=decision.base_round)
    if records:
        new["reframe"] = record
    ctx.emit("edit", id=spec.id, round=k, action=decision.action)
    return {"rounds": [rounds[-1], new], "cost": add_cost(state, **cost)}


async def _reframe(ctx: GenerateContext, rel: str, decision: EditPlan, plan: dict[str, Any], *, k: int, seed: int,
                   item_id: str) -> tuple[Image.Image | None, str, dict[str, Any] | None]:
    """Mirror and/or crop the round image `rel` to the PLANNED canvas's aspect, then bring it to the planned size
    (`_to_canvas`); a pad's mask is written as `round_{k}_pad_mask.png`. Returns (image, error, its
    `portraitcraft:reframe` record)."""
    if ctx.reframe is None:
        return None, "no reframer available (the vision part is not installed)", None
    goal = decision.reframe or {}
    path = abs_path(ctx, rel)
    width, height = plan.get("width"), plan.get("height")
    aspect = width / height if width and height else None  # the reframe asks for the planned ratio, never a new one
    analysis = None  # measured afresh on the image being cropped (deterministic: a resume decides the same)
    mirrored = bool(goal.get("mirror"))
    try:
        source = await asyncio.to_thread(load_image, path)
        if mirrored:  # the subject now faces / looks the other way; measure the mirrored picture
            source = hflip(source)
            analysis = None
            if not any(goal.get(k) for k in ("horizontal", "vertical")) and (
                    aspect is None or abs(source.width / source.height / aspect - 1) <= CANVAS_TOLERANCE):
                record = {"source": rel, "mirrored": True, "crop_box": [0, 0, *source.size], "padding": [0, 0, 0, 0],
                          "fill": "none", "kept_fraction": 1.0, "needs_outpainting": False}
                image, record["resized"] = await _to_canvas(ctx, source, plan, seed=seed, item_id=item_id)
                record["size"] = list(image.size)
                return image, "", record
        if analysis is None:
            analysis = await asyncio.to_thread(ctx.critic.analyze, source) if ctx.critic.analyze else None
        extra = {"outpaint": LaneFill(ctx, plan, seed, item_id)} if _can_outpaint(ctx) else {}
        result = await asyncio.to_thread(ctx.reframe, source, analysis, horizontal=goal.get("horizontal"),
                                         vertical=goal.get("vertical"), aspect=aspect, **extra)
    except PortraitcraftError as exc:
        return None, str(exc), None
    record = result.record(rel, mirrored) if hasattr(result, "record") else {"source": rel, "mirrored": mirrored}
    image, record["resized"] = await _to_canvas(ctx, result.image, plan, seed=seed, item_id=item_id)
    record["size"] = list(image.size)
    if getattr(result, "pad_mask", None) is not None:  # white where padded, at the round image's size
        mask_path = ctx.run.item_dir(item_id) / f"round_{k}_pad_mask.png"
        mask = result.pad_mask.resize(image.size, Image.Resampling.NEAREST)
        await asyncio.to_thread(save_with_provenance, mask, mask_path)
        record["pad_mask"] = mask_path.relative_to(ctx.run.root).as_posix()
    return image, "", record


def _can_outpaint(ctx: GenerateContext) -> bool:
    editor = getattr(ctx.cfg, "editor", None)
    return bool(getattr(editor, "outpaint", False)) and callable(getattr(ctx.drawer, "outpaint", None))


class LaneFill:
    """The reframing editor's `outpaint=` callable for the loop: called from the reframe's worker thread, it runs
    the editor model's inpaint job on the GPU lane (`Drawer.outpaint`) and waits for it."""

    def __init__(self, ctx: GenerateContext, plan: dict[str, Any], seed: int, item_id: str) -> None:
        self.ctx, self.seed, self.item_id = ctx, seed, item_id
        self.prompt = str(plan.get("prompt") or "") or "the same scene continued beyond the frame"
        self.loop = asyncio.get_running_loop()
        self.name = ctx.cfg.editor.model

    def __call__(self, image: Image.Image, mask: Image.Image) -> Image.Image:
        job = self.ctx.drawer.outpaint(image, mask, self.prompt, seed=self.seed, item_id=self.item_id)
        return asyncio.run_coroutine_threadsafe(job, self.loop).result()


CANVAS_TOLERANCE = 0.01
"""The final image's aspect may differ from the planned canvas's by this fraction."""


async def _to_canvas(ctx: GenerateContext, image: Image.Image, plan: dict[str, Any], *, seed: int,
                     item_id: str) -> tuple[Image.Image, str]:
    """The planned size: a larger crop is downscaled to it; a smaller one goes through the configured refiner
    (resized, then SDEdit at `[generator] refiner_strength`) or keeps its own pixels -- never a blind upscale.
    Returns (image, what was done)."""
    width, height = plan.get("width"), plan.get("height")
    if not width or not height or image.size == (width, height):
        return image, "none"
    if image.width >= width and image.height >= height:
        return image.resize((width, height), Image.Resampling.LANCZOS), f"downscaled from {image.width}x{image.height}"
    refine = getattr(ctx.drawer, "refine", None)
    if ctx.cfg.generator.refiner is None or refine is None:
        return image, f"kept {image.width}x{image.height} (smaller than the planned {width}x{height}; no refiner)"
    upscaled = image.resize((width, height), Image.Resampling.LANCZOS)
    refined = await refine(upscaled, plan.get("prompt", ""), seed=seed, item_id=item_id)
    kept = await asyncio.to_thread(softness, refined, image)
    if kept < MIN_REFINED_SHARPNESS:  # a person sees the smear: the crop keeps its own pixels instead
        return image, (f"kept {image.width}x{image.height}: the refiner's {width}x{height} kept only {kept:.0%} "
                       "of the crop's sharpness")
    return refined, (f"refined from {image.width}x{image.height} with {ctx.cfg.generator.refiner.model} at "
                     f"strength {ctx.cfg.generator.refiner_strength:g}")


MIN_REFINED_SHARPNESS = 0.5
"""A refined canvas must keep this share of the crop's sharpness (Laplacian variance at the crop's size)."""


def choose_final(state: GenerateState, min_confidence: float) -> int:
    """The first passing round, else the best one by findings (never simply the last)."""
    rounds = state["rounds"]
    for i, r in enumerate(rounds):
        if r.get("passed"):
            return i
    return best_round(rounds, min_confidence)


def submission_name(spec: Track2Spec) -> str:
    """The submission file name: exactly the item's key (`output_name`, unicode kept; the organisers match
    files by it). `generate` refuses, as a named item problem, a key no file can be named by
    (`portraitcraft.submission.submission_name_problem`); its extension picks the format."""
    return spec.output_name


async def finalize_item(state: GenerateState, ctx: GenerateContext) -> dict[str, Any]:
    """Write the item's outputs once: submission image, pair, results row. Returns the final state update."""
    spec = spec_of(state)
    failed = state.get("status") == "failed" or not state.get("rounds")
    group = ctx.cfg.loop.group_size >= 2 and not failed and len(state["rounds"]) >= 2
    # the judge ranks the rounds of an item that never passed, and scores every candidate of a group
    if ctx.judge is not None and not failed and len(state["rounds"]) > 1 and (
            group or not any(r.get("passed") for r in state["rounds"])):
        state = {**state, "rounds": await judge_rounds(state, ctx)}
        state["cost"] = add_cost(state, judge_calls=len(state["rounds"]))
    final = None if failed else choose_final(state, ctx.critic.cfg.min_confidence)
    row = result_row(state, ctx, final)
    if group:
        row["group"] = group_outcome(state, ctx)
    if final is not None:
        src = ctx.run.root / state["rounds"][final]["image"]
        dst = ctx.run.root / "submission" / submission_name(spec)
        await asyncio.to_thread(_copy_image, src, dst)
        row["final_image"] = dst.relative_to(ctx.run.root).as_posix()
        if ctx.pairs is not None and spec.id not in ctx.pairs_done:
            rows = group_pair_rows(state, row["group"]) if group else ([pair_row(state, final)] if final else [])
            for pair in rows:
                ctx.pairs.append(pair)
            ctx.pairs_done.add(spec.id)
    ctx.run.results.append(row)
    ctx.drawer.item_done(spec.id)
    ctx.emit("finalize", id=spec.id, status=row["status"], passed=row["passed"], rounds=row["rounds"])
    return {"status": "failed" if failed else "finished", "final_round": final}


async def judge_rounds(state: GenerateState, ctx: GenerateContext) -> list[Round]:
    """Each round's judge score (content + composition mean), for choosing among rounds that all failed."""
    spec = spec_of(state)
    rounds = [dict(r) for r in state["rounds"]]

    async def one(r: dict[str, Any]) -> None:
        try:
            result = await ctx.judge.score(abs_path(ctx, r["image"]), spec.content, spec.composition)
        except (PortraitcraftError, OSError, ValueError) as exc:
            r.setdefault("failures", []).append({"source": "judge", "rule": "*", "error": str(exc)})
            return
        r["judge_score"] = round((result.content + result.composition) / 2, 3)
        r["judge_content"], r["judge_composition"] = round(result.content, 3), round(result.composition, 3)

    await asyncio.gather(*(one(r) for r in rounds))
    return rounds  # type: ignore[return-value]


def _copy_image(src: Path, dst: Path) -> None:
    """The submission copy keeps the final round's provenance (a JPEG's in its COM segment)."""
    copy_with_provenance(src, dst)


def result_row(state: GenerateState, ctx: GenerateContext, final: int | None) -> dict[str, Any]:
    spec = spec_of(state)
    rounds = state.get("rounds") or []
    plan = state.get("plan") or {}
    history = [{
        "round": r.get("round", i), "image": r.get("image"), "made_by": r.get("made_by"),
        "findings": r.get("findings") or [], "passed": r.get("passed"), "action": r.get("action"),
        "instruction": r.get("instruction", ""), "reason": r.get("reason", ""), "seed": r.get("seed"),
        "disagreements": r.get("disagreements") or [], "failures": r.get("failures") or [],
        **({"judge_score": r["judge_score"]} if r.get("judge_score") is not None else {}),
        **({"edit": r["edit"]} if r.get("edit") else {}),  # the editor's full decision (dropped, reframe goal)
        **({"reframe_error": r["reframe_error"]} if r.get("reframe_error") else {}),
        **({"reframe": r["reframe"]} if r.get("reframe") else {}),  # type: ignore[typeddict-item]
    } for i, r in enumerate(rounds)]
    passed = bool(final is not None and rounds[final].get("passed"))
    cost = dict(state.get("cost") or {})
    for key in ("generations", "edits", "reframes", "vlm_calls"):
        cost[key] = int(cost.get(key, 0))
    cost.setdefault("gpu_seconds", 0.0)
    cost.setdefault("vlm_seconds", 0.0)
    started = state.get("started") or time.time()
    return {
        "id": spec.id, "image_path": spec.image_path, "status": "failed" if final is None else "done",
        "passed": passed, "rounds": max(0, len(rounds) - 1), "final_round": final, "verdict": state.get("verdict"),
        "strategy": ctx.strategy, "history": history,
        "canvas": {"width": plan.get("width"), "height": plan.get("height"), "reasons": plan.get("reasons", [])},
        "targets": state.get("targets"), "prompt": plan.get("prompt"), "content": spec.content,
        "composition": spec.composition, "timings": {"wall_seconds": round(time.time() - started, 3)},
        "cost": cost, "error": state.get("error"),
        "needs_outpainting": needs_outpainting(rounds, final, ctx.editor.reframeable),
    }


def needs_outpainting(rounds: Sequence[Round], final: int | None, reframeable: frozenset[str]) -> list[str]:
    """The findings still open on the final image that a crop was asked to fix and could not (a reframe kept
    the best crop, `needs_outpainting`): only a generative outpainting step can fix them."""
    if final is None or not any((r.get("reframe") or {}).get("needs_outpainting") for r in rounds):  # type: ignore[attr-defined]
        return []
    return sorted({f["rule"] for f in rounds[final].get("findings") or []
                   if f.get("detected") and f.get("source") == "geometry" and f.get("rule") in reframeable})


def pair_row(state: GenerateState, final: int) -> dict[str, Any]:
    spec = spec_of(state)
    rounds = state["rounds"]
    fired = sorted({f["rule"] for f in rounds[0].get("findings") or [] if f.get("detected")})
    return {"id": spec.id, "prompt": (state.get("plan") or {}).get("prompt") or spec.description,
            "chosen": rounds[final]["image"], "rejected": rounds[0]["image"], "chosen_round": final,
            "rejected_round": 0, "rules_fired": fired, "content": spec.content, "composition": spec.composition}


def group_outcome(state: GenerateState, ctx: GenerateContext) -> dict[str, Any]:
    """Within-group rewards of an item's independently drawn candidates (`generate --group G`)."""
    loop = ctx.cfg.loop
    rewards = group_rewards(state["rounds"], loop.group_weights, min_confidence=ctx.critic.cfg.min_confidence)
    return {**rewards, "pairs": [list(p) for p in group_pairs(rewards, loop.group_pairs)]}


def group_pair_rows(state: GenerateState, group: dict[str, Any]) -> list[dict[str, Any]]:
    """Preference pairs of a group, each labelled with P(chosen preferred) from the NaSPO probabilities."""
    spec = spec_of(state)
    rounds = state["rounds"]
    prompt = (state.get("plan") or {}).get("prompt") or spec.description
    rows = []
    for chosen, rejected, label in group["pairs"]:
        fired = sorted({f["rule"] for f in rounds[rejected].get("findings") or [] if f.get("detected")})
        rows.append({
            "id": spec.id, "prompt": prompt, "chosen": rounds[chosen]["image"], "rejected": rounds[rejected]["image"],
            "chosen_round": chosen, "rejected_round": rejected, "label": round(label, 6), "source": "group",
            "rules_fired": fired, "chosen_content": rounds[chosen].get("judge_content"),
            "rejected_content": rounds[rejected].get("judge_content"),
            "provenance": {"reward": [group["reward"][chosen], group["reward"][rejected]],
                           "adv": [group["adv"][chosen], group["adv"][rejected]], "weights": group["weights"],
                           "seeds": [rounds[chosen].get("seed"), rounds[rejected].get("seed")]},
        })
    return rows


def failure_update(exc: BaseException) -> dict[str, Any]:
    return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}



