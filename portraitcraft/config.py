"""The one configuration object: TOML file < `PORTRAITCRAFT_<SECTION>__<KEY>` env vars < CLI flags.

Every key has a default, so a file sets only what it needs. API keys are never stored: endpoint sections
hold the NAME of the environment variable (`api_key_env`) and the key is read at call time.
"""

from __future__ import annotations

import os
import re
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from portraitcraft.errors import PortraitcraftError

ENV_PREFIX = "PORTRAITCRAFT_"
_SECRET_KEY = re.compile(r"(key|token|secret|password|passwd|authorization|auth|cookie)", re.I)


class ConfigError(PortraitcraftError, ValueError):
    """A configuration problem, worded for the user (names the key and the problem)."""

    exit_code = 2  # bad input, like DataError and InputError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EndpointConfig(_Section):
    """An OpenAI-compatible model endpoint (vLLM, a hosted API, Gemini's OpenAI-compatible URL)."""

    base_url: str = Field("http://127.0.0.1:8000/v1", description="OpenAI-compatible base URL, ending in /v1")
    model: str = Field("Qwen/Qwen3-VL-8B-Instruct", description="model name the server serves")
    api_key_env: str = Field("OPENAI_API_KEY", description="NAME of the env var holding the API key")
    kind: Literal["vllm", "openai", "plain"] = Field(
        "vllm",
        description="structured-output dialect: vllm (structured_outputs), openai (json_schema), plain (parse)",
    )
    timeout: Annotated[float, Field(gt=0)] = 120.0
    max_concurrency: Annotated[int, Field(ge=1, le=1024)] = 8
    max_retries: Annotated[int, Field(ge=0, le=20)] = 4
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.0
    max_tokens: Annotated[int, Field(ge=1)] = 1024
    max_image_pixels: Annotated[int, Field(ge=64 * 64)] = 1024 * 1024
    seed: int | None = 0
    cache: bool = True
    extra: dict[str, Any] = Field(default_factory=dict, description="passed as extra_body on every request")

    def api_key(self) -> str:
        """The key from the environment at call time; 'EMPTY' when unset (local vLLM needs none)."""
        return os.environ.get(self.api_key_env, "") or "EMPTY"


DiffusionBackend = Literal[
    "zimage", "zimage-turbo", "qwen-image", "qwen-image-edit", "qwen-image-edit-plus", "img2img", "remote"
]


class LoraConfig(_Section):
    """One LoRA adapter: `path` is a safetensors file, a local folder or a hub repo id."""

    path: str = Field(description="a safetensors file, a local folder or a hub repo id")
    weight: float = 1.0
    name: str = Field("", description="adapter name; empty = derived from the path")
    weight_name: str | None = Field(None, description="the file inside a folder / repo holding the weights")


class DiffusionConfig(_Section):
    """A diffusers backend (generator, editor or refiner), or a remote OpenAI-compatible image API.

    `backend` picks the pipeline family; `model` is a hub id or a local folder (a tiny offline model built by
    `python -m tools.diffusion.tiny build` works the same way). Sampling fields are the defaults of every
    call; a call's `GenParams` overrides them.
    """

    backend: DiffusionBackend = "zimage-turbo"
    model: str = Field("Tongyi-MAI/Z-Image-Turbo", description="hub model id or a local folder")
    revision: str | None = None
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    device: str = "cuda"
    offload: Literal["none", "model", "sequential"] = "none"
    attention_backend: str | None = Field(None, description='e.g. "native" or "flash" (needs flash-attn)')
    local_files_only: bool = False
    steps: Annotated[int, Field(ge=1, le=500)] = 9
    guidance_scale: Annotated[float, Field(ge=0)] = 0.0
    true_cfg_scale: Annotated[float, Field(ge=0)] = 4.0
    negative_prompt: str = " "
    strength: Annotated[float, Field(gt=0, le=1)] = 0.6
    max_sequence_length: Annotated[int, Field(ge=16)] = 512
    loras: list[LoraConfig] = Field(default_factory=list)
    fuse_loras: bool = Field(False, description="fuse the active LoRAs into the weights (faster calls)")
    controlnet: str | None = Field(None, description="pose ControlNet checkpoint (Z-Image Fun-Controlnet-Union)")
    controlnet_config: str | None = Field(
        None, description="config folder / repo id for a single-file ControlNet checkpoint (needed offline)"
    )
    controlnet_scale: float = 0.75
    edit_max_area: Annotated[int, Field(ge=64 * 64)] = Field(
        1024 * 1024, description="pixel area edit pipelines resize their input to (Qwen-Image-Edit: ~1 MP)"
    )
    # remote image API (backend = "remote")
    base_url: str = "https://api.openai.com/v1"
    api_key_env: str = "OPENAI_API_KEY"
    timeout: Annotated[float, Field(gt=0)] = 300.0
    max_retries: Annotated[int, Field(ge=0, le=20)] = 4
    retry_backoff: Annotated[float, Field(ge=0, le=600)] = Field(
        1.0, description="seconds before the first retry of a transient fault; doubles per attempt"
    )
    send_seed: bool = Field(False, description="send the seed to the remote API (servers that accept one)")
    remote_size: str | None = Field(
        None, description='size sent to the remote API ("auto", "1024x1536"); default the asked WxH; the '
        "answer is resized to the asked size"
    )
    extra: dict[str, Any] = Field(default_factory=dict, description="extra pipeline kwargs / remote extra_body")

    def api_key(self) -> str:
        """The remote API key from the environment at call time; 'EMPTY' when unset (local servers need none)."""
        return os.environ.get(self.api_key_env, "") or "EMPTY"


