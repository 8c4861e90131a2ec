"""`portraitcraft doctor`: what is installed, what the GPU offers, which weights are cached, where the cache root is,
which endpoints answer.

Every line carries a hint to fix it. Works without torch (reports the diffusion extra as missing).
"""

from __future__ import annotations

import os
import platform
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import typer
from rich.markup import escape
from rich.table import Table

from portraitcraft.cli.common import EXIT_SOME_FAILED, ConfigOption, SetOption, config_from_cli, console, print_json
from portraitcraft.config import DiffusionConfig, EndpointConfig, PortraitcraftConfig, mask_secrets
from portraitcraft.paths import cache_root, cache_source
from portraitcraft.runs import package_versions
from portraitcraft.urls import join_url

Status = Literal["ok", "warn", "fail"]
EXTRAS = {
    "diffusion": ("torch", "diffusers", "transformers", "accelerate", "peft"),
    "pose": ("rtmlib", "onnxruntime"),
}


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    hint: str = ""


def check_python() -> Check:
    ok = sys.version_info >= (3, 11)
    return Check("python", "ok" if ok else "fail", f"{platform.python_version()} ({sys.executable})",
                 "" if ok else "portraitcraft needs Python >= 3.11")


def check_packages() -> list[Check]:
    versions = package_versions()
    out = [Check("package portraitcraft", "ok", versions.get("portraitcraft") or "not installed (running from source)")]
    for extra, names in EXTRAS.items():
        missing = [n for n in names if versions.get(n) is None]
        detail = ", ".join(f"{n} {versions.get(n) or 'missing'}" for n in names)
        out.append(Check(f"extra [{extra}]", "warn" if missing else "ok", detail,
                         f"pip install 'portraitcraft[{extra}]'" + (" (with torch==2.13.0 on CPU-only boxes)"
                                                                     if extra == "diffusion" else "")
                         if missing else ""))
    return out


def check_gpu() -> Check:
    try:
        import torch
    except ImportError:
        return Check("gpu", "warn", "torch is not installed: local diffusion backends are unavailable",
                     "install the diffusion extra, or use backend = 'remote'")
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        free, total = torch.cuda.mem_get_info(0)
        return Check("gpu", "ok", f"{torch.cuda.device_count()} x {props.name}, "
                     f"{free / 2**30:.1f} of {total / 2**30:.1f} GiB free (torch {torch.__version__})")
    return Check("gpu", "warn", f"torch {torch.__version__} sees no CUDA GPU",
                 "generation on CPU only works with the tiny test models; set generator.device = 'cpu' to try")


def _model_refs(cfg: PortraitcraftConfig) -> list[tuple[str, str]]:
    refs: list[tuple[str, str]] = []

    def add(section: str, d: DiffusionConfig | None) -> None:
        if d is None or d.backend == "remote":
            return
        refs.append((f"{section}.model", d.model))
        if d.controlnet:
            refs.append((f"{section}.controlnet", d.controlnet))
        refs.extend((f"{section}.loras[{i}]", lora.path) for i, lora in enumerate(d.loras))

    add("generator", cfg.generator)
    add("generator.refiner", cfg.generator.refiner)
    add("editor", cfg.editor)
    return refs


def check_weights(cfg: PortraitcraftConfig) -> list[Check]:
    out = []
    for key, ref in _model_refs(cfg):
        if ref.startswith("tiny:"):  # tools/diffusion/tiny.py: built into the cache root on first use
            out.append(Check(f"weights {key}", "ok", f"{ref}: the tiny random model, built on first use into "
                             "<cache root>/tiny-models (or $PORTRAITCRAFT_TINY_MODELS)"))
            continue
        path = Path(ref).expanduser()
        if path.exists():
            out.append(Check(f"weights {key}", "ok", f"local {path}"))
            continue
        if ref.count("/") != 1:
            out.append(Check(f"weights {key}", "fail", f"{ref} is neither a local path nor a hub id",
                             "set a local folder or an 'org/name' model id"))
            continue
        try:
            from huggingface_hub import snapshot_download

            local = snapshot_download(ref, local_files_only=True)
            out.append(Check(f"weights {key}", "ok", f"{ref} cached at {local}"))
        except Exception:
            home = os.environ.get("HF_HOME", "~/.cache/huggingface")
            out.append(Check(f"weights {key}", "warn", f"{ref} is not in the Hugging Face cache ({home})",
                             f"hf download {ref}   (or point {key} at a local folder)"))
    return out


