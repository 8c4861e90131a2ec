"""Throughput and client-side overhead of tools/vlm.py against the scripted fake server.

    .venv/bin/python benchmarks/vlm_client.py [--requests 300] [--image-side 512]   (0: no image)

The fake server runs in a separate process (so client and server do not share a GIL) and answers at once.
Prints requests/s at concurrency 1, 8 and 32 for `VLMClient.ask` (typed JSON answer, one image), the
client-side overhead per request (mean `ask` latency minus a bare openai SDK call with the same body, at
concurrency 1), and the latency of a cache hit.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import openai
from PIL import Image
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fake_vlm import FakeVLMServer, endpoint_config, serve_until_stdin_closes, server_in_child  # noqa: E402

from portraitcraft.tools.images import encode_image  # noqa: E402
from portraitcraft.tools.vlm import VLMClient  # noqa: E402


class Verdict(BaseModel):
    detected: bool
    instruction: str


ANSWER = '{"detected": false, "instruction": "keep the subject on the left third"}'


async def run_level(server: FakeVLMServer, images: list[Image.Image], concurrency: int,
                    n: int) -> tuple[float, list[float]]:
    cfg = endpoint_config(server, max_concurrency=concurrency, cache=False)
    async with VLMClient(cfg) as vlm:
        await vlm.ask("warm-up", images, schema=Verdict)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(n):
            queue.put_nowait(i)
        latencies: list[float] = []

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                t0 = time.perf_counter()
                await vlm.ask(f"Is rule {i} violated?", images, schema=Verdict)
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return n / elapsed, latencies


async def bare_sdk_latency(base_url: str, images: list[Image.Image], n: int) -> list[float]:
    parts = [{"type": "image_url", "image_url": {"url": encode_image(img).url}} for img in images]
    client = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0)
    latencies = []
    for i in range(n + 1):
        t0 = time.perf_counter()
        await client.chat.completions.create(
            model="fake-vl", temperature=0.0, max_tokens=1024, seed=0,
            messages=[{"role": "user", "content": [*parts, {"type": "text", "text": f"Is rule {i} violated?"}]}],
            extra_body={"structured_outputs": {"json": Verdict.model_json_schema()}})
        if i:
            latencies.append(time.perf_counter() - t0)
    await client.close()
    return latencies


async def cache_hit_latency(server: FakeVLMServer, images: list[Image.Image], n: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        async with VLMClient(endpoint_config(server), cache_dir=Path(tmp)) as vlm:
            await vlm.ask("cached question", images, schema=Verdict)
            latencies = []
            for _ in range(n):
                t0 = time.perf_counter()
                await vlm.ask("cached question", images, schema=Verdict)
                latencies.append(time.perf_counter() - t0)
            assert vlm.stats.requests == 1, "cache hits must not reach the server"
    return latencies


def ms(values: list[float]) -> str:
    arr = np.asarray(values) * 1000
    return f"mean {arr.mean():6.2f} ms  p50 {np.percentile(arr, 50):6.2f}  p90 {np.percentile(arr, 90):6.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--image-side", type=int, default=512)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_until_stdin_closes(ANSWER)
        return
    with server_in_child(__file__, cwd=ROOT, wait=20) as server:
        base_url = server.base_url
        rng = np.random.default_rng(0)
        side = args.image_side
        images = [Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8), "RGB")] if side else []
        what = f"one {side}x{side} noise image each (encoding cached after the first)" if side else "no image"
        print(f"fake server {base_url}; {args.requests} requests per level; {what}")
        for concurrency in (1, 8, 32):
            rate, lat = asyncio.run(run_level(server, images, concurrency, args.requests))
            print(f"VLMClient.ask  concurrency {concurrency:>2}: {rate:7.1f} req/s   latency {ms(lat)}")
        n1 = min(args.requests, 200)
        bare = asyncio.run(bare_sdk_latency(base_url, images, n1))
        _, ours = asyncio.run(run_level(server, images, 1, n1))
        print(f"bare openai SDK, concurrency 1: latency {ms(bare)}")
        print(f"client-side overhead per request (ask - bare SDK, means): "
              f"{(statistics.mean(ours) - statistics.mean(bare)) * 1000:.2f} ms")
        print(f"cache hit: latency {ms(asyncio.run(cache_hit_latency(server, images, n1)))}")

if __name__ == "__main__":
    main()
