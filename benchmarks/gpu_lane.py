"""GPU-lane utilisation with N concurrent fake items (draft -> critique -> edit rounds).

Each item: a GPU job (draft), then `rounds` times a VLM critique (concurrent, off the lane) followed by a GPU
edit job. GPU jobs sleep in the lane's worker thread; critiques are asyncio sleeps. With one item the lane idles
while the critic thinks; with more items in flight other items' jobs fill those gaps.

    python benchmarks/gpu_lane.py                      # N = 1, 2, 4, 8, 16
    python benchmarks/gpu_lane.py --items 4 --gpu-ms 50 --vlm-ms 200 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import time

from portraitcraft.tools.gpu import GpuLane


async def run_item(lane: GpuLane, item: str, gpu_s: float, vlm_s: float, rounds: int) -> None:
    await lane.submit(time.sleep, gpu_s, item_id=item, kind="generate")
    for _ in range(rounds):
        await asyncio.sleep(vlm_s)  # the critic (a VLM call) runs concurrently, off the lane
        await lane.submit(time.sleep, gpu_s, item_id=item, kind="edit")


async def measure(items: int, gpu_s: float, vlm_s: float, rounds: int) -> tuple[float, float, int, float]:
    with GpuLane() as lane:
        start = time.perf_counter()
        await asyncio.gather(*(run_item(lane, f"item-{i}", gpu_s, vlm_s, rounds) for i in range(items)))
        wall = time.perf_counter() - start
        stats = lane.stats()
    return stats.utilisation, wall, stats.jobs, stats.busy_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="*", default=[1, 2, 4, 8, 16])
    parser.add_argument("--gpu-ms", type=float, default=40.0, help="duration of one GPU job")
    parser.add_argument("--vlm-ms", type=float, default=120.0, help="duration of one critique")
    parser.add_argument("--rounds", type=int, default=2, help="critique + edit rounds per item")
    args = parser.parse_args()
    print(f"gpu job {args.gpu_ms:.0f} ms, critique {args.vlm_ms:.0f} ms, {args.rounds} rounds per item")
    print(f"{'items':>5} {'jobs':>5} {'busy s':>8} {'wall s':>8} {'utilisation':>12} {'items/min':>10}")
    for n in args.items:
        util, wall, jobs, busy = asyncio.run(measure(n, args.gpu_ms / 1000, args.vlm_ms / 1000, args.rounds))
        print(f"{n:>5} {jobs:>5} {busy:>8.2f} {wall:>8.2f} {util:>12.1%} {60 * n / wall:>10.1f}")


if __name__ == "__main__":
    main()
