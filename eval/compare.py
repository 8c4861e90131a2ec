"""`portraitcraft compare`: which strategy, config or model wins, paired over the items the runs share.

Per run: items, done, failed, pass rate (with a bootstrap interval), mean rounds, cost per final image and per
PASSED image, the share of enforced composition targets the final images meet (measured afresh, one ruler for
all runs: eval/compare_targets.py), the judge's scores when the run was judged, and the run critic's
detection rate per rule on the final images. Every run after the first is compared with the first (the
baseline) on their common finished items: wins / ties / losses per item, the exact McNemar test on passed,
paired bootstrap 95% intervals of the difference in means (eval/compare_stats.py). Items missing or failed in
some run are listed in `unpaired`, never dropped silently; a folder that is not a run is a `problem`.

Example:
    >>> result = compare(["runs/demo/loop", "runs/demo/one-shot"], boot=2000)  # doctest: +SKIP
    >>> result.to_json()["comparisons"][0]["p_value"]  # doctest: +SKIP
    0.25
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portraitcraft.errors import DataError, InputError
from portraitcraft.eval.compare_runs import (
    COST_KEYS,
    RunData,
    RunItem,
    attach_scores,
    judge_value,
    load_run,
    manifest_differences,
)
from portraitcraft.eval.compare_stats import (
    DEFAULT_BOOT,
    bootstrap_ci,
    mcnemar_exact,
    paired_bootstrap_ci,
    paired_ratio_ci,
    resample_indices,
    tally,
)
from portraitcraft.eval.compare_targets import TargetCheck, TargetRuler

PRIMARY_METRICS = ("pass_rate", "met_target_share", "judge")


@dataclass
class Comparison:
    """Everything `compare` found: the runs, the paired comparisons, the unpaired items and the problems."""

    runs: list[RunData]
    run_stats: list[dict[str, Any]]
    comparisons: list[dict[str, Any]]
    unpaired: list[dict[str, Any]]
    problems: list[dict[str, str]]
    manifest_diff: dict[str, list[dict[str, Any]]]
    checks: dict[tuple[str, str], TargetCheck] = field(default_factory=dict)
    """(run name, item key) -> the fresh target measurement of that run's final image."""
    notes: list[str] = field(default_factory=list)
    boot: int = DEFAULT_BOOT
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        """The `compare --json` document (contract keys: runs, comparisons, unpaired; plus problems, notes,
        manifest_diff, boot, seed)."""
        return {"runs": self.run_stats, "comparisons": self.comparisons, "unpaired": self.unpaired,
                "problems": self.problems, "notes": self.notes, "manifest_diff": self.manifest_diff,
                "boot": self.boot, "seed": self.seed}


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(float(value), digits)


def _ci(ci: tuple[float, float] | None) -> list[float] | None:
    return None if ci is None else [round(ci[0], 6), round(ci[1], 6)]


def run_names(paths: Sequence[str | Path], names: Sequence[str] | None) -> list[str]:
    """The runs' labels: `names` when given (one per run, distinct), else the folder names made distinct."""
    if names is not None:
        if len(names) != len(paths):
            raise InputError(f"--names gives {len(names)} name(s) for {len(paths)} run(s); give one per run")
        if len(set(names)) != len(names) or any(not n.strip() for n in names):
            raise InputError(f"--names {','.join(names)}: names must be distinct and non-empty")
        return [n.strip() for n in names]
    out: list[str] = []
    for p in paths:
        base = Path(p).name or str(p)
        name, k = base, 2
        while name in out:
            name, k = f"{base}-{k}", k + 1
        out.append(name)
    return out


def cost_keys(runs: Sequence[RunData]) -> list[str]:
    """The standard cost counters plus any other numeric ones the rows carry (e.g. judge_calls)."""
    extra = sorted({k for r in runs for i in r.done for k in i.cost} - set(COST_KEYS))
    return [*COST_KEYS, *extra]


