"""The trained assessor adapter served by the real vLLM CPU server (`--enable-lora --lora-modules assessor=DIR`):
`understand`'s assessor asks the model `assessor` and gets schema-valid answers, and the adapter really changes
what the server computes (its logprobs differ from the base model's on the same request)."""

from __future__ import annotations

import asyncio
import atexit
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.vllm
pytest.importorskip("trl")
pytest_plugins = ["assessor_fixtures"]

from assessor_helpers import TINY_PIXELS, tiny_overrides  # noqa: E402
from vllm_server import (  # noqa: E402
    SERVED_MODEL,
    START_TIMEOUT,
    free_port,
    kill_group,
    server_command,
    server_env,
    vllm_venv,
    wait_ready,
)

from portraitcraft.agents.assessor import Assessor  # noqa: E402
from portraitcraft.agents.assessor_sft import base_view  # noqa: E402
from portraitcraft.config import AssessorConfig, load_config  # noqa: E402
from portraitcraft.schemas import ATTRIBUTES  # noqa: E402
from portraitcraft.tools.images import to_data_url  # noqa: E402
from portraitcraft.tools.vlm import VLMClient  # noqa: E402
from portraitcraft.train.assessor import SERVED_NAME, serve_command, train_assessor  # noqa: E402


@dataclass(frozen=True)
class LoraServer:
    base_url: str
    adapter: Path
    image: Path
    pid: int


@pytest.fixture(scope="module")
def lora_server(tiny_qwen2vl, assessor_records, tmp_path_factory) -> Iterator[LoraServer]:
    """Train a 3-step adapter on the tiny Qwen2-VL, then serve base + adapter; the process group is killed after."""
    import os

    if os.environ.get("PORTRAITCRAFT_SKIP_VLLM") == "1":
        pytest.skip("PORTRAITCRAFT_SKIP_VLLM=1: the vLLM tier is switched off")
    python = vllm_venv() / "bin" / "python"
    if not python.exists():
        pytest.fail(f"no vLLM venv at {vllm_venv()}: run scripts/setup_vllm.sh", pytrace=False)
    rec, images = assessor_records
    home = tmp_path_factory.mktemp("assessor-vllm")
    result = train_assessor(rec, load_config(overrides=tiny_overrides()), home / "adapter", base=str(tiny_qwen2vl),
                            max_steps=3, image_roots=[images])
    # The command the summary prints, as the CPU server's flags (its `vllm` entry point is broken there).
    serve = serve_command(str(tiny_qwen2vl), result.out, 8).split()
    assert serve[:3] == ["vllm", "serve", str(tiny_qwen2vl)]
    port = free_port()
    log_path = home / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([*server_command(python, tiny_qwen2vl, port), *serve[3:]], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=server_env(home), cwd=home,
                                start_new_session=True)
    atexit.register(kill_group, proc, 5.0)
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}/health", log_path, START_TIMEOUT)
        yield LoraServer(f"http://127.0.0.1:{port}/v1", result.out, result.records.records[0].image, proc.pid)
    finally:
        kill_group(proc)
        atexit.unregister(kill_group)


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(f"{url}/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as reply:
        return json.load(reply)


def test_server_lists_the_adapter_under_its_name(lora_server) -> None:
    with urllib.request.urlopen(f"{lora_server.base_url}/models", timeout=30) as reply:
        models = {m["id"]: m for m in json.load(reply)["data"]}
    assert SERVED_NAME in models and SERVED_MODEL in models
    assert models[SERVED_NAME]["parent"] == SERVED_MODEL and models[SERVED_NAME]["root"] == str(lora_server.adapter)


def test_assessor_answers_through_the_adapter(lora_server) -> None:
    cfg = AssessorConfig(base_url=lora_server.base_url, model=SERVED_NAME, max_image_pixels=TINY_PIXELS,
                         temperature=0.7, samples=2, cache=False, timeout=120, max_retries=1)

    async def ask() -> dict:
        async with VLMClient(cfg) as client:
            return await Assessor(cfg, client).assess(lora_server.image, None, base_view(cfg))

    started = time.monotonic()
    record = asyncio.run(ask())
    assert record["error"] is None, record["error"]
    assert len(record["samples"]) == 2
    for sample in record["samples"]:
        assert "error" not in sample, sample
        assert list(sample["criteria"]) == list(ATTRIBUTES) and 0 <= sample["overall"] <= 100
    assert time.monotonic() - started < 300


def test_adapter_changes_what_the_server_computes(lora_server) -> None:
    url = to_data_url(lora_server.image, max_pixels=TINY_PIXELS)
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                             {"type": "text", "text": "Assess the composition."}]}]
    logprobs = {}
    for model in (SERVED_NAME, SERVED_MODEL):
        reply = _post(lora_server.base_url, {"model": model, "messages": messages, "max_tokens": 3, "temperature": 0,
                                             "logprobs": True, "top_logprobs": 5, "seed": 0})
        logprobs[model] = [t["logprob"] for t in reply["choices"][0]["logprobs"]["content"]]
    assert len(logprobs[SERVED_NAME]) == len(logprobs[SERVED_MODEL]) >= 1
    assert max(abs(a - b) for a, b in zip(logprobs[SERVED_NAME], logprobs[SERVED_MODEL], strict=True)) > 1e-3
