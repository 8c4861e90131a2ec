"""The offline demo (the README's main command): the critique-correct loop on a CPU with no model hub and no API.

1. validate the bundled example files;
2. critique-correct REAL photographs (`portraitcraft generate --init-images`): three public-domain portraits
   (scikit-image's astronaut and camera, matplotlib's grace_hopper; copied from the installed packages at run
   time, never committed) paired with descriptions whose placement, frame orientation and (camera) facing
   they violate. The geometric critic (real mediapipe pose, person mask and face on CPU) finds each fault and the
   reframing editor mirrors (facing) and crops (placement, frame) to the planned canvas. Offline it never
   invents pixels: where no crop reaches the asked placement it keeps the best crop and the finding stays open,
   marked "needs outpainting" (a generative outpainting model, `--fill outpaint`, would pad it);
3. draft from scratch with the tiny RANDOM Z-Image through the real diffusers loading code, critique, edit
   (img2img) until the round budget: noise never shows a person, so every item ends "not passed" at the
   budget -- an honest run of the loop's machinery, not of image quality;
4. score a Track 1 prior baseline exactly as the benchmark does.

What it does not show: a VLM critic (no endpoint offline; see configs/zimage-turbo.toml), crop-level or pose
fixes (a crop cannot show more of a body or move a limb; they need a real editing model), or good drafts
(tiny random weights).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
console = Console()

PHOTOS: dict[str, tuple[str, str]] = {
    "astronaut.png": ("An astronaut in an orange flight suit, smiling, with the American flag behind her.",
                      "The astronaut is placed on the right third of a vertical frame, looking at the camera."),
    "camera.png": ("A photographer in a dark coat working with a camera on a tripod in a park.",
                   "The photographer faces left, standing in the centre of a vertical frame, with the park "
                   "behind him."),
    "grace_hopper.png": ("A naval officer in dress uniform, a head-and-shoulders portrait.",
                         "The officer is placed on the left third of a square frame, looking at the camera."),
}


def copy_photos(folder: Path) -> None:
    """The public-domain photos from the installed scikit-image and matplotlib packages."""
    import matplotlib.cbook as cbook
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(data.astronaut()).save(folder / "astronaut.png")
    Image.fromarray(data.camera()).convert("RGB").save(folder / "camera.png")
    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        Image.open(fh).convert("RGB").save(folder / "grace_hopper.png")


def generate(args: list[str]) -> dict[str, Any]:
    """Run `portraitcraft generate ... --json` as a user would (a subprocess of this interpreter)."""
    cmd = [sys.executable, "-m", "portraitcraft.cli", "generate", *args, "--json"]
    console.print("$ portraitcraft " + " ".join(cmd[3:]), style="dim", highlight=False)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode != 0:
        console.print(proc.stderr[-3000:], highlight=False)
        raise SystemExit(f"portraitcraft generate failed (exit {proc.returncode})")
    return json.loads(proc.stdout)


def show(run: Path, title: str) -> list[dict[str, Any]]:
    rows = {r["id"]: r for r in map(json.loads, (run / "results.jsonl").read_text().splitlines())}
    table = Table("item", "status", "passed", "rounds", "trajectory", "final", title=title)
    for row in rows.values():
        steps = []
        for h in row["history"]:
            fired = sorted({f"{f['rule']}({f['source'][0]})" for f in h["findings"] if f["detected"]})
            then = f" -> {h['action']}" if h["action"] else ""
            steps.append(f"{h['made_by']}: {', '.join(fired) or 'pass'}{then}")
        table.add_row(row["id"][:22], row["status"], str(row["passed"]), str(row["rounds"]), "\n".join(steps),
                      str(row.get("final_image") or row.get("error") or "")[:40])
    console.print(table)
    return list(rows.values())


def track1_baseline(examples: Path, out: Path) -> None:
    from portraitcraft.data import load_track1_test, load_track1_train
    from portraitcraft.eval.track1 import score_track1
    from portraitcraft.schemas import ATTRIBUTES, Track1Prediction, level_from_score
    from portraitcraft.submission import write_track1_submission

    train = load_track1_train(examples / "track_1_train.json")
    means = {a: statistics.fmean(t.criteria[a].score for t in train) for a in ATTRIBUTES}
    total = statistics.fmean(t.total_score for t in train)
    template = load_track1_test(examples / "track_1_test.json")
    preds = [Track1Prediction(image_path=t.image_path, levels={a: level_from_score(means[a]) for a in ATTRIBUTES},
                              total_score=total, answer="A") for t in template]
    sub = write_track1_submission(template, preds, out / "track1_submission.zip")
    result = score_track1(sub.path, examples / "track_1_test_labels.json")
    console.print(f"prior baseline: SRCC {result.srcc:.3f}  PLCC {result.plcc:.3f}  level acc {result.level_acc:.3f}"
                  f"  QA acc {result.qa_acc:.3f}  composite {result.composite:.3f}  (n={result.n})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", default=ROOT / "examples", type=Path)
    ap.add_argument("--out", default=ROOT / "runs", type=Path)
    ap.add_argument("--name", default="demo")
    ap.add_argument("--draft-items", type=int, default=2, help="Track 2 examples drafted with the tiny model")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from portraitcraft.data import validate_file
    from portraitcraft.tools.diffusion.tiny import ensure_tiny_model

    out = args.out / args.name
    ex: Path = args.examples
    console.rule("1. validate the examples")
    for name in ("track_1_train", "track_1_test", "track_1_test_labels", "track_2_train", "track_2_test"):
        report = validate_file(ex / f"{name}.json", ex / "images" if name != "track_2_test" else None)
        console.print(f"{name}.json: {report.kind}, {report.n_valid}/{report.n_items} items, "
                      + ("[green]valid[/]" if report.ok else f"[red]{len(report.problems)} problem(s)[/]"))

    model = ensure_tiny_model("zimage")
    offline = ["--config", str(ROOT / "configs" / "offline.toml"), "--set", f"generator.model={json.dumps(str(model))}",
               "--set", f"editor.model={json.dumps(str(model))}", "--resume"]

    console.rule("2. critique-correct three real photographs (geometric critic + reframing editor)")
    photos = out / "photos"
    copy_photos(photos)
    items = [{"image_path": name, "content_description": c, "composition_analysis": comp}
             for name, (c, comp) in PHOTOS.items()]
    (out / "photos.json").write_text(json.dumps(items, indent=1) + "\n")
    # the canvas the photos are cropped to: the planner's class at the photos' own scale (512 px long side)
    summary = generate([str(out / "photos.json"), *offline, "--set", "planner.long_side=512", "--init-images",
                        str(photos), "--out", str(out / "photos-run")])
    rows = show(out / "photos-run", "real photos: the critic's findings and the fixes")
    console.print(f"pass rate {summary['pass_rate']:.0%} over {summary['n_done']} photos, mean rounds "
                  f"{summary['mean_rounds']:.2f}; report: {out / 'photos-run' / 'report.html'}")
    for row in rows:
        if row.get("needs_outpainting"):
            console.print(f"{row['id']}: needs outpainting ({', '.join(row['needs_outpainting'])}): no crop of the "
                          "photo reaches the asked placement; the best crop is kept, nothing is invented",
                          highlight=False)

    console.rule("3. draft with the tiny RANDOM Z-Image and run the loop to its budget")
    summary = generate([str(ex / "track_2_test.json"), *offline, "--limit", str(args.draft_items),
                        "--max-rounds", "1", "--out", str(out / "draft-run")])
    show(out / "draft-run", "tiny random model: noise, so the critic never finds a person")
    console.print(f"pass rate {summary['pass_rate']:.0%} (expected: 0%, random weights draw noise), mean rounds "
                  f"{summary['mean_rounds']:.2f}, GPU-lane utilisation {summary['gpu_utilisation']}, per final "
                  f"image {summary['cost_per_final_image']}")

    console.rule("4. Track 1: a prior baseline, scored as the benchmark does")
    track1_baseline(ex, out)
    console.rule("what this shows")
    console.print("- the geometric critic measured where each real subject sits, which way it faces and the "
                  "frame's shape, found the placement / facing / orientation faults the descriptions imply, and "
                  "the reframing editor (mirror + crop, no invented pixels) fixed what a crop can fix; what it "
                  "cannot stays open as 'needs outpainting' (section 2; trajectories in the reports);\n"
                  "- the loop runs end to end on real diffusers code with checkpoints, resume, results.jsonl, "
                  "pairs.jsonl, submission/ and report.html; with random weights it honestly ends at the round "
                  "budget (section 3);\n"
                  "- NOT shown: a VLM critic, crop-level / pose fixes (they need a real editing model), image "
                  "quality.")
    shutil.rmtree(photos / "__pycache__", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
