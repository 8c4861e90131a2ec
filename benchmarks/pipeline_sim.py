"""Simulated critique-correct runs through the REAL generate graph, checkpointer, drawer and GPU lane.

GPU jobs sleep (`--gpu-ms`, default 40 ms per generate/edit job) on the real `GpuLane` through the real
`Drawer`/`LaneExecutor`; the critic's VLM calls sleep `--vlm-ms` (60 ms); each item needs one or two edits
(a stable per-item draw). Reported:
- `gpu_utilisation`: GPU-lane busy time / makespan, items in flight = `--concurrency` (target >= 0.95);
- `sequential_gpu_utilisation`: the same with one item at a time (what a plain loop gets, about 0.4);
- `overhead_ms_per_item`: (makespan - lane busy time) / items: every millisecond the lane waited;
- `orchestration_cpu_ms_per_item`: CPU time (all threads) per item of the same run with zero-latency jobs and
  VLM calls: the framework's own cost (graph, checkpoints, PNG encode/decode and writes), and
  `orchestration_share_of_makespan` = that CPU time over the real run's makespan.

    python benchmarks/pipeline_sim.py --json [--items 200] [--concurrency 32]

The executor is injectable (`make_executor`): `--executor lane` (default) runs the simulated jobs on the
in-process lane; `--executor ray --actors 1,2,4` runs them on that many Ray actors of a local Ray (each job
sleeps in an actor) and prints `runs: [{actors, makespan_s, scaling_efficiency, utilisation, ...}]`
(its defaults: 128 items, 32 in flight, 200 ms GPU jobs, 300 ms critiques).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from portraitcraft.agents.critic import RuleVerdict  # noqa: E402
from portraitcraft.config import load_config  # noqa: E402
from portraitcraft.graphs.generate_run import build_context, run_items  # noqa: E402
from portraitcraft.runs import RunFolder  # noqa: E402
from portraitcraft.schemas import CompositionTargets, Track2Spec  # noqa: E402
from portraitcraft.tools.gpu_jobs import Drawer, GpuJob, JobResult, LaneExecutor, png_bytes  # noqa: E402

SIZE = 64


class SimRunner:
    """A `JobRunner` stand-in: each job sleeps `seconds` on the lane and returns a small picture."""

    name = "sim"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.image = Image.new("RGB", (SIZE, SIZE), (120, 90, 60))

    def prepare(self, job: GpuJob) -> Any:
        def call() -> Image.Image:
            if self.seconds:
                time.sleep(self.seconds)
            return self.image
        return call

    def finish(self, image: Image.Image | None, seconds: float, worker: str) -> JobResult:
        return JobResult(png=png_bytes(image) if image is not None else b"", seconds=seconds, worker=worker)


def make_executor(kind: str, gpu_seconds: float, actors: int = 1) -> Any:
    """The executor the simulated jobs run on: the lane, or `actors` Ray actors (each with a `SimRunner`)."""
    if kind == "lane":
        return LaneExecutor(runner=SimRunner(gpu_seconds))  # type: ignore[arg-type]
    if kind == "ray":
        from portraitcraft.config import RayConfig
        from portraitcraft.tools.ray_pool import RayGpuPool

        return RayGpuPool(RayConfig(actors=actors, gpus_per_actor=0), runner=lambda name: SimRunner(gpu_seconds))
    raise SystemExit(f"unknown executor {kind!r} (available: lane, ray)")


def edits_needed(item: str) -> int:
    return 1 + hashlib.sha256(item.encode()).digest()[0] % 2


class SimVLM:
    """The critic's VLM: `seconds` per call; an item's image fails until it has had its edits."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0

    async def ask(self, prompt: str, images: Sequence[Any] = (), **kwargs: Any) -> RuleVerdict:
        self.calls += 1
        if self.seconds:
            await asyncio.sleep(self.seconds)
        path = str(images[0])
        k = int(re.search(r"round_(\d+)", path).group(1))  # type: ignore[union-attr]
        item = Path(path).parent.name
        failing = k < edits_needed(item)
        return RuleVerdict(detected=failing, evidence="simulated",
                           instruction="move the subject to the left third" if failing else "")


