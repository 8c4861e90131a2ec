"""LangGraph Studio's server runs our graphs: `langgraph dev` (langgraph-cli[inmem]) on 127.0.0.1, driven with
langgraph_sdk: both graphs answer their schemas, and one generate item on a real photo runs with the offline
profile to status done. The server is stopped by its pid."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("langgraph_api")
pytest.importorskip("mediapipe")
langgraph_sdk = pytest.importorskip("langgraph_sdk")
skimage_data = pytest.importorskip("skimage.data")
pytest_plugins = ["diffusion_fixtures"]

ROOT = Path(__file__).resolve().parent.parent
OFFLINE_ENV = {"LANGSMITH_TRACING": "false", "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGGRAPH_NO_VERSION_CHECK": "true",
               "LANGSMITH_API_KEY": "", "LANGCHAIN_TRACING_V2": "false"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`langgraph dev` serving langgraph.json; yields its URL and stops it by pid."""
    cli = Path(sys.executable).with_name("langgraph")
    if not cli.is_file():
        pytest.skip("the langgraph CLI (langgraph-cli[inmem]) is not installed")
    port, work = _free_port(), tmp_path_factory.mktemp("studio")
    log = (work / "server.log").open("wb")
    proc = subprocess.Popen(
        [str(cli), "dev", "--no-browser", "--no-reload", "--allow-blocking", "--host", "127.0.0.1",
         "--port", str(port), "--config", str(ROOT / "langgraph.json")],
        cwd=ROOT, env={**os.environ, **OFFLINE_ENV}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ok", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"langgraph dev did not start:\n{(work / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


async def _assistants(client: object) -> dict[str, str]:
    found = await client.assistants.search()  # type: ignore[attr-defined]
    return {a["graph_id"]: a["assistant_id"] for a in found}


def test_both_graphs_answer_their_schemas(studio: str) -> None:
    async def go() -> dict[str, dict]:
        client = langgraph_sdk.get_client(url=studio)
        ids = await _assistants(client)
        return {name: await client.assistants.get_schemas(ids[name]) for name in ("generate", "understand")}

    schemas = asyncio.run(go())
    generate, understand = schemas["generate"], schemas["understand"]
    assert set(generate["input_schema"]["properties"]) == {"item"}
    assert {"status", "passed", "rounds", "final_image"} <= set(generate["output_schema"]["properties"])
    assert {"config", "run_dir", "init_images", "strategy", "max_rounds"} == set(
        generate["context_schema"]["properties"])
    assert set(understand["input_schema"]["properties"]) == {"item"}
    assert {"status", "levels", "total_score", "answer"} <= set(understand["output_schema"]["properties"])
    assert {"config", "run_dir", "images", "calibration"} == set(understand["context_schema"]["properties"])


def test_one_generate_item_on_a_real_photo_runs_to_done(studio: str, tiny_zimage: Path, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(skimage_data.camera()).convert("RGB").save(photos / "camera.png")  # he faces right, square
    offline = (ROOT / "configs" / "offline.toml").read_text(encoding="utf-8")
    config = tmp_path / "offline.toml"
    # the offline profile as shipped (its 128 px drafting canvas: an init photo is planned at its own scale)
    config.write_text(offline.replace('"tiny:zimage"', f'"{tiny_zimage.as_posix()}"'))
    # a mirrored crop fixes it (offline reframing is crop-only: no synthetic fill)
    item = {"image_path": "camera.png",
            "content_description": "A photographer in a dark coat with a camera on a tripod.",
            "composition_analysis": "The photographer faces left, standing in the centre of a vertical frame."}
    context = {"config": str(config), "run_dir": str(tmp_path / "run"), "init_images": str(photos)}

    async def go() -> tuple[list[dict], dict, dict]:
        client = langgraph_sdk.get_client(url=studio)
        generate = (await _assistants(client))["generate"]
        thread = await client.threads.create()
        events: list[dict] = []
        final: dict = {}
        async for chunk in client.runs.stream(thread["thread_id"], generate, input={"item": item}, context=context,
                                              stream_mode=["custom", "values"]):
            if chunk.event == "custom":
                events.append(chunk.data)
            elif chunk.event == "values":
                final = chunk.data
            assert chunk.event != "error", chunk.data
        bad = await client.runs.wait(None, generate, input={"item": {"image_path": "x.png"}}, context=context)
        return events, final, bad

    events, final, bad = asyncio.run(go())
    assert final["status"] == "done" and final["passed"] is True and final["rounds"] >= 1, final
    assert Path(final["final_image"]).is_file() and Path(final["final_image"]).parent.name == "submission"
    with Image.open(final["final_image"]) as image:
        assert image.height > image.width  # reframed to the vertical frame the description asks for
    assert events[0]["event"] == "start" and events[-1]["event"] == "finalize"
    assert (tmp_path / "run" / "results.jsonl").is_file()
    assert bad["status"] == "failed" and "content" in bad["error"]
