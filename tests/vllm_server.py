"""A real vLLM CPU server for the `-m vllm` tier: tiny random Qwen2-VL, 127.0.0.1, free port, own process group.

The server runs from the venv `scripts/setup_vllm.sh` creates (`PORTRAITCRAFT_VLLM_VENV`, default
`~/.cache/portraitcraft/vllm-venv`). Without that venv the tests FAIL with a pointer to the script, unless
`PORTRAITCRAFT_SKIP_VLLM=1` says to skip the tier. The whole process group is killed at teardown, on
Ctrl-C, on a failed start, at interpreter exit, and by a watchdog process when pytest itself is killed.

    pytest_plugins = ["vllm_server"]  # in a test module

    def test_x(vllm_server):
        cfg = vllm_server.endpoint(max_retries=1)
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from portraitcraft.config import EndpointConfig

ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = ROOT / "scripts" / "build_tiny_qwen2vl.py"
SERVED_MODEL = "tiny-qwen2vl"
MAX_IMAGES = 4
MAX_LOGPROBS = 20
START_TIMEOUT = 600.0  # seconds; a cold start takes 40-60 s on an idle box, over 240 s once on a busy 2-core one
DEFAULT_VENV = Path.home() / ".cache" / "portraitcraft" / "vllm-venv"

# A separate watchdog (own session, deaf to Ctrl-C): when pytest dies without teardown (SIGKILL, SIGTERM),
# it is re-parented, notices, and SIGKILLs the server's process group. Normal teardown terminates it.
WATCHDOG = """
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
parent, group = int(sys.argv[1]), int(sys.argv[2])
while os.getppid() == parent:
    time.sleep(1.0)
try:
    os.killpg(group, signal.SIGKILL)
except ProcessLookupError:
    pass
"""


@dataclass(frozen=True)
class VLLMServer:
    """A running server. `base_url` ends in /v1; `model` is the served model name."""

    base_url: str
    model: str
    model_dir: Path
    log_path: Path
    pid: int
    start_seconds: float
    max_images: int = MAX_IMAGES

    def endpoint(self, **overrides: Any) -> EndpointConfig:
        """An EndpointConfig (kind="vllm") aimed at this server; `overrides` set any field.

        Example: `server.endpoint(max_retries=0, temperature=1.0)`.
        """
        fields: dict[str, Any] = {
            "base_url": self.base_url,
            "model": self.model,
            "kind": "vllm",
            "timeout": 60.0,
            "max_retries": 2,
            "cache": False,
            "max_image_pixels": 224 * 224,
        }
        fields.update(overrides)
        return EndpointConfig(**fields)

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a Prometheus series from GET /metrics over the samples matching `labels`.

        Example: `server.metric("http_requests_total", handler="/v1/chat/completions", status="2xx")`.
        """
        with urllib.request.urlopen(self.base_url.removesuffix("/v1") + "/metrics", timeout=10) as reply:
            text = reply.read().decode()
        return sum(value for key, have, value in parse_metrics(text) if key == name and labels.items() <= have.items())


_SAMPLE = re.compile(r'^(?P<name>[A-Za-z_:][\w:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) for each sample line of a Prometheus text exposition."""
    samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = dict(_LABEL.findall(match["labels"] or ""))
            samples.append((match["name"], labels, float(match["value"])))
    return samples


def steady(read: Callable[[], float], pause: float = 0.2, deadline: float = 10.0) -> float:
    """A server counter once two reads `pause` apart agree (the counters update just after a reply is
    sent, and earlier tests' requests must have been counted)."""
    stop = time.monotonic() + deadline
    value = read()
    while time.monotonic() < stop:
        time.sleep(pause)
        if (again := read()) == value:
            break
        value = again
    return value


def settled(read: Callable[[], float], target: float, deadline: float = 10.0) -> float:
    """Poll a server counter until it reaches `target` (metrics update just after the reply is sent)."""
    stop = time.monotonic() + deadline
    value = read()
    while value < target and time.monotonic() < stop:
        time.sleep(0.05)
        value = read()
    return value


def vllm_venv() -> Path:
    return Path(os.environ.get("PORTRAITCRAFT_VLLM_VENV") or DEFAULT_VENV).expanduser()


def log_tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a server log, without vLLM's route listing."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join([line for line in text if "Route: /" not in line][-lines:])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_command(python: Path, model_dir: Path, port: int) -> list[str]:
    """The verified CPU command line (docs/stack-notes.md), with a short served model name."""
    return [
        str(python), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model_dir),
        "--served-model-name", SERVED_MODEL,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--dtype", "bfloat16",
        "--max-model-len", "2048",
        "--max-num-seqs", "8",
        "--max-logprobs", str(MAX_LOGPROBS),
        "--generation-config", "vllm",
        "--limit-mm-per-prompt", json.dumps({"image": MAX_IMAGES}),
        "--enforce-eager",
        "--distributed-executor-backend", "uni",
        "--structured-outputs-config.backend", "guidance",
    ]  # fmt: skip


