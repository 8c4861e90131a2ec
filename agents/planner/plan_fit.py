"""Fitting a canvas policy to the train images' real aspect ratios (`portraitcraft plan fit`).

The weak cues first: team sky tuned keyword weights and thresholds on the training set by evolutionary
search (methods.md); so does this, with scipy.optimize.differential_evolution over
- one orientation weight per phrase of the rule vocabulary seen in at least `min_count` train texts,
- one square damping weight per such square phrase,
- the cut points (as positive increments, so they stay ordered).
Phrases seen fewer times keep their rule weight. The search starts from the rule policy (`x0`), so the fit
is never worse than the rule on the train split. The objective, lower is better:
    error rate + 0.5 * mean |log(predicted ratio / true ratio)| + l2 * mean(weight^2)
(the log term rewards near misses; the small l2 keeps weights of rare phrases in check). The PRIOR (the
class inside the square band) is the most common train class.

Then the STRONG table (agents/planner/canvas_policy.py): for each strong entry of the rule policy (format
word, people, crop level), the train items it decides vote with their images' orientation; an entry seen at
least `min_count` times is kept, with its majority orientation's most common class as its default (its
count and share are stored with it), when that orientation holds a majority AND deciding by it beats the
fitted weak cues on those items; otherwise it is dropped. Rarer entries keep their rule value.

Targets: each image's width / height (read from the file header with PIL, no pixel decoding), snapped to
the nearest canvas class in log space. Items whose image is missing or unreadable, and malformed records,
are counted and listed in the report, not fatal.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from scipy.optimize import differential_evolution

from portraitcraft.agents.planner.canvas_policy import (
    CanvasPolicy,
    StrongRule,
    decide_index,
    ordinal_index,
    orientation_of,
    ratio_label,
)
from portraitcraft.agents.planner.targets import extract_targets
from portraitcraft.data import load, resolve_image
from portraitcraft.errors import InputError
from portraitcraft.schemas import CompositionTargets

POLICIES = ("fitted", "rule", "square")
WEIGHT_BOUND = 4.0
DAMPING_BOUND = 6.0
CUT_STEP_BOUNDS = (0.05, 3.0)


class FitSettings(BaseModel):
    """How `fit_policy` searches (the CLI flags of `plan fit`)."""

    holdout: float = Field(0.2, ge=0, lt=1, description="fraction of items held out for the report")
    seed: int = Field(0, description="split and search seed")
    maxiter: int = Field(400, ge=1, description="differential evolution generations")
    popsize: int = Field(6, ge=2, description="population size multiplier (x number of parameters)")
    min_count: int = Field(3, ge=1, description="a phrase's weight is fitted when it occurs this often")
    l2: float = Field(1e-3, ge=0, description="weight penalty")


class SkippedItem(BaseModel):
    """A train item the fit could not use."""

    index: int
    image_path: str
    problem: str


class Metrics(BaseModel):
    """How well a policy predicts the canvas classes of a set of items."""

    n: int
    accuracy: float = Field(description="exact canvas class")
    orientation_accuracy: float = Field(description="portrait / square / landscape")
    mean_log_error: float = Field(description="mean |log(predicted ratio / true ratio)| between classes")


class FitReport(BaseModel):
    """What `plan fit` measured; stored in the policy file under `fit`."""

    n_records: int
    n_used: int
    n_train: int
    n_holdout: int
    missing: list[SkippedItem] = Field(default_factory=list)
    unreadable: list[SkippedItem] = Field(default_factory=list)
    invalid: list[SkippedItem] = Field(default_factory=list)
    class_counts: dict[str, int] = Field(default_factory=dict, description="train items per canvas class")
    holdout: dict[str, Metrics] = Field(default_factory=dict, description="fitted, rule, square on held-out")
    train: dict[str, Metrics] = Field(default_factory=dict, description="the same on the train split")
    fitted_phrases: int = 0
    strong: list[dict[str, Any]] = Field(default_factory=list, description="each strong entry's train evidence")
    orientation_counts: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="held-out items per orientation: true, and as each policy predicts")
    fit_seconds: float = 0.0
    generations: int = 0
    evaluations: int = 0
    settings: FitSettings = Field(default_factory=FitSettings)


@dataclass
class TrainSet:
    """Train texts with their images' real aspect ratios, and the items that could not be used."""

    texts: list[str] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    image_paths: list[str] = field(default_factory=list)
    n_records: int = 0
    missing: list[SkippedItem] = field(default_factory=list)
    unreadable: list[SkippedItem] = field(default_factory=list)
    invalid: list[SkippedItem] = field(default_factory=list)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image header; pixels are not decoded.

    Raises:
        OSError: not an image PIL can identify (PIL.UnidentifiedImageError is an OSError), or unreadable.
    """
    from PIL import Image

    with Image.open(path) as im:
        width, height = im.size
    if width <= 0 or height <= 0:
        raise OSError(f"header gives an empty size {width}x{height}")
    return width, height


def read_train_set(path: str | Path, images_dir: str | Path) -> TrainSet:
    """Track 2 train items with their images' aspect ratios.

    Args:
        path (str | Path): a Track 2 JSON array / JSONL (`track_2_train.json`).
        images_dir (str | Path): the image folder (root, then images_00..images_10; portraitcraft.data).

    Raises:
        DataError: only when the file itself cannot be read as items.

    Example:
        >>> ts = read_train_set("examples/track_2_train.json", "examples/images")  # doctest: +SKIP
        >>> len(ts.texts), len(ts.missing)  # doctest: +SKIP
        (6, 0)
    """
    parsed = load(path, "track2", strict=False)
    out = TrainSet(n_records=parsed.n_records)
    out.invalid = [SkippedItem(index=p.index, image_path=p.image_path, problem=f"{p.field}: {p.problem}")
                   for p in parsed.problems]
    for index, spec in zip(parsed.indices, parsed.items, strict=True):
        found = resolve_image(images_dir, spec.image_path)
        if found is None:
            out.missing.append(SkippedItem(index=index, image_path=spec.image_path,
                                           problem=f"image not found under {images_dir}"))
            continue
        try:
            width, height = image_size(found)
        except (OSError, ValueError) as exc:
            out.unreadable.append(SkippedItem(index=index, image_path=spec.image_path,
                                              problem=f"{found.name}: unreadable image ({exc})"))
            continue
        out.texts.append(spec.description)
        out.ratios.append(width / height)
        out.image_paths.append(spec.image_path)
    return out


def nearest_class(ratios: np.ndarray | list[float], classes: list[float]) -> np.ndarray:
    """Index of the nearest canvas class in log space for each ratio.

    Example:
        >>> nearest_class([0.7, 1.05, 1.9], [2 / 3, 1.0, 16 / 9]).tolist()
        [0, 1, 2]
    """
    logs = np.log(np.asarray(ratios, dtype=float))[:, None]
    return np.abs(logs - np.log(np.asarray(classes))[None, :]).argmin(axis=1)


def split_indices(n: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, holdout) index arrays from a seeded shuffle; holdout gets round(n * holdout) items."""
    order = np.random.default_rng(seed).permutation(n)
    n_holdout = round(n * holdout)
    return np.sort(order[n_holdout:]), np.sort(order[:n_holdout])


