"""The offline demo on the bundled examples: every landed part, end to end, on a CPU with no model hub.

1. validate the four example files (and their images);
2. plan a canvas and a prompt for every Track 2 test description (rule canvas policy, spatial-first prompt);
3. draw each with a tiny RANDOM Z-Image-Turbo built offline and loaded through the same from_pretrained path
   as real weights (the pictures are noise: the point is the code path, sizes, seeds and metadata);
4. write the run folder (manifest, results.jsonl, PNGs with their parameters) and the Track 2 submission;
5. write a Track 1 submission from a no-model prior baseline (train-set means) and score it exactly as the
   benchmark does against examples/track_1_test_labels.json.

Real generation: the same code with configs/zimage-turbo.toml on a GPU box (README).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from agents.planner import Planner
from eval.track1 import score_track1
from portraitcraft.config import load_config
from portraitcraft.data import load_track1_test, load_track1_train, load_track2, validate_file
from portraitcraft.runs import RunFolder, run_item
from portraitcraft.schemas import ATTRIBUTES, Track1Prediction, Track2Spec, level_from_score
from portraitcraft.submission import write_track1_submission, write_track2_submission
from tools.diffusion import build_generator, save_png
from tools.diffusion.metadata import meta_of
from tools.diffusion.tiny import ensure_tiny_model

console = Console()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", default="examples", type=Path)
    ap.add_argument("--out", default="runs", type=Path)
    ap.add_argument("--name", default="demo")
    ap.add_argument("--long-side", type=int, default=96, help="canvas long side (tiny model on CPU)")
    args = ap.parse_args()
    ex: Path = args.examples

    console.rule("1. validate the examples")
    for name in ("track_1_train", "track_1_test", "track_1_test_labels", "track_2_train", "track_2_test"):
        images = ex / "images" if name != "track_2_test" else None  # Track 2 test images are what we draw
        report = validate_file(ex / f"{name}.json", images)
        state = "[green]valid[/]" if report.ok else f"[red]{len(report.problems)} problem(s)[/]"
        console.print(f"{name}.json: {report.kind}, {report.n_valid}/{report.n_items} items, {state}")
        for problem in report.problems:
            console.print(f"  {problem}")

    console.rule("2-4. plan and draw the Track 2 test items with a tiny random Z-Image-Turbo")
    model_dir = ensure_tiny_model("zimage")
    cfg = load_config(overrides={
        "generator": {"backend": "zimage-turbo", "model": str(model_dir), "device": "cpu", "dtype": "float32",
                      "steps": 2},
        "planner": {"long_side": args.long_side, "multiple": 16, "spatial_first": True},
        "run": {"out_dir": str(args.out), "name": args.name},
    })
    run = RunFolder.create(args.out, args.name, config=cfg, resume=True)
    planner = Planner.from_config(cfg)
    generator = build_generator(cfg.generator)
    specs = load_track2(ex / "track_2_test.json")
    finals: dict[str, Path] = {}
    table = Table("item", "canvas", "why", "image")
    done = {r["id"]: r for r in run.results if r.get("status") == "finished"}  # a re-run resumes
    for spec in specs:
        if spec.id in done and Path(done[spec.id]["image"]).is_file():
            finals[spec.id] = Path(done[spec.id]["image"])
            table.add_row(spec.id[:28], f"{done[spec.id]['width']}x{done[spec.id]['height']}", "(finished before)",
                          finals[spec.id].name)
            continue

        def draw(spec: Track2Spec = spec) -> dict:
            plan = planner.plan(spec)
            image = generator.generate(plan.prompt, plan.width, plan.height, plan.seed)
            # named after the item's output file, so `data submit track2 --images <run>/items` finds it
            path = save_png(image, run.item_file(spec.id, f"{Path(spec.output_name).stem}.png"), meta_of(image))
            return {"image": str(path), "width": plan.width, "height": plan.height, "seed": plan.seed,
                    "reasons": plan.reasons}

        row = run_item(spec.id, draw)  # an expected failure is a failed row; a bug stops the demo
        run.results.append(row)
        if row["status"] != "finished":
            table.add_row(spec.id[:28], "-", f"[red]failed:[/] {row['error']}"[:80], "-")
            continue
        finals[spec.id] = Path(row["image"])
        table.add_row(spec.id[:28], f"{row['width']}x{row['height']}", "; ".join(row["reasons"])[:60],
                      finals[spec.id].name)
    console.print(table)
    sub2 = write_track2_submission(specs, finals, run.root, allow_missing=True)
    console.print(f"Track 2 submission: {sub2.n_images} images in {sub2.folder}, zipped at {sub2.zip_path}")
    console.print(f"(the same from the per-item outputs: portraitcraft data submit track2 {ex / 'track_2_test.json'} "
                  f"--images {run.root / 'items'})", highlight=False)

    console.rule("5. Track 1: a prior baseline, scored as the benchmark does")
    train = load_track1_train(ex / "track_1_train.json")
    means = {a: statistics.fmean(t.criteria[a].score for t in train) for a in ATTRIBUTES}
    total = statistics.fmean(t.total_score for t in train)
    template = load_track1_test(ex / "track_1_test.json")
    preds = [Track1Prediction(image_path=t.image_path, levels={a: level_from_score(means[a]) for a in ATTRIBUTES},
                              total_score=total, answer="A") for t in template]
    sub1 = write_track1_submission(template, preds, run.root / "track1_submission.zip")
    result = score_track1(sub1.path, ex / "track_1_test_labels.json")
    console.print(f"Track 1 submission: {sub1.path} ({sub1.n_items} items)")
    console.print(f"prior baseline: SRCC {result.srcc:.3f}  PLCC {result.plcc:.3f}  level acc {result.level_acc:.3f}"
                  f"  QA acc {result.qa_acc:.3f}  composite {result.composite:.3f}  (n={result.n})")
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    console.print(f"run folder: {run.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