class GeneratorConfig(DiffusionConfig):
    """The text-to-image backend; also holds the GPU model pool settings shared by every local backend."""

    refiner: DiffusionConfig | None = Field(None, description="optional cascaded SDEdit refiner")
    refiner_strength: Annotated[float, Field(gt=0, le=1)] = 0.3
    pool_budget_gb: Annotated[float, Field(gt=0)] | None = Field(
        None, description="GPU memory the model pool may fill with pipelines (GiB); None = no limit"
    )
    pool_evict: Literal["cpu", "drop"] = Field(
        "cpu", description="what happens to the least recently used pipeline over budget: move to CPU, or drop"
    )


class EditorConfig(DiffusionConfig):
    backend: DiffusionBackend = "qwen-image-edit-plus"
    model: str = "Qwen/Qwen-Image-Edit-2509"
    steps: Annotated[int, Field(ge=1, le=500)] = 40


class CriticConfig(EndpointConfig):
    rules: list[str] = Field(default_factory=list, description="rule names to run; empty = every shipped rule")
    rules_dir: str | None = Field(None, description="a folder of extra rule prompts (*.md)")
    min_confidence: Annotated[float, Field(ge=0, le=1)] = 0.5


class JudgeConfig(EndpointConfig):
    mode: Literal["sampled", "logprob", "auto"] = "auto"
    samples: Annotated[int, Field(ge=1, le=64)] = 5
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.7
    rubric: str = Field("default", description="rubric name under prompts/judge/")


class AssessorConfig(EndpointConfig):
    samples: Annotated[int, Field(ge=1, le=64)] = 3
    flip: bool = True
    max_pixels: list[int] = Field(default_factory=lambda: [448 * 448, 1024 * 1024])
    permute_options: bool = True
    linear_prior: float = Field(0.0, ge=0, le=1, description="weight of overall = 0.86*sum - 8.92")
    # Track 1 understanding (agents/assessor.py, agents/assessor_vote.py, graphs/understand.py)
    temperature: Annotated[float, Field(ge=0, le=2)] = Field(
        0.7, description="sampling temperature of the K votes per view (0: one greedy answer per view)"
    )
    output: Literal["levels", "scores"] = Field(
        "scores", description="attributes answered as levels (Poor/Medium/Good) or as 0-10 scores"
    )
    templates: Annotated[list[str], Field(min_length=1)] = Field(
        default_factory=lambda: ["default"], description="prompt-template variants (prompts/understand/templates/)"
    )
    option_orders: Annotated[int, Field(ge=1, le=24)] = Field(
        2, description="distinct option orders rotated over the views when permute_options is on"
    )
    overall: Literal["mean", "trimmed_mean", "logprob"] = Field(
        "mean", description="overall score: mean / trimmed mean of the votes, or the logprob expected score"
    )
    trim: Annotated[float, Field(ge=0, lt=0.5)] = Field(0.2, description="fraction cut at EACH end (trimmed_mean)")
    level_mode: Literal["vote", "thresholds"] = Field(
        "thresholds", description="levels by majority vote, or averaged 0-10 scores cut by per-attribute thresholds"
    )
    vqa_unflipped_only: bool = Field(True, description="the VQA answer is voted from un-mirrored views only")
    explanations: bool = Field(False, description="ask for a short explanation before the scores")
    calibration: str | None = Field(None, description="calib.json from `portraitcraft understand calibrate`")
    geometry_hints: bool = Field(False, description="give measured subject geometry as context (needs tools.vision)")


class MinerConfig(EndpointConfig):
    enabled: bool = Field(False, description="ask this endpoint for discrepancies; off = geometry-only mining")
    sample_size: Annotated[int, Field(ge=1)] = 200
    max_modes: Annotated[int, Field(ge=1, le=64)] = 12