def metrics(predicted: np.ndarray, target: np.ndarray, classes: list[float]) -> Metrics:
    """Accuracy figures of predicted vs target class indices (a non-empty set)."""
    logc = np.log(np.asarray(classes))
    orient = np.array([orientation_of(c) for c in classes])
    return Metrics(
        n=len(target),
        accuracy=float(np.mean(predicted == target)),
        orientation_accuracy=float(np.mean(orient[predicted] == orient[target])),
        mean_log_error=float(np.mean(np.abs(logc[predicted] - logc[target]))),
    )


def phrase_matrix(policy: CanvasPolicy, texts: list[str]) -> tuple[np.ndarray, list[str]]:
    """A 0/1 matrix (texts x phrases) of which policy phrases each text contains, and the phrase order."""
    phrases = policy.matcher.phrases
    column = {p: j for j, p in enumerate(phrases)}
    x = np.zeros((len(texts), len(phrases)), dtype=np.float32)
    for i, text in enumerate(texts):
        for phrase in policy.matcher.find(text):
            x[i, column[phrase]] = 1.0
    return x, phrases


@dataclass
class Features:
    """What the policies read from train texts: phrase matrix, length scales, composition targets."""

    x: np.ndarray
    phrases: list[str]
    scale: np.ndarray
    targets: list[CompositionTargets]

    def rows(self, idx: np.ndarray) -> Features:
        return Features(self.x[idx], self.phrases, self.scale[idx], [self.targets[i] for i in idx])