def server_env(home: Path) -> dict[str, str]:
    """The parent's environment minus project settings, plus vLLM's CPU/offline knobs and private caches."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTRAITCRAFT_") and k != "PYTHONPATH"}
    env.update(
        VLLM_CPU_KVCACHE_SPACE="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        VLLM_NO_USAGE_STATS="1",
        PYTHONUNBUFFERED="1",
        HF_HOME=str(home / "hf_home"),
        VLLM_CACHE_ROOT=str(home / "vllm_cache"),
    )
    return env


def kill_group(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM the server's process group, give the leader `grace` seconds, then SIGKILL the group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers (engine core, workers) if any
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10.0)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_ready(proc: subprocess.Popen[bytes], health_url: str, log_path: Path, deadline: float) -> None:
    """Poll GET /health until 200; fail with the log tail when the server exits or the deadline passes."""
    started = time.monotonic()
    while time.monotonic() - started < deadline:
        if proc.poll() is not None:
            pytest.fail(f"vLLM exited with code {proc.returncode} while starting; log tail:\n{log_tail(log_path)}")
        if _healthy(health_url):
            return
        time.sleep(1.0)
    pytest.fail(f"vLLM was not healthy after {deadline:.0f} s; log tail:\n{log_tail(log_path)}")


def build_model(out_dir: Path) -> Path:
    """Run scripts/build_tiny_qwen2vl.py with the project interpreter (it has transformers)."""
    done = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), str(out_dir)], capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        pytest.fail(f"building the tiny Qwen2-VL failed:\n{done.stderr[-3000:]}")
    return out_dir


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServer]:
    """Start one vLLM server for the session; always kill its process group afterwards."""
    if os.environ.get("PORTRAITCRAFT_SKIP_VLLM") == "1":
        pytest.skip("PORTRAITCRAFT_SKIP_VLLM=1: the vLLM tier is switched off")
    venv = vllm_venv()
    python = venv / "bin" / "python"
    if not python.exists():
        pytest.fail(
            f"no vLLM venv at {venv}: run scripts/setup_vllm.sh (or set PORTRAITCRAFT_VLLM_VENV to an "
            "existing one; PORTRAITCRAFT_SKIP_VLLM=1 skips this tier)",
            pytrace=False,
        )
    home = tmp_path_factory.mktemp("vllm")
    model_dir = build_model(home / "tiny-qwen2vl")
    port = free_port()
    log_path = home / "server.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            server_command(python, model_dir, port),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=server_env(home),
            cwd=home,
            start_new_session=True,
        )
    atexit.register(kill_group, proc, 5.0)
    watchdog: subprocess.Popen[bytes] | None = None
    try:
        watchdog = subprocess.Popen(
            [sys.executable, "-c", WATCHDOG, str(os.getpid()), str(proc.pid)],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_ready(proc, f"http://127.0.0.1:{port}/health", log_path, START_TIMEOUT)
        yield VLLMServer(
            base_url=f"http://127.0.0.1:{port}/v1",
            model=SERVED_MODEL,
            model_dir=model_dir,
            log_path=log_path,
            pid=proc.pid,
            start_seconds=time.monotonic() - started,
        )
    finally:
        kill_group(proc)
        atexit.unregister(kill_group)
        if watchdog is not None:
            watchdog.kill()
            watchdog.wait()