class Planner:
    def plan(self, spec: Track2Spec) -> Any:
        return type("Plan", (), {"width": SIZE, "height": SIZE, "prompt": spec.content, "seed": 0, "reasons": []})()


async def simulate(items: int, concurrency: int, gpu_ms: float, vlm_ms: float, executor: str,
                   actors: int = 1) -> dict[str, Any]:
    cfg = load_config(overrides={"critic": {"rules": ["placement"], "geometry": False, "heuristics": False},
                                 "loop": {"max_rounds": 3, "max_edits": 3}, "run": {"concurrency": concurrency}})
    with tempfile.TemporaryDirectory(prefix="pipeline_sim.") as tmp:
        run = RunFolder.create(tmp, "sim", config=cfg)
        jobs_on = make_executor(executor, gpu_ms / 1000, actors)
        if hasattr(jobs_on, "start"):  # a Ray pool: actors up before the clock starts
            await jobs_on.start()
        drawer = Drawer(jobs_on, cfg.generator, cfg.editor)
        vlm = SimVLM(vlm_ms / 1000)
        ctx = build_context(cfg, run, drawer=drawer, vlm=vlm, planner=Planner(), reframe=False,
                            targets_of=lambda s, p: CompositionTargets(horizontal="left"))
        specs = [Track2Spec(image_path=f"sim_{i:04d}.png", content=f"a portrait {i}", composition="left third")
                 for i in range(items)]
        start, cpu = time.perf_counter(), time.process_time()
        summary = await run_items(ctx, specs)
        makespan, cpu = time.perf_counter() - start, time.process_time() - cpu
        stats = drawer.stats()
        await drawer.aclose()
        checkpoint_bytes = sum(f.stat().st_size for f in run.root.glob("checkpoints.sqlite*"))
    assert summary["n_done"] == items and summary["pass_rate"] == 1.0, summary
    return {"makespan_s": makespan, "cpu_s": cpu, "busy_s": stats.busy_seconds, "utilisation": stats.utilisation,
            "worker_utilisation": stats.worker_utilisation, "jobs": stats.jobs, "vlm_calls": vlm.calls,
            "mean_rounds": summary["mean_rounds"], "checkpoint_bytes": checkpoint_bytes}


def ray_runs(args: argparse.Namespace) -> dict[str, Any]:
    """`--executor ray`: the same simulated run on 1, 2, 4... actors of one local Ray (127.0.0.1);
    scaling_efficiency = makespan(1 actor) / (k x makespan(k actors))."""
    from portraitcraft.config import RayConfig
    from portraitcraft.tools.ray_pool import init_ray, shutdown_ray

    counts = [int(k) for k in args.actors.split(",")]
    owns = init_ray(RayConfig(num_cpus=max(2, max(counts))))
    runs: list[dict[str, Any]] = []
    try:
        for k in counts:
            r = asyncio.run(simulate(args.items, args.concurrency, args.gpu_ms, args.vlm_ms, "ray", actors=k))
            runs.append({"actors": k, "makespan_s": round(r["makespan_s"], 3),
                         "utilisation": round(r["busy_s"] / (k * r["makespan_s"]), 4),
                         "actor_utilisation": {a: round(u, 4) for a, u in r["worker_utilisation"].items()},
                         "jobs": r["jobs"]})
    finally:
        if owns:
            shutdown_ray(loopback=True)
    base = next((r["makespan_s"] for r in runs if r["actors"] == 1), None)
    for r in runs:
        r["scaling_efficiency"] = round(base / (r["actors"] * r["makespan_s"]), 4) if base else None
    return {"items": args.items, "concurrency": args.concurrency, "gpu_ms": args.gpu_ms, "vlm_ms": args.vlm_ms,
            "executor": "ray", "runs": runs}