def features(policy: CanvasPolicy, texts: list[str]) -> Features:
    """The phrase matrix, per-text weak-score divisors and targets of `texts` (the policy's vocabulary)."""
    x, phrases = phrase_matrix(policy, texts)
    scale = np.array([policy.length_scale(t) for t in texts], dtype=np.float64)
    return Features(x, phrases, scale, [extract_targets(t, "") for t in texts])


def strong_indices(policy: CanvasPolicy, targets: list[CompositionTargets]) -> np.ndarray:
    """Per item, the class index of the strong entry that decides it, -1 where none does."""
    out = np.full(len(targets), -1, dtype=np.intp)
    for i, t in enumerate(targets):
        rule = policy.strong_rule(t)
        if rule is not None:
            out[i] = policy.class_index(rule.aspect)
    return out


def predict(policy: CanvasPolicy, feats: Features) -> np.ndarray:
    """Class indices the policy gives the items of `feats` (the same decision as `CanvasPolicy.choose`)."""
    w = np.array([policy.weights.get(p, 0.0) for p in feats.phrases])
    d = np.array([policy.damping.get(p, 0.0) for p in feats.phrases])
    scores = (feats.x @ w) / (1.0 + feats.x @ d) / feats.scale
    weak = ordinal_index(scores, np.array(policy.tall_cuts), np.array(policy.wide_cuts), policy.square_index)
    return decide_index(weak, strong_indices(policy, feats.targets), policy.orientation_codes, policy.prior_index,
                        policy.square_index)


def fit_strong(base: CanvasPolicy, targets: list[CompositionTargets], target: np.ndarray, weak: np.ndarray,
               min_count: int) -> tuple[list[StrongRule], list[dict[str, Any]]]:
    """The fitted strong table and each entry's evidence (see the module doc).

    Args:
        base (CanvasPolicy): the rule policy (its strong entries, in order).
        targets (list[CompositionTargets]): the train items' targets.
        target (np.ndarray): their true class indices.
        weak (np.ndarray): the class indices the fitted weak cues (and prior) give them without strong entries.
        min_count (int): entries deciding fewer items keep their rule value.
    """
    codes = base.orientation_codes
    log_classes = np.log(np.asarray(base.classes))

    def loss(pred: np.ndarray, true: np.ndarray) -> float:
        return float(np.mean(pred != true) + 0.5 * np.mean(np.abs(log_classes[pred] - log_classes[true])))

    decided_by = np.array([next((j for j, r in enumerate(base.strong) if r.matches(t)), -1) for t in targets])
    kept: list[StrongRule] = []
    evidence: list[dict[str, Any]] = []
    for j, rule in enumerate(base.strong):
        rows = np.flatnonzero(decided_by == j)
        classes = target[rows]
        row: dict[str, Any] = {"key": rule.key, "value": rule.value, "n": len(classes)}
        if len(classes) < min_count:
            kept.append(rule)
            evidence.append({**row, "result": f"kept the rule's {ratio_label(rule.aspect)} (fewer than {min_count})"})
            continue
        orient = codes[classes]
        values, counts = np.unique(orient, return_counts=True)
        best = int(values[np.argmax(counts)])
        share = round(float(counts.max() / len(classes)), 3)
        cls = int(np.bincount(classes[orient == best], minlength=len(base.classes)).argmax())
        decided = decide_index(weak[rows], np.full(len(rows), cls), codes, 0, base.square_index)
        strong_loss, weak_loss = loss(decided, classes), loss(weak[rows], classes)
        row.update(share=share, loss_strong=round(strong_loss, 3), loss_weak=round(weak_loss, 3))
        if share < 0.5 or strong_loss >= weak_loss:
            evidence.append({**row, "result": "dropped: the weak cues do as well on these items"})
            continue
        aspect = base.classes[cls]
        kept.append(rule.model_copy(update={"aspect": aspect, "n": len(classes), "share": share}))
        evidence.append({**row, "result": f"{ratio_label(aspect)} {orientation_of(aspect)}"})
    return kept, evidence