def run_summary(run: RunData, keys: Sequence[str], checks: dict[tuple[str, str], TargetCheck], *,
                boot: int, seed: int) -> dict[str, Any]:
    """One run's row of the summary table (the `runs` entries of `--json`)."""
    done, items = run.done, list(run.items.values())
    passed = [i for i in done if i.passed]
    totals = {k: sum(i.cost.get(k, 0.0) for i in done) for k in keys}
    shares = [c.share for i in done if (c := checks.get((run.name, i.key))) is not None and c.share is not None]
    return {
        "name": run.name,
        "path": str(run.root),
        "n_items": len(items),
        "n_done": len(done),
        "n_failed": sum(1 for i in items if i.status == "failed"),
        "n_passed": len(passed),
        "pass_rate": _round(len(passed) / len(done), 4) if done else None,
        "pass_rate_ci95": _ci(bootstrap_ci([float(i.passed) for i in done], boot=boot, seed=seed)),
        "mean_rounds": _round(statistics.fmean(i.rounds for i in done), 4) if done else None,
        "cost_per_final_image": {k: _round(v / len(done)) for k, v in totals.items()} if done else {},
        "cost_per_passed_image": {k: _round(v / len(passed)) if passed else None for k, v in totals.items()},
        "met_target_share": _round(statistics.fmean(shares), 4) if shares else None,
        "met_targets": target_tally(run, checks),
        "judge": judge_summary(run),
        "rules": rule_rates(run),
        "strategy": strategy_of(run),
        "problems": run.problems,
    }


def strategy_of(run: RunData) -> str | None:
    """The run's strategy (loop | best-of-n | one-shot) from its manifest's config."""
    loop = ((run.manifest or {}).get("config") or {}).get("loop") or {}
    return loop.get("strategy") if isinstance(loop, dict) else None


def target_tally(run: RunData, checks: dict[tuple[str, str], TargetCheck]) -> dict[str, Any]:
    """Met / enforced targets per rule over the run's final images, as measured afresh."""
    by_rule: dict[str, list[int]] = {}
    n_images = unmeasured = errors = 0
    for item in run.done:
        check = checks.get((run.name, item.key))
        if check is None:
            continue
        if check.error:
            errors += 1
            continue
        n_images += int(bool(check.met))
        unmeasured += len(check.unmeasured)
        for rule, met in check.met.items():
            counts = by_rule.setdefault(rule, [0, 0])
            counts[0] += int(met)
            counts[1] += 1
    met, enforced = sum(c[0] for c in by_rule.values()), sum(c[1] for c in by_rule.values())
    return {"met": met, "enforced": enforced, "unmeasured": unmeasured, "n_images": n_images, "errors": errors,
            "by_rule": {r: {"met": c[0], "enforced": c[1], "share": round(c[0] / c[1], 4)}
                        for r, c in sorted(by_rule.items())}}


def judge_summary(run: RunData) -> dict[str, Any] | None:
    """Mean judge scores over the run's finished items that have one (None when the run was not judged)."""
    scored = [i.judge for i in run.done if i.judge]
    if not scored or run.judge_source is None:
        return None
    out: dict[str, Any] = {"source": run.judge_source, "n": len(scored)}
    for key in ("content", "composition", "auto", "score"):
        values = [j[key] for j in scored if key in j]
        if values:
            out[key] = round(statistics.fmean(values), 4)
    return out


def rule_rates(run: RunData) -> dict[str, dict[str, Any]]:
    """Per rule, how often the run's own critic still detected it on the final images."""
    counts: dict[str, list[int]] = {}
    for item in run.done:
        fired = {str(f["rule"]) for f in item.open_findings}
        for rule in item.checked_rules:
            c = counts.setdefault(rule, [0, 0])
            c[0] += int(rule in fired)
            c[1] += 1
    return {r: {"detected": c[0], "checked": c[1], "rate": round(c[0] / c[1], 4)} for r, c in sorted(counts.items())}


