"""A key in a base URL's query (`?key=...`, as some hosted APIs take it): requests go to the right path with the
query kept, and the key never shows in `config show`, error messages, `doctor` or the `eval track2 --out` CSV."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fake_vlm import API_KEY_ENV, FakeVLMServer, endpoint_config
from PIL import Image
from pydantic import BaseModel
from typer.testing import CliRunner

from portraitcraft.cli import app
from portraitcraft.config import mask_secrets
from portraitcraft.tools.diffusion import DiffusionError
from portraitcraft.tools.diffusion.remote import RemoteImageBackend
from portraitcraft.tools.vlm import VLMClient, VLMTransportError
from portraitcraft.urls import join_url, mask_url_secrets, split_query

if TYPE_CHECKING:
    from fake_image_api import FakeImageAPI

pytest_plugins = ["fake_image_api"]
SECRET = "AIzaSySecret0123456789"


class Level(BaseModel):
    level: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_url_helpers() -> None:
    url = f"https://user:pw@host/v1beta/openai/?alt=json&key={SECRET}"
    assert mask_url_secrets(url) == "https://***@host/v1beta/openai/?alt=json&key=***"
    assert mask_url_secrets(f"GET https://h/v1?api_key={SECRET}&token={SECRET} failed") == (
        "GET https://h/v1?api_key=***&token=*** failed")
    assert mask_secrets({"base_url": url, "note": f"see https://h/x?sig=1&access_token={SECRET}"}) == {
        "base_url": "https://***@host/v1beta/openai/?alt=json&key=***",
        "note": "see https://h/x?sig=1&access_token=***"}
    assert split_query(url) == ("https://user:pw@host/v1beta/openai/", {"alt": "json", "key": SECRET})
    assert join_url(f"https://host/v1?key={SECRET}", "chat/completions") == (
        f"https://host/v1/chat/completions?key={SECRET}")


async def test_vlm_request_url_is_joined_before_the_query(fake_vlm: FakeVLMServer) -> None:
    """Before: `.../v1?key=.../chat/completions`, a request to /v1 with a mangled query."""
    fake_vlm.script.push({"level": 2})
    async with VLMClient(endpoint_config(fake_vlm, base_url=f"{fake_vlm.base_url}?key={SECRET}")) as vlm:
        assert (await vlm.ask("Rate.", schema=Level)).level == 2
        assert SECRET not in vlm.url
    [req] = fake_vlm.requests
    assert (req.path, req.query) == ("/v1/chat/completions", f"key={SECRET}")


async def test_vlm_errors_never_show_the_query_key() -> None:
    cfg = endpoint_config(FakeVLMServer(), base_url=f"http://127.0.0.1:{free_port()}/v1?key={SECRET}",
                          max_retries=1)
    async with VLMClient(cfg, _backoff_base=0.001) as vlm:
        with pytest.raises(VLMTransportError, match="connection failed") as info:
            await vlm.ask("Rate.", schema=Level)
    assert SECRET not in str(info.value)


def test_image_api_url_and_errors(fake_image_api: FakeImageAPI) -> None:
    backend = RemoteImageBackend(fake_image_api.config(base_url=f"{fake_image_api.base_url}?key={SECRET}"))
    assert backend.generate("a portrait", 32, 32, seed=1).size == (32, 32)
    [req] = fake_image_api.requests
    assert (req.path, req.query) == ("/v1/images/generations", f"key={SECRET}")
    fake_image_api.script.fail(400)
    with pytest.raises(DiffusionError, match="HTTP 400") as info:
        backend.generate("a portrait", 32, 32, seed=1)
    assert SECRET not in str(info.value) and "key=***" in str(info.value)


def test_config_show_doctor_and_the_track2_csv_mask_the_key(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1?key={SECRET}"
    runner = CliRunner()
    shown = runner.invoke(app, ["config", "show", "--set", f"judge.base_url={url}"])
    assert shown.exit_code == 0 and SECRET not in shown.output and "key=***" in shown.output
    doctor = runner.invoke(app, ["doctor", "--json", "--timeout", "1", "--set", f"judge.base_url={url}"])
    assert SECRET not in doctor.output and "key=***" in doctor.output

    (tmp_path / "images").mkdir()
    Image.new("RGB", (16, 16), "red").save(tmp_path / "images" / "a.png")
    items = tmp_path / "items.json"
    items.write_text(json.dumps([{"image_path": "a.png", "content_description": "a person",
                                  "composition_analysis": "centred"}]))
    out = tmp_path / "scores.csv"
    res = runner.invoke(app, ["eval", "track2", str(items), "--images", str(tmp_path / "images"), "--out", str(out),
                              "--no-progress", "--set", f"judge.base_url={url}", "--set", "judge.max_retries=0",
                              "--set", f"judge.api_key_env={API_KEY_ENV}"])
    assert res.exit_code == 3  # nothing scored: the endpoint is down
    assert "connection failed" in out.read_text()
    assert SECRET not in out.read_text() and SECRET not in res.output
