"""Target extractor and prompt budget: items/s, agreement, and on REAL text precision / recall per key.

Default: the realistic descriptions of tests/data/target_descriptions.json (they carry expected targets), or
a Track 2 file with --file: the rule extractor's items/s, its exact-match rate per target, the canvas
orientation distribution, and prompt tokens before / after condensing.

--real PATH (a Track 2 JSON array / JSONL, e.g. real test descriptions kept in the gitignored .cache/) with
--labels FILE (default benchmarks/data/real_target_labels.json: hand labels keyed by image_path, values only):
per split (dev / heldout) and per key (placement, vertical, crop, gaze, facing, people):
- precision over ENFORCED targets (an enforced value that is wrong, or stated where the label is null, counts
  against it), recall over stated labels (enforced and right), the recall of the values shown (enforced or
  not), abstentions (stated, nothing enforced), and the ambiguous-frame count (targets whose frame the text
  does not settle, plus labels marked ambiguous);
- the prompt budget over ALL items of PATH (labelled or not): tokens before/after condensing at --budget and
  at the generator's real limit, how many are still over, sentences dropped by kind, and content coverage
  (the share of the content description's content words the final prompt keeps). The counter is the
  estimate unless --tokenizer names a tokenizer.json (it says which).

Run: .venv/bin/python benchmarks/targets.py [--file track_2_test.json] [--repeat 20] [--budget 512]
     .venv/bin/python benchmarks/targets.py --real .cache/real/dev.jsonl [--labels FILE] [--enforce 0.8] [--items]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from portraitcraft.agents.planner import Planner  # noqa: E402
from portraitcraft.agents.planner.condense import content_coverage  # noqa: E402
from portraitcraft.agents.planner.prompt_builder import (  # noqa: E402
    EstimateCounter,
    PromptBuilder,
    TokenizerCounter,
)
from portraitcraft.agents.planner.role import PIPELINE_MAX_SEQUENCE, TEMPLATE_TOKENS  # noqa: E402
from portraitcraft.agents.planner.targets import (  # noqa: E402
    DEFAULT_ENFORCE_CONFIDENCE,
    KEYS,
    extract,
    extract_targets,
    lexicon,
)
from portraitcraft.config import PlannerConfig  # noqa: E402
from portraitcraft.schemas import Track2Spec  # noqa: E402

DATA = ROOT / "tests" / "data" / "target_descriptions.json"
LABELS = ROOT / "benchmarks" / "data" / "real_target_labels.json"
LABEL_KEYS = {"placement": "horizontal", "vertical": "vertical", "crop": "crop_level", "gaze": "gaze",
              "facing": "facing", "people": "people"}


def _score(specs: list[Any], labels: dict[str, dict], enforce: float) -> dict[str, dict[str, int]]:
    """Per key: tp / fp over enforced values, stated labels, hits, shown hits, abstentions, ambiguous frames."""
    out = {k: dict.fromkeys(("tp", "fp", "stated", "hit", "shown", "abstain", "ambiguous", "conflict"), 0)
           for k in LABEL_KEYS}
    for spec in specs:
        lab = labels[spec.image_path]
        t = extract(spec.content, spec.composition, enforce_confidence=enforce).targets
        for key, field_ in LABEL_KEYS.items():
            want, got, ev = lab.get(key), getattr(t, field_), t.evidence.get(field_)
            row = out[key]
            row["ambiguous"] += int(ev is not None and ev.frame == "ambiguous")
            row["conflict"] += int(ev is not None and ev.value is None)
            if want == "ambiguous":
                row["ambiguous"] += 1
                row["fp"] += int(t.enforced(field_))  # a side the text does not settle must not be enforced
                continue
            if t.enforced(field_):
                row["tp" if got == want else "fp"] += 1
            if want is not None:
                row["stated"] += 1
                row["hit"] += int(t.enforced(field_) and got == want)
                row["shown"] += int(got == want)
                row["abstain"] += int(not t.enforced(field_))
    return out


def _print_scores(name: str, n: int, scores: dict[str, dict[str, int]]) -> None:
    print(f"{name}: {n} items")
    print(f"  {'key':10s} {'precision':>14s} {'recall':>14s} {'shown recall':>14s} {'abstain':>8s} "
          f"{'ambiguous':>9s} {'conflict':>8s}")
    for key, r in scores.items():
        enforced = r["tp"] + r["fp"]
        prec = f"{r['tp'] / enforced:.2f} ({r['tp']}/{enforced})" if enforced else "- (0/0)"
        rec = f"{r['hit'] / r['stated']:.2f} ({r['hit']}/{r['stated']})" if r["stated"] else "- (0/0)"
        shown = f"{r['shown'] / r['stated']:.2f} ({r['shown']}/{r['stated']})" if r["stated"] else "-"
        print(f"  {key:10s} {prec:>14s} {rec:>14s} {shown:>14s} {r['abstain']:>8d} {r['ambiguous']:>9d} "
              f"{r['conflict']:>8d}")
    tp = sum(r["tp"] for r in scores.values())
    fp = sum(r["fp"] for r in scores.values())
    hit = sum(r["hit"] for r in scores.values())
    stated = sum(r["stated"] for r in scores.values())
    print(f"  all keys: precision {tp / max(1, tp + fp):.3f} ({tp}/{tp + fp}), recall {hit / max(1, stated):.3f} "
          f"({hit}/{stated})")


def _budget_report(specs: list[Any], budget: int, counter: Any, what: str, items: bool = False) -> None:
    builder = PromptBuilder(max_prompt_tokens=budget, counter=counter)
    before, after, over, coverage = [], [], 0, []
    kinds: Counter[str] = Counter()
    for spec in specs:
        targets = extract_targets(spec.content, spec.composition)
        built = builder.build(spec.content, spec.composition, targets)
        before.append(built.tokens_before)
        after.append(built.tokens)
        over += int(built.tokens > budget)
        coverage.append(content_coverage(spec.content, built.text))
        kinds.update(built.dropped_kinds)
        if items:
            dropped = ", ".join(f"{k} {v}" for k, v in sorted(Counter(built.dropped_kinds).items())) or "none"
            print(f"  {spec.id}: {built.tokens_before} -> {built.tokens} tokens, coverage {coverage[-1]:.3f}, "
                  f"dropped {dropped}")
    n_over_before = sum(b > budget for b in before)
    print(f"prompt budget {budget} ({what}, {counter.name}): over budget {n_over_before} -> {over} of {len(specs)}; "
          f"tokens median {statistics.median(before):.0f} -> {statistics.median(after):.0f}, max {max(before)} -> "
          f"{max(after)}; content coverage mean {statistics.mean(coverage):.3f}, min {min(coverage):.3f}; "
          f"sentences dropped: " + (", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) or "none"))


def real_report(path: Path, labels_file: Path, enforce: float, budget: int, tokenizer: Path | None,
                items: bool = False) -> None:
    """Precision / recall per key on real descriptions against hand labels, and the prompt budget figures."""
    from portraitcraft.data import load_track2

    specs = load_track2(path, strict=False)
    labels = json.loads(labels_file.read_text(encoding="utf-8"))["labels"]
    print(f"data: {path} ({len(specs)} items); labels: {labels_file} ({len(labels)}); enforce_confidence {enforce}")
    for split in ("dev", "heldout", "heldout2", "heldout3"):
        mine = [s for s in specs if labels.get(s.image_path, {}).get("split") == split]
        if mine:
            _print_scores(f"{split} (labelled)", len(mine), _score(mine, labels, enforce))
    counter = TokenizerCounter(tokenizer) if tokenizer else EstimateCounter()
    _budget_report(specs, budget, counter, "--budget", items)
    for backend, limit in PIPELINE_MAX_SEQUENCE.items():
        if backend == "zimage":
            continue
        _budget_report(specs, limit - TEMPLATE_TOKENS.get(backend, 0), counter, f"{backend}'s real limit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, help="a Track 2 file instead of the test descriptions")
    parser.add_argument("--repeat", type=int, default=20, help="passes over the items for the timing")
    parser.add_argument("--budget", type=int, default=512, help="prompt token budget for the condensing figures")
    parser.add_argument("--real", type=Path, help="real Track 2 items: per-key precision/recall against --labels")
    parser.add_argument("--labels", type=Path, default=LABELS, help="hand labels keyed by image_path")
    parser.add_argument("--enforce", type=float, default=DEFAULT_ENFORCE_CONFIDENCE,
                        help="enforce_confidence to measure at")
    parser.add_argument("--tokenizer", type=Path, help="a tokenizer.json to count prompt tokens with")
    parser.add_argument("--items", action="store_true", help="with --real: print each item's tokens before/after")
    args = parser.parse_args()
    if args.real:
        real_report(args.real, args.labels, args.enforce, args.budget, args.tokenizer, args.items)
        return

    if args.file:
        from portraitcraft.data import load_track2

        specs = load_track2(args.file, strict=False)
        expected: list[dict] | None = None
        what = str(args.file)
    else:
        items = json.loads(DATA.read_text(encoding="utf-8"))["items"]
        specs = [Track2Spec(image_path=f"{i['id']}.jpg", content=i["content_description"],
                            composition=i["composition_analysis"]) for i in items]
        expected = [i["expected"] for i in items]
        what = f"{DATA.relative_to(ROOT)} ({len(specs)} items)"
    chars = statistics.median(len(s.content) + len(s.composition) for s in specs)

    started = time.perf_counter()
    lexicon()
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(args.repeat):
        got = [extract_targets(s.content, s.composition) for s in specs]
    seconds = time.perf_counter() - started
    rate = args.repeat * len(specs) / seconds

    print(f"data: {what}; median {chars:.0f} characters per item")
    print(f"rule extractor: {rate:.0f} items/s ({seconds / args.repeat / len(specs) * 1000:.2f} ms/item, one "
          f"core); lexicon compiled in {load_s * 1000:.0f} ms")
    said = Counter(k for t in got for k in KEYS if getattr(t, k) is not None)
    print("targets found: " + ", ".join(f"{k} {said[k]}/{len(specs)}" for k in KEYS))
    if expected is not None:
        agree = {k: sum(getattr(t, k) == e[k] for t, e in zip(got, expected, strict=True)) for k in KEYS}
        print("agreement with the expected targets: " + ", ".join(f"{k} {agree[k]}/{len(specs)}" for k in KEYS))

    planner = Planner(PlannerConfig(max_prompt_tokens=args.budget))
    started = time.perf_counter()
    plans = [planner.plan(s) for s in specs]
    plan_ms = (time.perf_counter() - started) / len(specs) * 1000
    orient = Counter("portrait" if p.height > p.width else "landscape" if p.width > p.height else "square"
                     for p in plans)
    print(f"rule canvas: portrait {orient['portrait']}, square {orient['square']}, landscape {orient['landscape']}; "
          f"Planner.plan {plan_ms:.1f} ms/item")
    before = [p.prompt_tokens_before for p in plans]
    after = [p.prompt_tokens for p in plans]
    over_before = sum(b > args.budget for b in before)
    over_after = sum(a > args.budget for a in after)
    print(f"prompt tokens at budget {args.budget} (estimate): median {statistics.median(before):.0f} -> "
          f"{statistics.median(after):.0f}, max {max(before)} -> {max(after)}; over budget {over_before} -> "
          f"{over_after} of {len(plans)}")


if __name__ == "__main__":
    main()