def _entry(a: str, b: str, metric: str, n: int, delta: float | None, ci: tuple[float, float] | None,
           p: float | None, wins: Any = None) -> dict[str, Any]:
    return {"a": a, "b": b, "metric": metric, "n": n, "delta": _round(delta), "ci95": _ci(ci),
            "p_value": None if p is None else float(p), "wins": getattr(wins, "wins", None),
            "ties": getattr(wins, "ties", None), "losses": getattr(wins, "losses", None)}


def compare_pair(a: RunData, b: RunData, keys: Sequence[str], checks: dict[tuple[str, str], TargetCheck], *,
                 boot: int, seed: int) -> list[dict[str, Any]]:
    """B against the baseline A on their common finished items (the `comparisons` entries)."""
    common = [k for k, item in a.items.items() if item.done and k in b.items and b.items[k].done]
    ia, ib = [a.items[k] for k in common], [b.items[k] for k in common]
    out: list[dict[str, Any]] = []
    n = len(common)
    idx = resample_indices(n, boot, seed) if n else None
    pa, pb = [float(i.passed) for i in ia], [float(i.passed) for i in ib]
    if n:
        out.append(_entry(a.name, b.name, "pass_rate", n, sum(pb) / n - sum(pa) / n,
                          paired_bootstrap_ci(pa, pb, indices=idx), mcnemar_exact(pa, pb), tally(pa, pb)))
    out += _paired_metric(a, b, "met_target_share", common,
                          lambda run, item: _share(checks.get((run.name, item.key))), boot, seed)
    if a.judge_source is not None and b.judge_source is not None and \
            (a.judge_source == "run") == (b.judge_source == "run"):
        out += _paired_metric(a, b, "judge", common, lambda run, item: judge_value(item), boot, seed)
    for key in keys:
        ca, cb = [i.cost.get(key, 0.0) for i in ia], [i.cost.get(key, 0.0) for i in ib]
        if not n or (not any(ca) and not any(cb)):
            continue
        out.append(_entry(a.name, b.name, f"cost_per_final_image.{key}", n, (sum(cb) - sum(ca)) / n,
                          paired_bootstrap_ci(ca, cb, indices=idx), None, tally(ca, cb, higher_is_better=False)))
        delta = sum(cb) / sum(pb) - sum(ca) / sum(pa) if sum(pa) and sum(pb) else None
        ci = paired_ratio_ci(ca, pa, cb, pb, indices=idx) if delta is not None else None
        out.append(_entry(a.name, b.name, f"cost_per_passed_image.{key}", n, delta, ci, None))
    return out


def _share(check: TargetCheck | None) -> float | None:
    return None if check is None else check.share


def _paired_metric(a: RunData, b: RunData, metric: str, common: Sequence[str],
                   value: Callable[[RunData, RunItem], float | None], boot: int, seed: int) -> list[dict[str, Any]]:
    pairs = [(va, vb) for k in common
             if (va := value(a, a.items[k])) is not None and (vb := value(b, b.items[k])) is not None]
    if not pairs:
        return []
    xa, xb = [p[0] for p in pairs], [p[1] for p in pairs]
    delta = statistics.fmean(xb) - statistics.fmean(xa)
    return [_entry(a.name, b.name, metric, len(pairs), delta, paired_bootstrap_ci(xa, xb, boot=boot, seed=seed),
                   None, tally(xa, xb))]


def unpaired_items(runs: Sequence[RunData]) -> list[dict[str, Any]]:
    """Items not finished in every run: where each is missing or failed, and the errors."""
    keys: list[str] = []
    for run in runs:
        keys += [k for k in run.items if k not in keys]
    out = []
    for key in keys:
        missing = [r.name for r in runs if key not in r.items]
        failed = [r.name for r in runs if key in r.items and not r.items[key].done]
        if missing or failed:
            ids = sorted({r.items[key].id for r in runs if key in r.items})
            out.append({"item": key, "ids": ids, "missing_in": missing, "failed_in": failed,
                        "errors": {r.name: r.items[key].error for r in runs
                                   if key in r.items and not r.items[key].done}})
    return out


