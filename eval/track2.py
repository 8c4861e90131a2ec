"""Official Track 2 scoring: AutoScore from the judge, FinalScore with human ratings.

AutoScore = 0.3 x Content + 0.7 x Composition per image, averaged over the scored images; FinalScore =
0.4 x AutoScore + 0.6 x HumanScore, where HumanScore is the mean over images of each image's mean rating
(docs/portraitcraft-data.md). An expected failure of one image (missing or unreadable, refused, timed out,
an unusable answer: a `PortraitcraftError`) is that image's error: counted, listed, and left out of the
means. Any other exception is a bug and stops the run. One scoring method judges every image of a run
(`Track2Report.mode`).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portraitcraft.agents.judge import Judge, JudgeResult
from portraitcraft.atomic import atomic_write_text
from portraitcraft.batch import run_batch
from portraitcraft.config import mask_secrets
from portraitcraft.data import resolve_image
from portraitcraft.errors import PortraitcraftError
from portraitcraft.eval.score_tables import read_score_csv
from portraitcraft.ids import item_key
from portraitcraft.schemas import Track2Spec
from portraitcraft.tools.images import load_image

CONTENT_WEIGHT = 0.3
COMPOSITION_WEIGHT = 0.7
AUTO_WEIGHT = 0.4
HUMAN_WEIGHT = 0.6
CSV_FIELDS = (
    "image_path", "content", "composition", "auto", "content_std", "composition_std", "human", "final",
    "mode", "source", "content_reason", "composition_reason", "error",
)


def _check(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or not 0.0 <= value <= 100.0:
        raise ValueError(f"{name} must be a score in 0-100, got {value!r}")
    return value


def auto_score(content: float, composition: float) -> float:
    """AutoScore = 0.3 x Content + 0.7 x Composition (both 0-100).

    Example:
        >>> round(auto_score(87.89, 87.14), 3)
        87.365
    """
    return CONTENT_WEIGHT * _check("content", content) + COMPOSITION_WEIGHT * _check("composition", composition)


def final_score(auto: float, human: float) -> float:
    """FinalScore = 0.4 x AutoScore + 0.6 x HumanScore (both 0-100).

    Example:
        >>> round(final_score(87.36, 78.0), 3)
        81.744
    """
    return AUTO_WEIGHT * _check("auto", auto) + HUMAN_WEIGHT * _check("human", human)


@dataclass
class ImageScore:
    """One item's outcome: the judge's scores, or the error that stopped it."""

    image_path: str
    result: JudgeResult | None = None
    error: str | None = None
    human: float | None = None

    @property
    def auto(self) -> float | None:
        return auto_score(self.result.content, self.result.composition) if self.result else None

    @property
    def final(self) -> float | None:
        auto = self.auto
        return final_score(auto, self.human) if auto is not None and self.human is not None else None

    def row(self) -> dict[str, Any]:
        r = self.result
        return {
            "image_path": self.image_path,
            "content": r.content if r else None,
            "composition": r.composition if r else None,
            "auto": self.auto,
            "content_std": r.content_std if r else None,
            "composition_std": r.composition_std if r else None,
            "human": self.human,
            "final": self.final,
            "mode": r.mode if r else None,
            "source": r.source if r else None,
            "content_reason": r.content_reason if r else None,
            "composition_reason": r.composition_reason if r else None,
            "error": self.error,
        }


@dataclass
class Track2Report:
    content: float | None
    composition: float | None
    auto: float | None
    n_scored: int
    n_failed: int
    failures: list[dict[str, str]]
    human: float | None = None
    final: float | None = None
    n_human: int = 0
    human_given: bool = False
    human_problems: list[str] = field(default_factory=list)
    scores: list[ImageScore] = field(default_factory=list)
    mode: str | None = None
    """The judge's scoring method for every scored image ("logprob" or "sampled"; None if nothing scored)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain data for `--json` (contract keys: content, composition, auto, n_scored, n_failed, and human,
        final when human scores were given; plus mode and failures)."""
        out: dict[str, Any] = {
            "content": self.content,
            "composition": self.composition,
            "auto": self.auto,
            "n_scored": self.n_scored,
            "n_failed": self.n_failed,
            "mode": self.mode,
            "failures": self.failures,
        }
        if self.human_given:
            out |= {"human": self.human, "final": self.final, "n_human": self.n_human,
                    "human_problems": self.human_problems}
        return out


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def read_human_scores(path: str | Path) -> tuple[dict[str, float], list[str]]:
    """Per-image mean human score from a CSV `image_path,score` (several raters per image are averaged),
    keyed by image basename, and the rows that could not be used."""
    table = read_score_csv(path, ("score",))
    return table.column("score"), table.problems


def summarise(scores: Sequence[ImageScore], human: dict[str, float] | None = None,
              human_problems: Sequence[str] = ()) -> Track2Report:
    """Set-level scores from per-image outcomes; `human` (basename -> mean rating) adds Human and Final.

    Human is averaged over the items that have human ratings; Final = final_score(Auto, Human) at set level,
    as the challenge report computes it.
    """
    ok = [s for s in scores if s.result is not None]
    modes = sorted({s.result.mode for s in ok if s.result})
    if len(modes) > 1:
        raise ValueError(f"one run mixed judge scoring methods {modes}: the scores are not comparable")
    if human is not None:
        for s in scores:
            s.human = human.get(item_key(s.image_path))
    report = Track2Report(
        content=_mean([s.result.content for s in ok if s.result]),
        composition=_mean([s.result.composition for s in ok if s.result]),
        auto=_mean([s.auto for s in ok if s.auto is not None]),
        n_scored=len(ok),
        n_failed=len(scores) - len(ok),
        failures=[{"image_path": s.image_path, "error": s.error or "unknown"} for s in scores if s.result is None],
        human_given=human is not None,
        human_problems=list(human_problems),
        scores=list(scores),
        mode=modes[0] if modes else None,
    )
    if human is not None:
        items = {item_key(s.image_path) for s in scores}
        unmatched = sorted(k for k in human if k not in items)
        if unmatched:
            shown = ", ".join(unmatched[:5]) + (f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else "")
            report.human_problems.append(f"{len(unmatched)} rated images are not among the items (ignored): {shown}")
        rated = [s.human for s in scores if s.human is not None]
        report.n_human = len(rated)
        report.human = _mean(rated)
        if report.human is not None and report.auto is not None:
            report.final = final_score(report.auto, report.human)
    return report


async def judge_items(
    specs: Sequence[Track2Spec],
    images_dir: str | Path,
    judge: Judge,
    *,
    max_in_flight: int | None = None,
    deadline: float | None = None,
    progress: bool = False,
    on_result: Callable[[int, ImageScore], None] | None = None,
) -> list[ImageScore]:
    """Judge every item's image concurrently, one scoring method for all; results in item order.

    The judge's method is decided first (`Judge.prepare`, one probe); if that fails, every item fails with
    the probe's error and nothing else is sent. Expected failures (`PortraitcraftError`: a missing or
    unreadable image, a refused request, retries outlasted, an unusable answer) and an item that outlives its
    deadline become that item's error; any other exception is a bug: the remaining items are cancelled and
    it propagates (a re-run is served from the VLM cache for the items that finished).

    Args:
        specs (sequence of Track2Spec): the items (content and composition descriptions).
        images_dir (str | Path): where the images are (root, then images_00..images_10, by basename).
        judge (Judge): the judge; its client's semaphore bounds concurrent HTTP requests.
        max_in_flight (int, optional): images loaded and awaiting the judge at once; defaults to twice the
            judge's `max_concurrency` (keeps memory flat on big sets).
        deadline (float, optional, defaults to judge.cfg.item_deadline): seconds one item (and the probe)
            may take in all, retries and waits included.
        progress (bool, optional, defaults to False): show a rich progress bar on stderr.
        on_result (callable, optional): `on_result(index, score)` as each item finishes (keeps finished
            work when the run is interrupted).
    """
    deadline = judge.cfg.item_deadline if deadline is None else deadline
    results: dict[int, ImageScore] = {}

    def finish(index: int, score: ImageScore) -> ImageScore:
        results[index] = score
        if on_result is not None:
            on_result(index, score)
        return score

    probe_error = None
    if specs:
        try:
            async with asyncio.timeout(deadline):
                await judge.prepare()
        except TimeoutError:
            probe_error = f"JudgeError: the judge's probe got no answer within the {deadline:g}s deadline"
        except PortraitcraftError as exc:
            probe_error = f"{type(exc).__name__}: {exc}"
    if probe_error is not None:
        return [finish(i, ImageScore(s.image_path, error=mask_secrets(probe_error))) for i, s in enumerate(specs)]

    async def one(entry: tuple[int, Track2Spec]) -> ImageScore:
        index, spec = entry
        clock = asyncio.timeout(deadline)
        try:
            path = resolve_image(images_dir, spec.image_path)
            if path is None:
                return finish(index, ImageScore(spec.image_path, error=f"image not found under {images_dir}"))
            async with clock:
                image = await asyncio.to_thread(load_image, path)
                result = await judge.score(image, spec.content, spec.composition)
        except TimeoutError:
            if not clock.expired():
                raise
            error = (f"JudgeError: no verdict within the {deadline:g}s item deadline "
                     f"(judge.item_deadline; each attempt waits up to judge.timeout = {judge.cfg.timeout:g}s)")
            return finish(index, ImageScore(spec.image_path, error=error))
        return finish(index, ImageScore(spec.image_path, result=result))

    def failed(entry: tuple[int, Track2Spec], exc: PortraitcraftError) -> None:
        finish(entry[0], ImageScore(entry[1].image_path, error=mask_secrets(f"{type(exc).__name__}: {exc}")))

    entries = list(enumerate(specs))
    with contextlib.ExitStack() as stack:
        advance: Callable[..., None] = lambda *_: None  # noqa: E731
        if progress and entries:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            columns = (TextColumn(f"judging ({judge.method})"), BarColumn(), MofNCompleteColumn(),
                       TimeRemainingColumn())
            bar = stack.enter_context(Progress(*columns, console=Console(stderr=True), transient=True))
            task_id = bar.add_task("judge", total=len(entries))
            advance = lambda *_: bar.advance(task_id)  # noqa: E731
        await run_batch(entries, one, key=lambda e: str(e[0]),
                        concurrency=max_in_flight or 2 * judge.cfg.max_concurrency, on_done=advance,
                        on_failed=lambda entry, exc: (failed(entry, exc), advance()))
    return [results[i] for i in range(len(specs))]


async def judge_with_config(cfg: Any, specs: Sequence[Track2Spec], images_dir: str | Path, *,
                            progress: bool = False,
                            on_result: Callable[[int, ImageScore], None] | None = None) -> list[ImageScore]:
    """`judge_items` with the judge the configuration names (`[judge]`: endpoint, model, cache), its client
    opened and closed here: what `portraitcraft eval track2` runs."""
    from portraitcraft.paths import cache_root
    from portraitcraft.tools.vlm import VLMClient

    cache_dir = cache_root(cfg.run.cache_dir) / "vlm" if cfg.judge.cache else None
    async with VLMClient(cfg.judge, cache_dir=cache_dir) as client:
        return await judge_items(specs, images_dir, Judge(cfg.judge, client), progress=progress, on_result=on_result)


def write_scores_csv(scores: Sequence[ImageScore], path: str | Path) -> Path:
    """Per-image rows (CSV_FIELDS), written atomically; empty cells for what an item does not have."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for s in scores:
        writer.writerow({k: ("" if v is None else v) for k, v in s.row().items()})
    return atomic_write_text(path, buffer.getvalue())