class _Objective:
    """The vectorised loss over a DE population (columns = candidate policies)."""

    def __init__(self, base: CanvasPolicy, feats: Features, target: np.ndarray, active: np.ndarray, l2: float,
                 strong: np.ndarray) -> None:
        x, phrases = feats.x, feats.phrases
        self.classes_log = np.log(np.asarray(base.classes))
        self.square = base.square_index
        self.n_tall = base.square_index
        self.target = target
        self.l2 = l2
        self.scale = feats.scale[:, None]
        self.strong = strong
        self.codes = base.orientation_codes
        self.prior = base.prior_index
        is_orient = np.array([p in base.weights for p in phrases])
        prior_w = np.array([base.weights.get(p, 0.0) for p in phrases])
        prior_d = np.array([base.damping.get(p, 0.0) for p in phrases])
        self.orient_cols = np.flatnonzero(active & is_orient)
        self.square_cols = np.flatnonzero(active & ~is_orient)
        # Phrases not fitted keep their prior weight: a constant per row.
        self.push_fixed = x[:, ~active] @ prior_w[~active]
        self.damp_fixed = x[:, ~active] @ prior_d[~active]
        self.x_orient = x[:, self.orient_cols].astype(np.float64)
        self.x_square = x[:, self.square_cols].astype(np.float64)
        self.x0 = np.concatenate([
            np.clip(prior_w[self.orient_cols], -WEIGHT_BOUND, WEIGHT_BOUND),
            np.clip(prior_d[self.square_cols], 0.0, DAMPING_BOUND),
            np.clip(np.diff(base.tall_cuts, prepend=0.0), *CUT_STEP_BOUNDS),
            np.clip(np.diff(base.wide_cuts, prepend=0.0), *CUT_STEP_BOUNDS),
        ])
        self.bounds = (
            [(-WEIGHT_BOUND, WEIGHT_BOUND)] * len(self.orient_cols)
            + [(0.0, DAMPING_BOUND)] * len(self.square_cols)
            + [CUT_STEP_BOUNDS] * (len(base.tall_cuts) + len(base.wide_cuts))
        )

    def unpack(self, params: np.ndarray) -> tuple[np.ndarray, ...]:
        """(orientation weights, damping, tall cuts, wide cuts) from a (D,) or (D, S) parameter array."""
        n_o, n_s = len(self.orient_cols), len(self.square_cols)
        w, d = params[:n_o], params[n_o : n_o + n_s]
        tall = np.cumsum(params[n_o + n_s : n_o + n_s + self.n_tall], axis=0)
        wide = np.cumsum(params[n_o + n_s + self.n_tall :], axis=0)
        return w, d, tall, wide

    def __call__(self, params: np.ndarray) -> np.ndarray:
        w, d, tall, wide = self.unpack(params)
        push = self.x_orient @ w + self.push_fixed[:, None]
        damp = self.x_square @ d + self.damp_fixed[:, None]
        weak = ordinal_index(push / (1.0 + damp) / self.scale, tall, wide, self.square)
        index = decide_index(weak, self.strong, self.codes, self.prior, self.square)
        hits = index == self.target[:, None]
        log_error = np.abs(self.classes_log[index] - self.classes_log[self.target][:, None])
        penalty = self.l2 * np.mean(w**2, axis=0) if len(w) else 0.0
        return 1.0 - hits.mean(axis=0) + 0.5 * log_error.mean(axis=0) + penalty