def scale_runs(args: argparse.Namespace) -> int:
    """Orchestration cost per item at several batch sizes (zero-latency jobs and VLM calls): the graph, the
    checkpointer, the batch driver and the PNG I/O. Flat = the driver's per-item cost does not grow with N."""
    concurrency = args.concurrency or 32
    rows = []
    for n in (int(x) for x in args.scale.split(",")):
        r = asyncio.run(simulate(n, concurrency, 0.0, 0.0, args.executor))
        rows.append({"items": n, "orchestration_cpu_ms_per_item": round(1000 * r["cpu_s"] / n, 3),
                     "wall_ms_per_item": round(1000 * r["makespan_s"] / n, 3),
                     "checkpoint_bytes_per_item": round(r["checkpoint_bytes"] / n), "mean_rounds": r["mean_rounds"]})
    first, last = rows[0]["orchestration_cpu_ms_per_item"], rows[-1]["orchestration_cpu_ms_per_item"]
    out = {"concurrency": concurrency, "executor": args.executor, "orchestration": rows,
           "orchestration_cpu_ms_per_item": {str(r["items"]): r["orchestration_cpu_ms_per_item"] for r in rows},
           "checkpoint_bytes_per_item": {str(r["items"]): r["checkpoint_bytes_per_item"] for r in rows},
           "growth_largest_vs_smallest": round(last / first, 3) if first else None}
    print(json.dumps(out, indent=2) if args.json else "\n".join(
        f"{r['items']} items: {r['orchestration_cpu_ms_per_item']} ms CPU/item, "
        f"{r['checkpoint_bytes_per_item']} checkpoint bytes/item" for r in rows))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=None, help="default 200 (ray: 128)")
    ap.add_argument("--concurrency", type=int, default=None, help="items in flight; default 32")
    ap.add_argument("--gpu-ms", type=float, default=None, help="default 40 (ray: 200)")
    ap.add_argument("--vlm-ms", type=float, default=None, help="default 60 (ray: 300)")
    ap.add_argument("--sequential-items", type=int, default=20, help="items for the one-at-a-time baseline")
    ap.add_argument("--executor", default="lane", help="lane | ray")
    ap.add_argument("--actors", default="1,2,4", help="--executor ray: actor counts to compare, e.g. 1,2,4")
    ap.add_argument("--scale", default=None,
                    help="item counts for the orchestration-only figures, e.g. 200,10000 (zero-latency runs: "
                         "orchestration CPU and checkpoint bytes per item at each size; skips the timed runs)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.scale:
        return scale_runs(args)
    # Ray: jobs of realistic length (a round trip costs ~1 ms) and enough items in flight to feed 4 actors
    defaults = {"items": 128, "concurrency": 32, "gpu_ms": 200.0, "vlm_ms": 300.0} if args.executor == "ray" else \
        {"items": 200, "concurrency": 32, "gpu_ms": 40.0, "vlm_ms": 60.0}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.executor == "ray":
        out = ray_runs(args)
        print(json.dumps(out, indent=2) if args.json else "\n".join(
            f"{r['actors']} actor(s): makespan {r['makespan_s']} s, efficiency {r['scaling_efficiency']}, "
            f"utilisation {r['utilisation']}" for r in out["runs"]))
        return 0
    full = asyncio.run(simulate(args.items, args.concurrency, args.gpu_ms, args.vlm_ms, args.executor))
    seq = asyncio.run(simulate(args.sequential_items, 1, args.gpu_ms, args.vlm_ms, args.executor))
    free = asyncio.run(simulate(args.items, args.concurrency, 0.0, 0.0, args.executor))
    orchestration_ms = 1000 * free["cpu_s"] / args.items
    out = {
        "items": args.items, "concurrency": args.concurrency, "gpu_ms": args.gpu_ms, "vlm_ms": args.vlm_ms,
        "executor": args.executor, "gpu_jobs": full["jobs"], "vlm_calls": full["vlm_calls"],
        "mean_rounds": full["mean_rounds"],
        "makespan_s": round(full["makespan_s"], 3), "gpu_busy_s": round(full["busy_s"], 3),
        "gpu_utilisation": round(full["busy_s"] / full["makespan_s"], 4),
        "overhead_ms_per_item": round(1000 * (full["makespan_s"] - full["busy_s"]) / args.items, 3),
        "orchestration_cpu_ms_per_item": round(orchestration_ms, 3),
        "zero_latency_wall_ms_per_item": round(1000 * free["makespan_s"] / args.items, 3),
        "orchestration_share_of_makespan": round(orchestration_ms * args.items / 1000 / full["makespan_s"], 4),
        "sequential_items": args.sequential_items,
        "sequential_gpu_utilisation": round(seq["busy_s"] / seq["makespan_s"], 4),
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for key, value in out.items():
            print(f"{key:34s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
