"""Requests per image and images/s of the Track 1 understand graph against the scripted fake server.

    .venv/bin/python benchmarks/understand.py [--images 40] [--samples 5] [--image-side 512]

4 views per image (original + mirrored x 2 pixel budgets, options permuted), K samples per view. The fake
server runs in a separate process and answers at once with a valid assessment, so the figures measure the
graph, the assessor and the client: one request per view (n=K), never one per sample. The VLM reply cache is
off; the LangGraph SQLite checkpointer is on (as in a real run).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fake_vlm import FakeVLMServer, answer_schema, endpoint_config, serve_until_stdin_closes, server_in_child  # noqa: E402

from portraitcraft.agents.assessor import Assessor  # noqa: E402
from portraitcraft.agents.assessor_vote import VoteSettings  # noqa: E402
from portraitcraft.agents.views import build_views  # noqa: E402
from portraitcraft.config import AssessorConfig  # noqa: E402
from portraitcraft.graphs.understand import fingerprint, run_items  # noqa: E402
from portraitcraft.graphs.understand_state import UnderstandContext  # noqa: E402
from portraitcraft.schemas import ATTRIBUTES  # noqa: E402
from portraitcraft.tools.vlm import VLMClient  # noqa: E402

OPTIONS = {"A": "The subject is on the left third.", "B": "The subject is centred.", "C": "The subject is cut off.",
           "D": "There is no subject."}


def answer(body: dict) -> dict:
    schema = answer_schema(body) or {}
    out: dict = {"criteria": dict.fromkeys(ATTRIBUTES, 6.5), "overall": 61}
    if "answer" in schema.get("properties", {}):
        out["answer"] = "B"
    return out


async def run(server: FakeVLMServer, images: list[Path], samples: int, concurrency: int,
              workdir: Path) -> tuple[float, int]:
    cfg = AssessorConfig(**endpoint_config(server, max_concurrency=64, cache=False, timeout=120.0,
                                                         temperature=0.7).model_dump(),
                         samples=samples, max_pixels=[448 * 448, 1024 * 1024])
    views = build_views(flip=True, max_pixels=cfg.max_pixels, templates=cfg.templates, option_orders=2)
    items = [{"id": p.name, "image_path": p.name, "image": str(p), "task": "track1", "format": "single",
              "question": "Where is the subject?", "options": OPTIONS} for p in images]
    async with VLMClient(cfg.model_copy(update={"max_image_pixels": max(cfg.max_pixels)})) as client:
        context = UnderstandContext(Assessor(cfg, client), views, VoteSettings.from_config(cfg))
        start = time.perf_counter()
        outcomes = await run_items(items, context, checkpoint_dir=workdir, run_fingerprint=fingerprint(cfg, views),
                                   concurrency=concurrency)
        elapsed = time.perf_counter() - start
        assert all(o.status == "finished" for o in outcomes), [o.state.get("error") for o in outcomes]
        return len(items) / elapsed, client.stats.requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--image-side", type=int, default=512)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_until_stdin_closes(fn=answer)
        return
    with server_in_child(__file__, cwd=ROOT, wait=10) as server:
        base_url = server.base_url
        rng = np.random.default_rng(0)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            paths = []
            for i in range(args.images):
                side = args.image_side
                path = folder / f"img_{i:03d}.jpg"
                ramp = np.linspace(0, 200, side * 3 // 2)[None, :, None] + np.linspace(0, 50, side)[:, None, None]
                noise = rng.integers(0, 6, (side, side * 3 // 2, 3))
                Image.fromarray((ramp + noise + i).clip(0, 255).astype(np.uint8)).save(path, quality=90)
                paths.append(path)
            print(f"fake server {base_url}; {args.images} images ({args.image_side}x{args.image_side * 3 // 2}), "
                  f"4 views x K={args.samples}")
            for concurrency in (1, 4, 16):
                workdir = folder / f"c{concurrency}"
                rate, requests = asyncio.run(run(server, paths, args.samples, concurrency, workdir))
                print(f"items in flight {concurrency:>2}: {rate:6.2f} images/s   {requests / args.images:.2f} "
                      f"requests/image ({args.samples * 4} samples/image)")


if __name__ == "__main__":
    main()