def measure_targets(runs: Sequence[RunData], ruler: TargetRuler,
                    progress: Callable[[int, int], None] | None = None) -> dict[tuple[str, str], TargetCheck]:
    """Measure every finished item's final image against its recorded targets (one pass per image, cached)."""
    todo = [(r, i) for r in runs for i in r.done if i.final_image is not None]
    checks: dict[tuple[str, str], TargetCheck] = {}
    for n, (run, item) in enumerate(todo, 1):
        checks[(run.name, item.key)] = ruler.check(item.final_image, item.targets)  # type: ignore[arg-type]
        if progress is not None:
            progress(n, len(todo))
    return checks


def compare(
    paths: Sequence[str | Path],
    *,
    names: Sequence[str] | None = None,
    scores: dict[str, str | Path] | None = None,
    boot: int = DEFAULT_BOOT,
    seed: int = 0,
    ruler: TargetRuler | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Comparison:
    """Compare generate runs, every run against the first.

    Args:
        paths (sequence of str | Path): run folders; the first is the baseline.
        names (sequence of str, optional): one label per run (default: the folder names).
        scores (dict, optional): run label (or folder path) -> an `eval track2 --out` CSV with that run's
            judge scores.
        boot (int, optional, defaults to 10000): bootstrap resamples.
        seed (int, optional, defaults to 0): the bootstrap's numpy seed.
        ruler (TargetRuler, optional): measures met targets afresh; None skips the measurement.
        progress (callable, optional): `progress(done, total)` while measuring images.

    Raises:
        InputError: `names` or `scores` do not fit the runs (usage errors). A folder that is not a run is
            NOT raised: it becomes an entry of `problems` and the other runs are compared.
    """
    if boot < 1:
        raise InputError(f"--boot {boot}: needs at least 1 resample")
    labels = run_names(paths, names)
    runs: list[RunData] = []
    problems: list[dict[str, str]] = []
    for path, label in zip(paths, labels, strict=True):
        try:
            runs.append(load_run(path, label))
        except InputError as exc:
            problems.append({"run": label, "path": str(path), "error": str(exc)})
    for target, file in (scores or {}).items():
        run = next((r for r in runs if target in (r.name, str(r.root), r.root.name)), None)
        if run is None:
            if not any(target in (p["run"], p["path"]) for p in problems):
                raise InputError(f"--scores {target}={file}: no run is called {target!r} "
                                 f"(runs: {', '.join(labels)})")
            continue
        try:
            attach_scores(run, file)
        except DataError as exc:
            problems.append({"run": run.name, "path": str(file), "error": f"--scores: {exc}"})
    checks = measure_targets(runs, ruler, progress) if ruler is not None else {}
    keys = cost_keys(runs)
    stats = [run_summary(r, keys, checks, boot=boot, seed=seed) for r in runs]
    comparisons = [c for b in runs[1:] for c in compare_pair(runs[0], b, keys, checks, boot=boot, seed=seed)]
    notes = []
    if ruler is None:
        notes.append("met-target share not measured (--no-measure or the vision models are missing)")
    judged = {r.name: r.judge_source for r in runs}
    if len({s == "run" for s in judged.values() if s is not None}) > 1:
        notes.append("judge scores come from different sources (a run's own judge vs a scores file): "
                     "not compared; pass --scores for every run")
    sets = {r.name: frozenset(r.items) for r in runs}
    if len(set(sets.values())) > 1:
        common = frozenset.intersection(*sets.values())
        notes.append(f"the runs hold different items: compared on their common finished items "
                     f"({len(common)} item(s) in every run)")
    return Comparison(runs=runs, run_stats=stats, comparisons=comparisons, unpaired=unpaired_items(runs),
                      problems=problems, manifest_diff=manifest_differences(runs), checks=checks, notes=notes,
                      boot=boot, seed=seed)


__all__ = ["PRIMARY_METRICS", "Comparison", "compare", "compare_pair", "run_names", "run_summary",
           "unpaired_items"]
