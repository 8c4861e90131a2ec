"""Target extractor and prompt budget: items/s, agreement on the test descriptions, tokens before/after.

On the realistic descriptions of tests/data/target_descriptions.json (1,000-2,500 characters each), or a
Track 2 file with --file (e.g. the real track_2_test.json):
- the rule extractor's items/s (one item = content + composition), and its exact-match rate per target on
  the test descriptions (they carry expected targets);
- the canvas orientation distribution the rule policy gives;
- prompt tokens before / after condensing at a budget (estimate counter), and how many still do not fit.

Run: .venv/bin/python benchmarks/targets.py [--file track_2_test.json] [--repeat 20] [--budget 512]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from portraitcraft.agents.planner import Planner  # noqa: E402
from portraitcraft.agents.planner.targets import KEYS, extract_targets, lexicon  # noqa: E402
from portraitcraft.config import PlannerConfig  # noqa: E402
from portraitcraft.schemas import Track2Spec  # noqa: E402

DATA = ROOT / "tests" / "data" / "target_descriptions.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, help="a Track 2 file instead of the test descriptions")
    parser.add_argument("--repeat", type=int, default=20, help="passes over the items for the timing")
    parser.add_argument("--budget", type=int, default=512, help="prompt token budget for the condensing figures")
    args = parser.parse_args()

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
