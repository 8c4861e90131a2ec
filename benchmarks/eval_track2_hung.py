"""How long a Track 2 judging run takes to give up on an endpoint that accepts connections and never answers.

    .venv/bin/python benchmarks/eval_track2_hung.py [--items 8 32] [--timeout 2] [--retries 4]

Runs `portraitcraft.eval.track2.judge_items` in-process against tests/silent_server.py, in sampled mode (every item's
requests time out on their own, concurrently up to `max_concurrency`) and in auto mode (the one probe fails,
so every item fails at once). Prints wall seconds, failed items and the most connections held at once.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from silent_server import SilentServer  # noqa: E402

from portraitcraft.agents.judge import Judge  # noqa: E402
from portraitcraft.config import JudgeConfig  # noqa: E402
from portraitcraft.eval.track2 import judge_items  # noqa: E402
from portraitcraft.schemas import Track2Spec  # noqa: E402
from portraitcraft.tools.vlm import VLMClient  # noqa: E402


async def one_run(n: int, mode: str, timeout: float, retries: int, images: Path) -> tuple[float, int, int]:
    with SilentServer() as server:
        cfg = JudgeConfig(base_url=server.base_url, model="m", mode=mode, timeout=timeout, max_retries=retries,
                          samples=1)
        specs = [Track2Spec(image_path="a.png", content=f"person {i}", composition="centred") for i in range(n)]
        started = time.perf_counter()
        async with VLMClient(cfg) as client:
            scores = await judge_items(specs, images, Judge(cfg, client))
        return time.perf_counter() - started, sum(s.result is None for s in scores), server.max_open


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--retries", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        Image.new("RGB", (16, 16), "grey").save(Path(tmp) / "a.png")
        print(f"silent endpoint, timeout {args.timeout:g}s, max_retries {args.retries} (max_concurrency 8)")
        for mode in ("sampled", "auto"):
            for n in args.items:
                seconds, failed, held = asyncio.run(one_run(n, mode, args.timeout, args.retries, Path(tmp)))
                print(f"{mode:8s} {n:4d} items: {seconds:6.1f} s, {failed} failed, {held} connections at once")


if __name__ == "__main__":
    main()