def check_cache(cfg: PortraitcraftConfig) -> Check:
    """Where the cache root is (portraitcraft/paths.py), which rule chose it, and whether it is writable."""
    root = cache_root(cfg.run.cache_dir)
    detail = f"{root} (from {cache_source(cfg.run.cache_dir)}): VLM replies in vlm/, tiny models in tiny-models/"
    existing = next((p for p in (root, *root.parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        return Check("cache", "warn", f"{detail}; not writable",
                     "set run.cache_dir or $PORTRAITCRAFT_CACHE_DIR to a writable folder")
    return Check("cache", "ok", detail)


def _get_models(ep: EndpointConfig, timeout: float) -> tuple[int | None, list[str], str]:
    """GET <base_url>/models through httpx, the HTTP library the VLM client uses, so a URL the client can
    reach (credentials in it, a query key) is judged the same way here."""
    import httpx

    url = join_url(ep.base_url, "models")
    try:
        resp = httpx.get(url, headers={"Authorization": f"Bearer {ep.api_key()}"}, timeout=timeout)
    except (httpx.HTTPError, OSError, ValueError) as exc:
        return None, [], f"{type(exc).__name__}: {exc}"
    if resp.status_code != 200:
        return resp.status_code, [], resp.reason_phrase
    try:
        body = resp.json()
        models = [m.get("id", "") for m in body.get("data", []) if isinstance(m, dict)]
    except (ValueError, AttributeError) as exc:
        return None, [], f"not an OpenAI-compatible /models reply ({exc})"
    return 200, models, ""


def check_endpoint(names: list[str], ep: EndpointConfig, timeout: float = 3.0) -> Check:
    label = f"endpoint {'/'.join(names)}"
    shown = mask_secrets(ep.base_url)
    status, models, reason = _get_models(ep, timeout)
    reason = mask_secrets(reason)
    if status is None:
        return Check(label, "fail", f"{shown} does not answer ({reason})",
                     f"start a server there (e.g. vLLM: python -m vllm.entrypoints.openai.api_server --model "
                     f"{ep.model} --port 8000) or fix {names[0]}.base_url")
    if status in (401, 403):
        key_state = "set" if os.environ.get(ep.api_key_env) else "NOT set"
        return Check(label, "fail", f"{shown} refused the key (HTTP {status}); ${ep.api_key_env} is {key_state}",
                     f"export {ep.api_key_env}=... with a valid key")
    if status != 200:
        return Check(label, "fail", f"{shown}/models answered HTTP {status} ({reason})",
                     "check that base_url ends in /v1 and points at an OpenAI-compatible server")
    if ep.model in models:
        return Check(label, "ok", f"{shown} serves {ep.model}")
    return Check(label, "fail", f"{shown} answers but does not serve {ep.model}; it serves: "
                 f"{', '.join(models[:8]) or 'nothing'}", f"set {names[0]}.model to one of those")


def check_endpoints(cfg: PortraitcraftConfig, timeout: float = 3.0) -> list[Check]:
    groups: dict[tuple[str, str, str], list[str]] = {}
    sections: dict[tuple[str, str, str], EndpointConfig] = {}
    for name in ("critic", "judge", "assessor", "miner"):
        ep: EndpointConfig = getattr(cfg, name)
        key = (ep.base_url, ep.model, ep.api_key_env)
        groups.setdefault(key, []).append(name)
        sections[key] = ep
    with ThreadPoolExecutor(max_workers=max(1, len(groups))) as pool:
        futures = [pool.submit(check_endpoint, names, sections[key], timeout) for key, names in groups.items()]
        return [f.result() for f in futures]


def check_ray(cfg: PortraitcraftConfig) -> Check:
    """With `[run] executor = "ray"`: the Ray cluster's nodes and GPUs (joined and left), or what a local Ray
    on this box will have."""
    try:
        from portraitcraft.tools.ray_pool import cluster_summary
    except ImportError as exc:
        return Check("ray", "fail", f"the Ray executor is not available ({exc})", "pip install 'portraitcraft[ray]'")
    try:
        info = cluster_summary(cfg.ray)
    except Exception as exc:  # Ray missing, or no cluster at that address
        return Check("ray", "fail", f"Ray cluster at {cfg.ray.address or 'a local Ray'}: {exc}",
                     "start one (`ray start --head`, then `ray start --address=HEAD:6379` on each GPU node) or fix "
                     "ray.address; pip install 'portraitcraft[ray]' if Ray is missing")
    where = "local Ray (started on 127.0.0.1 by the run)" if info["local"] else f"cluster {cfg.ray.address}"
    nodes = ", ".join(f"{n['ip']}: {n['gpus']:g} GPU" for n in info["per_node"])
    detail = (f"{where}: {info['nodes']} node(s), {info['gpus']:g} GPU(s) -> {info['actors']} actor(s) of "
              f"{cfg.ray.gpus_per_actor:g} GPU ({nodes})")
    if info["actors"] < 1:
        return Check("ray", "fail", detail, "no GPU to place an actor on: set [ray] actors (and gpus_per_actor = 0 "
                     "for CPU actors), or join a cluster with GPUs")
    return Check("ray", "ok", detail)


def run_checks(cfg: PortraitcraftConfig, *, endpoints: bool = True, timeout: float = 3.0) -> list[Check]:
    checks = [check_python(), *check_packages(), check_gpu(), *check_weights(cfg), check_cache(cfg)]
    if cfg.run.executor == "ray":
        checks.append(check_ray(cfg))
    if endpoints:
        checks.extend(check_endpoints(cfg, timeout))
    return checks


def doctor(
    config: Path | None = ConfigOption,
    sets: list[str] | None = SetOption,
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
    no_endpoints: bool = typer.Option(False, "--no-endpoints", help="Skip the network checks."),
    timeout: float = typer.Option(3.0, "--timeout", help="Seconds to wait for each endpoint."),
    strict: bool = typer.Option(False, "--strict", help=f"Exit {EXIT_SOME_FAILED} when any check fails."),
) -> None:
    """Report Python/package versions, the GPU, cached weights, the cache root and endpoint health, each with a
    fix hint."""
    cfg = config_from_cli(config, sets)
    checks = run_checks(cfg, endpoints=not no_endpoints, timeout=timeout)
    failed = [c for c in checks if c.status == "fail"]
    if as_json:
        print_json({"ok": not failed, "checks": [asdict(c) for c in checks]})
    else:
        table = Table(title="portraitcraft doctor")
        for col in ("check", "status", "detail", "hint"):
            table.add_column(col, overflow="fold")
        colour = {"ok": "green", "warn": "yellow", "fail": "red"}
        for c in checks:
            table.add_row(escape(c.name), f"[{colour[c.status]}]{c.status}[/]", escape(c.detail), escape(c.hint))
        console.print(table)
    if strict and failed:
        raise typer.Exit(EXIT_SOME_FAILED)