def fit_policy(train_set: TrainSet, base: CanvasPolicy, settings: FitSettings | None = None) -> CanvasPolicy:
    """Fit phrase weights and cut points to the train set; the report is in the result's `fit`.

    Args:
        train_set (TrainSet): from `read_train_set`.
        base (CanvasPolicy): the rule policy: its vocabulary, classes and starting point.
        settings (FitSettings, optional): split, search and penalty settings.

    Raises:
        InputError: fewer than 2 usable items, or no train item left after the holdout split.

    Example:
        >>> policy = fit_policy(read_train_set(train_json, images), rule_policy(cfg.aspect_ratios))  # doctest: +SKIP
        >>> policy.fit["holdout"]["fitted"]["accuracy"] > policy.fit["holdout"]["square"]["accuracy"]  # doctest: +SKIP
        True
    """
    settings = settings or FitSettings()
    n = len(train_set.texts)
    skipped = len(train_set.missing) + len(train_set.unreadable) + len(train_set.invalid)
    if n < 2:
        raise InputError(f"plan fit: need at least 2 train items with a readable image, found {n} "
                         f"({skipped} skipped: missing, unreadable or invalid)")
    target = nearest_class(train_set.ratios, base.classes)
    train_idx, holdout_idx = split_indices(n, settings.holdout, settings.seed)
    if len(train_idx) == 0:
        raise InputError(f"plan fit: the holdout fraction {settings.holdout} leaves no train item of {n}")
    feats = features(base, train_set.texts)
    x, phrases = feats.x, feats.phrases
    train_feats = feats.rows(train_idx)
    prior = base.classes[int(np.bincount(target[train_idx], minlength=len(base.classes)).argmax())]
    staged = base.model_copy(update={"strong": [], "prior": prior})
    active = x[train_idx].sum(axis=0) >= settings.min_count
    no_strong = np.full(len(train_idx), -1, dtype=np.intp)
    objective = _Objective(staged, train_feats, target[train_idx], active, settings.l2, no_strong)

    started = time.perf_counter()
    result = differential_evolution(
        objective, objective.bounds, x0=objective.x0, maxiter=settings.maxiter, popsize=settings.popsize,
        tol=0.0, polish=False, vectorized=True, updating="deferred", rng=settings.seed,
    )
    seconds = time.perf_counter() - started

    w, d, tall, wide = objective.unpack(result.x)
    weights, damping = dict(base.weights), dict(base.damping)
    weights.update({phrases[j]: round(float(v), 4) for j, v in zip(objective.orient_cols, w, strict=True)})
    damping.update({phrases[j]: round(float(v), 4) for j, v in zip(objective.square_cols, d, strict=True)})
    weak_only = CanvasPolicy.model_validate({
        **staged.model_dump(), "method": "fitted", "weights": weights, "damping": damping,
        "tall_cuts": [round(float(c), 4) for c in tall], "wide_cuts": [round(float(c), 4) for c in wide],
    })
    strong, strong_evidence = fit_strong(base, train_feats.targets, target[train_idx],
                                         predict(weak_only, train_feats), settings.min_count)
    fitted = weak_only.model_copy(update={"strong": strong})

    def scored(idx: np.ndarray) -> dict[str, Metrics]:
        if len(idx) == 0:
            return {}
        square = np.full(len(idx), base.square_index)
        rows = feats.rows(idx)
        return {
            "fitted": metrics(predict(fitted, rows), target[idx], base.classes),
            "rule": metrics(predict(base, rows), target[idx], base.classes),
            "square": metrics(square, target[idx], base.classes),
        }

    def orientations(idx: np.ndarray) -> dict[str, dict[str, int]]:
        if len(idx) == 0:
            return {}
        rows = feats.rows(idx)
        named = {"true": target[idx], "fitted": predict(fitted, rows), "rule": predict(base, rows)}
        return {name: {o: int(sum(orientation_of(base.classes[k]) == o for k in ks))
                       for o in ("portrait", "square", "landscape")} for name, ks in named.items()}

    counts = np.bincount(target[train_idx], minlength=len(base.classes))
    report = FitReport(
        n_records=train_set.n_records, n_used=n, n_train=len(train_idx), n_holdout=len(holdout_idx),
        missing=train_set.missing, unreadable=train_set.unreadable, invalid=train_set.invalid,
        class_counts={ratio_label(c): int(k) for c, k in zip(base.classes, counts, strict=True)},
        holdout=scored(holdout_idx), train=scored(train_idx), fitted_phrases=int(active.sum()),
        strong=strong_evidence, orientation_counts=orientations(holdout_idx),
        fit_seconds=round(seconds, 3), generations=int(result.nit), evaluations=int(result.nfev),
        settings=settings,
    )
    fitted.fit = report.model_dump(mode="json")
    return fitted


def report_of(policy: CanvasPolicy) -> FitReport:
    """The FitReport stored in a fitted policy."""
    return FitReport.model_validate(policy.fit)


def summary_rows(report: FitReport) -> list[dict[str, Any]]:
    """One row per policy with its held-out figures (for tables and benchmarks)."""
    return [{"policy": name, **report.holdout[name].model_dump()} for name in POLICIES if name in report.holdout]
