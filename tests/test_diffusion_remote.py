"""The remote image backend against a real local HTTP server (tests/fake_image_api.py); no torch needed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image

from portraitcraft.config import EditorConfig, GeneratorConfig
from portraitcraft.errors import InputError
from portraitcraft.tools.diffusion import DiffusionError, GenParams, build_editor, build_generator, meta_of
from portraitcraft.tools.diffusion.remote import RemoteImageBackend

if TYPE_CHECKING:
    from fake_image_api import FakeImageAPI

ROOT = Path(__file__).resolve().parent.parent
pytest_plugins = ["fake_image_api"]  # the fake_image_api fixture


def test_generate_returns_the_asked_size_with_metadata(fake_image_api: FakeImageAPI) -> None:
    backend = RemoteImageBackend(fake_image_api.config())
    image = backend.generate("a woman on the left third", 64, 48, seed=5)
    assert image.size == (64, 48)
    assert image.getpixel((10, 10)) == fake_image_api.prompt_colour("a woman on the left third")
    meta = meta_of(image)
    assert meta is not None
    assert (meta.backend, meta.model, meta.seed, meta.width, meta.height) == ("remote", "fake-image-1", 5, 64, 48)
    (req,) = fake_image_api.requests
    assert req.body["size"] == "64x48" and req.body["model"] == "fake-image-1" and req.body["n"] == 1
    assert "seed" not in req.body


def test_server_size_is_sent_and_answer_resized(fake_image_api: FakeImageAPI) -> None:
    backend = RemoteImageBackend(fake_image_api.config(remote_size="auto", send_seed=True, extra={"quality": "low"}))
    image = backend.generate("a portrait", 32, 48, seed=9)
    assert image.size == (32, 48)
    assert meta_of(image).extra["returned_size"] == [96, 64]
    body = fake_image_api.requests[0].body
    assert body["size"] == "auto" and body["seed"] == 9 and body["quality"] == "low"


def test_a_500_is_retried_then_succeeds(fake_image_api: FakeImageAPI) -> None:
    fake_image_api.script.fail(500)
    image = RemoteImageBackend(fake_image_api.config()).generate("a portrait", 32, 32, seed=1)
    assert image.size == (32, 32)
    assert [r.outcome for r in fake_image_api.requests] == [500, 200]


def test_429_and_a_timeout_are_retried(fake_image_api: FakeImageAPI) -> None:
    fake_image_api.script.fail(429).hang(3.0)
    backend = RemoteImageBackend(fake_image_api.config(timeout=0.5, max_retries=3))
    image = backend.generate("a portrait", 32, 32, seed=1)
    assert image.size == (32, 32)
    assert [r.outcome for r in fake_image_api.requests] == [429, "hang", 200]


def test_a_400_is_not_retried_and_the_error_names_the_model(fake_image_api: FakeImageAPI) -> None:
    fake_image_api.script.fail(400)
    with pytest.raises(DiffusionError, match=r"fake-image-1.*HTTP 400"):
        RemoteImageBackend(fake_image_api.config(max_retries=4)).generate("a portrait", 32, 32, seed=1)
    assert [r.outcome for r in fake_image_api.requests] == [400]


def test_retries_stop_after_max_retries(fake_image_api: FakeImageAPI) -> None:
    fake_image_api.script.fail(503, times=5)
    with pytest.raises(DiffusionError, match="HTTP 503"):
        RemoteImageBackend(fake_image_api.config(max_retries=2)).generate("a portrait", 32, 32, seed=1)
    assert [r.outcome for r in fake_image_api.requests] == [503, 503, 503]


def test_key_comes_from_the_env_var_and_never_reaches_the_error(
    fake_image_api: FakeImageAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_image_api.script.api_key = "sk-right"
    monkeypatch.setenv("TEACHER_KEY", "sk-right")
    backend = RemoteImageBackend(fake_image_api.config(api_key_env="TEACHER_KEY"))
    assert backend.generate("a portrait", 32, 32, seed=1).size == (32, 32)
    assert fake_image_api.requests[-1].bearer == "sk-right"
    monkeypatch.setenv("OTHER_KEY", "sk-wrong-secret")
    with pytest.raises(DiffusionError, match="HTTP 401") as info:
        RemoteImageBackend(fake_image_api.config(api_key_env="OTHER_KEY")).generate("a portrait", 32, 32, seed=1)
    assert "sk-wrong-secret" not in str(info.value) and "$OTHER_KEY" in str(info.value)
    assert [r.outcome for r in fake_image_api.requests] == [200, 401]


def test_edit_sends_the_image_and_keeps_its_size(fake_image_api: FakeImageAPI) -> None:
    source = Image.new("RGB", (48, 32), (10, 200, 30))
    editor = build_editor(EditorConfig(**fake_image_api.config().model_dump()))
    edited = editor.edit(source, "turn the head left", seed=3)
    assert edited.size == (48, 32)
    assert edited.getpixel((5, 5)) == (245, 55, 225)  # the fake API inverts
    meta = meta_of(edited)
    assert meta.instruction == "turn the head left" and meta.source_size == (48, 32)
    (req,) = fake_image_api.requests
    assert req.path == "/v1/images/edits" and req.image_sizes == [(48, 32)] and req.body["size"] == "48x32"


def test_edit_with_reference_images_sends_all_of_them(fake_image_api: FakeImageAPI) -> None:
    source = Image.new("RGB", (32, 32), "white")
    ref = Image.new("RGB", (16, 24), "black")
    RemoteImageBackend(fake_image_api.config()).edit(source, "match the pose", 1, GenParams(reference_images=[ref]))
    assert fake_image_api.requests[0].image_sizes == [(32, 32), (16, 24)]


async def test_async_generate_and_edit_retry_the_same_way(fake_image_api: FakeImageAPI) -> None:
    fake_image_api.script.fail(502)
    backend = RemoteImageBackend(fake_image_api.config())
    image = await backend.agenerate("a portrait", 32, 32, seed=1)
    edited = await backend.aedit(image, "brighter", seed=1)
    assert edited.size == (32, 32)
    assert [r.outcome for r in fake_image_api.requests] == [502, 200, 200]
    fake_image_api.script.fail(404)
    with pytest.raises(DiffusionError, match="HTTP 404"):
        await backend.agenerate("a portrait", 32, 32, seed=1)


def test_unreachable_server_is_a_clear_error_without_url_credentials() -> None:
    cfg = GeneratorConfig(backend="remote", model="m", base_url="http://user:hunter2@127.0.0.1:9/v1",
                          max_retries=1, retry_backoff=0.0, timeout=2.0)
    with pytest.raises(DiffusionError, match=r"gave up after 2 attempt\(s\): connection failed") as info:
        build_generator(cfg).generate("a portrait", 32, 32, seed=1)
    assert "hunter2" not in str(info.value)


def test_bad_input_is_rejected_before_any_request(fake_image_api: FakeImageAPI) -> None:
    backend = RemoteImageBackend(fake_image_api.config())
    with pytest.raises(InputError, match="prompt is empty"):
        backend.generate("  ", 32, 32, seed=1)
    with pytest.raises(InputError, match="0x32"):
        backend.generate("a portrait", 0, 32, seed=1)
    assert fake_image_api.requests == []


def test_remote_path_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from portraitcraft.config import GeneratorConfig, EditorConfig\n"
        "from portraitcraft.tools.diffusion import build_generator, build_editor\n"
        "import portraitcraft.tools.gpu\n"
        "build_generator(GeneratorConfig(backend='remote', model='m'))\n"
        "build_editor(EditorConfig(backend='remote', model='m'))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'diffusers' not in sys.modules, 'diffusers was imported'\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