class PlannerConfig(_Section):
    """The planner: canvas policy, canvas size and prompt layout (agents/planner/)."""

    long_side: Annotated[int, Field(ge=64, le=4096)] = 1024
    multiple: Annotated[int, Field(ge=1, le=256)] = 16
    aspect_ratios: Annotated[list[Annotated[float, Field(gt=0.1, lt=10)]], Field(min_length=1)] = Field(
        default_factory=lambda: [9 / 16, 2 / 3, 3 / 4, 1.0, 4 / 3, 3 / 2, 16 / 9],
        description="canvas classes as width / height (1.0 is always added); a fitted policy keeps its own",
    )
    policy: str | None = Field(None, description="a fitted policy JSON (portraitcraft plan fit); unset = rule")
    spatial_first: bool = True
    trigger_word: str = Field("", description="LoRA trigger word put first in the prompt, e.g. AES_COMP")
    max_prompt_tokens: Annotated[int, Field(ge=16)] = 512
    seed_mode: Literal["fixed", "per_item"] = Field(
        "fixed", description="fixed: every item uses run.seed; per_item: a stable seed from run.seed and the id"
    )


class LoopConfig(_Section):
    max_rounds: Annotated[int, Field(ge=0, le=50)] = 3
    max_generations: Annotated[int, Field(ge=1, le=200)] = 8
    drift_guard: bool = True
    select_by_judge: bool = True


class RunConfig(_Section):
    out_dir: str = "runs"
    name: str = ""
    seed: int = 0
    concurrency: Annotated[int, Field(ge=1, le=1024)] = 4
    cache_dir: str = Field(".cache/portraitcraft", description="on-disk model-call cache")
    hf_home: str | None = None


_TOML_PATH: ContextVar[Path | None] = ContextVar("_TOML_PATH", default=None)


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the TOML file chosen by `load_config` (the lowest-precedence source)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = _TOML_PATH.get()
        if path is None:
            return {}
        try:
            with open(path, "rb") as fh:
                return tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


class PortraitcraftConfig(BaseSettings):
    """Every setting of a run, by section.

    Example:
        >>> cfg = load_config(overrides={"judge": {"model": "gemini-3.1-pro"}})
        >>> cfg.judge.model
        'gemini-3.1-pro'
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", nested_model_default_partial_update=True
    )

    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    editor: EditorConfig = Field(default_factory=EditorConfig)
    critic: CriticConfig = Field(default_factory=CriticConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    assessor: AssessorConfig = Field(default_factory=AssessorConfig)
    miner: MinerConfig = Field(default_factory=MinerConfig)
    planner: PlannerConfig = Field(default_factory=PlannerConfig)
    loop: LoopConfig = Field(default_factory=LoopConfig)
    run: RunConfig = Field(default_factory=RunConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # First wins: CLI flags (init kwargs) > environment > TOML file.
        return (init_settings, env_settings, _TomlSource(settings_cls))

    def masked(self) -> dict[str, Any]:
        """The effective config as plain data with anything secret-looking masked."""
        return mask_secrets(self.model_dump(mode="json"))


def _format_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(root)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"config key {key}: {msg}" + (f" (got {err['input']!r})" if err["type"] != "extra_forbidden"
                                                   and not isinstance(err.get("input"), dict) else ""))
    return "; ".join(lines)


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> PortraitcraftConfig:
    """Build the effective configuration.

    Args:
        path (str | Path, optional): a TOML file; sections it omits keep their defaults.
        overrides (dict, optional): nested `{section: {key: value}}` from CLI flags (highest precedence).

    Raises:
        ConfigError: a missing/invalid file, an unknown key or a wrongly typed value, naming the key.
    """
    token = _TOML_PATH.set(Path(path) if path else None)
    try:
        return PortraitcraftConfig(**(overrides or {}))
    except ValidationError as exc:
        raise ConfigError(_format_error(exc)) from None
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"configuration: {exc}") from None
    finally:
        _TOML_PATH.reset(token)


def parse_override(text: str) -> dict[str, Any]:
    """Turn a CLI `--set section.key=value` into a nested dict (value parsed as TOML when it can be)."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    dotted, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    out: dict[str, Any] = {}
    node = out
    parts = dotted.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `extra` into a copy of `base`."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def mask_secrets(data: Any, *, _key: str = "") -> Any:
    """Replace secret-looking values (keys named like key/token/secret, URL credentials) with '***'.

    `api_key_env` holds a variable NAME, not a secret, and is kept.
    """
    if isinstance(data, dict):
        return {k: mask_secrets(v, _key=str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [mask_secrets(v, _key=_key) for v in data]
    if isinstance(data, str):
        if _key and _key != "api_key_env" and _SECRET_KEY.search(_key) and data:
            return "***"
        return _URL_CREDENTIALS.sub("***@", data)
    return data
