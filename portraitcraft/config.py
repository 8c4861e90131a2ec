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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from portraitcraft.errors import PortraitcraftError
from portraitcraft.urls import check_base_url, mask_url_secrets

ENV_PREFIX = "PORTRAITCRAFT_"
_SECRET_KEY = re.compile(r"(key|token|secret|password|passwd|authorization|auth|cookie)", re.I)


class ConfigError(PortraitcraftError, ValueError):
    """A configuration problem, worded for the user (names the key and the problem)."""

    exit_code = 2  # bad input, like DataError and InputError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RemoteEndpoint(_Section):
    """What every HTTP model endpoint has (VLM sections and the remote image backend): where it is, how to
    authenticate, how long to wait and how often to retry (tools/retry.py applies the same rule to all).

    `timeout` bounds the wait for a reply of one attempt; `connect_timeout` bounds opening the connection,
    so a host that is down fails in seconds while a slow model still gets its time.
    """

    base_url: str = Field("http://127.0.0.1:8000/v1", description="OpenAI-compatible base URL, ending in /v1")
    model: str = Field("Qwen/Qwen3-VL-8B-Instruct", description="model name the server serves")
    api_key_env: str = Field("OPENAI_API_KEY", description="NAME of the env var holding the API key")
    timeout: Annotated[float, Field(gt=0, le=3600)] = Field(
        120.0, description="read timeout: seconds one attempt may wait for its reply"
    )
    connect_timeout: Annotated[float, Field(gt=0, le=600)] = Field(
        10.0, description="seconds to wait for a connection before the attempt fails"
    )
    max_retries: Annotated[int, Field(ge=0, le=20)] = Field(
        4, description="retries of a transient fault (timeout, cut connection, malformed reply, 408/409/425/429/5xx)"
    )
    retry_backoff: Annotated[float, Field(ge=0, le=600)] = Field(
        0.5, description="seconds before the first retry (doubles per retry, plus jitter); a Retry-After wins"
    )
    extra: dict[str, Any] = Field(default_factory=dict, description="passed as extra_body on every request")

    def api_key(self) -> str:
        """The key from the environment at call time; 'EMPTY' when unset (local servers need none)."""
        return os.environ.get(self.api_key_env, "") or "EMPTY"

    @field_validator("base_url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        return check_base_url(value)

    @property
    def safe_url(self) -> str:
        """`base_url` with credentials and secret query values masked: the only form to print or log."""
        return mask_url_secrets(self.base_url)


Dialect = Literal["vllm", "openai", "plain"]


class EndpointConfig(RemoteEndpoint):
    """An OpenAI-compatible VLM endpoint (vLLM, a hosted API, Gemini's OpenAI-compatible URL)."""

    dialect: Dialect = Field(
        "vllm", description="structured-output dialect: vllm (structured_outputs), openai (json_schema), plain "
        "(parse); the old key `kind` is accepted"
    )
    max_concurrency: Annotated[int, Field(ge=1, le=1024)] = Field(
        8, description="requests in flight to this endpoint at once (the client's semaphore)"
    )
    temperature: Annotated[float, Field(ge=0, le=2)] = Field(
        0.0, description="sampling temperature of each request (0 = greedy)"
    )
    max_tokens: Annotated[int, Field(ge=1)] = Field(1024, description="the most tokens one reply may have")
    max_image_pixels: Annotated[int, Field(ge=64 * 64)] = Field(
        1024 * 1024, description="images are downscaled to at most this many pixels before they are sent"
    )
    seed: int | None = Field(
        0,
        description="sampling seed sent with each request (None = unseeded; sampled replies are cached only when "
                    "seeded)"
    )
    cache: bool = Field(
        True,
        description="cache replies on disk under <cache root>/vlm, keyed by model, messages, images and "
                    "parameters (a re-run costs no call)"
    )

    @model_validator(mode="before")
    @classmethod
    def _old_key(cls, data: Any) -> Any:
        """`kind` is the old name of `dialect` (files, env vars, --set and code may still use it; it wins)."""
        if isinstance(data, dict) and "kind" in data:
            data = {k: v for k, v in data.items() if k != "kind"} | {"dialect": data["kind"]}
        return data

    @property
    def kind(self) -> Dialect:
        """The old name of `dialect` (kept for code written against it)."""
        return self.dialect


DiffusionBackend = Literal[
    "zimage", "zimage-turbo", "qwen-image", "qwen-image-edit", "qwen-image-edit-plus", "img2img", "remote"
]


class LoraConfig(_Section):
    """One LoRA adapter: `path` is a safetensors file, a local folder or a hub repo id."""

    path: str = Field(description="a safetensors file, a local folder or a hub repo id")
    weight: float = Field(1.0, description="the adapter's scale (1.0 = as trained)")
    name: str = Field("", description="adapter name; empty = derived from the path")
    weight_name: str | None = Field(None, description="the file inside a folder / repo holding the weights")


class DiffusionConfig(RemoteEndpoint):
    """A diffusers backend (generator, editor or refiner), or a remote OpenAI-compatible image API.

    `backend` picks the pipeline family; `model` is a hub id or a local folder (a tiny offline model built by
    `python -m portraitcraft.tools.diffusion.tiny build` works the same way). Sampling fields are the defaults of every
    call; a call's `GenParams` overrides them.
    """

    backend: DiffusionBackend = Field(
        "zimage-turbo",
        description="pipeline family: zimage, zimage-turbo, qwen-image, qwen-image-edit(-plus), img2img (SDEdit "
                    "with the generator's weights), remote (an OpenAI-compatible image API)"
    )
    model: str = Field("Tongyi-MAI/Z-Image-Turbo", description="hub model id or a local folder")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit) of `model`")
    dtype: Literal["bfloat16", "float16", "float32"] = Field(
        "bfloat16", description="torch dtype the pipeline is loaded in"
    )
    device: str = Field("cuda", description='torch device, e.g. "cuda", "cuda:1" or "cpu"')
    offload: Literal["none", "model", "sequential"] = Field(
        "none",
        description="CPU offload: none, model (whole sub-models moved in turn) or sequential (layer by layer: "
                    "least memory, slowest)"
    )
    attention_backend: str | None = Field(None, description='e.g. "native" or "flash" (needs flash-attn)')
    local_files_only: bool = Field(
        False, description="load weights only from the local Hugging Face cache (no download)"
    )
    steps: Annotated[int, Field(ge=1, le=500)] = Field(9, description="denoising steps per call")
    guidance_scale: Annotated[float, Field(ge=0)] = Field(
        0.0, description="classifier-free guidance scale (Z-Image-Turbo: 0)"
    )
    true_cfg_scale: Annotated[float, Field(ge=0)] = Field(
        4.0, description="true CFG scale of Qwen-Image / Qwen-Image-Edit (with `negative_prompt`)"
    )
    negative_prompt: str = Field(" ", description='negative prompt for true CFG (Qwen-Image needs one, even " ")')
    strength: Annotated[float, Field(gt=0, le=1)] = Field(
        0.6, description="img2img / SDEdit strength: how much of the input image is re-noised (0-1)"
    )
    max_sequence_length: Annotated[int, Field(ge=16)] = Field(
        512,
        description="text-encoder tokens of the prompt (the planner's budget; capped at what the pipeline "
                    "accepts: 1024 Qwen-Image, 992 Z-Image)"
    )
    loras: list[LoraConfig] = Field(
        default_factory=list,
        description='LoRA adapters loaded into the pipeline, e.g. [{ path = "runs/dpo/lora.safetensors" }]'
    )
    fuse_loras: bool = Field(False, description="fuse the active LoRAs into the weights (faster calls)")
    controlnet: str | None = Field(None, description="pose ControlNet checkpoint (Z-Image Fun-Controlnet-Union)")
    controlnet_config: str | None = Field(
        None, description="config folder / repo id for a single-file ControlNet checkpoint (needed offline)"
    )
    controlnet_scale: float = Field(0.75, description="conditioning scale of the pose ControlNet")
    edit_max_area: Annotated[int, Field(ge=64 * 64)] = Field(
        1024 * 1024, description="pixel area edit pipelines resize their input to (Qwen-Image-Edit: ~1 MP)"
    )
    # remote image API (backend = "remote"); the other endpoint keys come from RemoteEndpoint
    base_url: str = Field("https://api.openai.com/v1", description="remote image API base URL (backend remote)")
    timeout: Annotated[float, Field(gt=0, le=3600)] = Field(
        300.0, description="read timeout of one remote image request (generation is slow)"
    )
    retry_backoff: Annotated[float, Field(ge=0, le=600)] = Field(
        1.0, description="seconds before the first retry (doubles per retry, plus jitter); a Retry-After wins"
    )
    send_seed: bool = Field(False, description="send the seed to the remote API (servers that accept one)")
    remote_size: str | None = Field(
        None, description='size sent to the remote API ("auto", "1024x1536"); default the asked WxH; the '
        "answer is resized to the asked size"
    )
    extra: dict[str, Any] = Field(default_factory=dict, description="extra pipeline kwargs / remote extra_body")


_MOVED_TO_GPU = ("pool_budget_gb", "pool_evict")


class GeneratorConfig(DiffusionConfig):
    """The text-to-image backend (the GPU model pool settings live in `[gpu]`)."""

    refiner: DiffusionConfig | None = Field(None, description="optional cascaded SDEdit refiner")
    refiner_strength: Annotated[float, Field(gt=0, le=1)] = Field(
        0.3, description="SDEdit strength of the refiner pass over each draft"
    )

    @model_validator(mode="before")
    @classmethod
    def _pool_keys_moved(cls, data: Any) -> Any:
        moved = [k for k in _MOVED_TO_GPU if isinstance(data, dict) and k in data]
        if moved:
            raise ValueError(
                f"{', '.join(moved)} moved from [generator] to [gpu] (one model pool serves every local backend); "
                f"write it under [gpu]"
            )
        return data


class EditorConfig(DiffusionConfig):
    backend: DiffusionBackend = Field(
        "qwen-image-edit-plus", description="pipeline family of the editor (see generator.backend)"
    )
    model: str = Field("Qwen/Qwen-Image-Edit-2509", description="hub model id or a local folder of the editing model")
    steps: Annotated[int, Field(ge=1, le=500)] = Field(40, description="denoising steps per edit")
    outpaint: bool = Field(
        False, description="when no crop meets a placement target, pad the picture and repaint the pad with this "
        "model's masked inpaint pipeline (a Z-Image or Qwen-Image checkpoint); off: crop-only, the finding stays "
        "open as 'needs outpainting'"
    )


class CriticConfig(EndpointConfig):
    rules: list[str] = Field(default_factory=list, description="rule names to run; empty = every shipped rule")
    rules_dir: str | None = Field(None, description="a folder of extra rule prompts (*.md)")
    min_confidence: Annotated[float, Field(ge=0, le=1)] = Field(
        0.5, description="a finding counts as detected at this confidence or above"
    )
    enabled: bool = Field(True, description="ask the VLM; false = geometry + heuristics only (the offline profile)")
    mode: Literal["json", "logprob"] = Field(
        "json", description="json: a verdict + evidence + instruction per rule; logprob: a yes/no answer whose "
        "logprobs give the confidence (instruction from the rule's template)")
    batch_size: Annotated[int, Field(ge=1, le=32)] = Field(1, description="rules per request (json mode)")
    geometry: bool = Field(True, description="run the geometric critic (pose, mask, gaze vs the targets)")
    geometry_min_confidence: Annotated[float, Field(ge=0, le=1)] = Field(
        0.5, description="a geometric finding at least this confident decides over the VLM")
    heuristics: bool = Field(True, description="run the model-free checks (sharpness, clipping, horizon tilt)")
    min_sharpness: Annotated[float, Field(ge=0)] = Field(15.0, description="minimum variance of the Laplacian")
    max_clipped: Annotated[float, Field(ge=0, le=1)] = Field(0.25, description="maximum clipped pixel fraction")
    max_tilt_deg: Annotated[float, Field(ge=0, le=45)] = Field(2.0, description="maximum horizon tilt, degrees")


class JudgeConfig(EndpointConfig):
    mode: Literal["sampled", "logprob", "auto"] = Field(
        "auto", description="scoring method; auto probes the endpoint once per run (logprob if it returns "
        "logprobs, else sampled) and scores every image that one way"
    )
    samples: Annotated[int, Field(ge=1, le=64)] = Field(
        5, description="sampled answers per image in sampled mode (their mean is the score)"
    )
    temperature: Annotated[float, Field(ge=0, le=2)] = Field(
        0.7, description="sampling temperature of the judge's answers"
    )
    rubric: str = Field("default", description="rubric name under prompts/judge/")
    item_deadline: Annotated[float, Field(gt=0, le=86400)] = Field(
        300.0, description="total seconds one image may take (every request, retry and wait) before it fails"
    )


class AssessorConfig(EndpointConfig):
    samples: Annotated[int, Field(ge=1, le=64)] = Field(
        3, description="K: answers sampled per view in one request (n=K)"
    )
    flip: bool = Field(True, description="add the horizontally mirrored view of each image (directional words swapped)")
    max_pixels: list[int] = Field(
        default_factory=lambda: [448 * 448, 1024 * 1024],
        description="one view per pixel budget (images resized to at most this many pixels)"
    )
    permute_options: bool = Field(
        True, description="rotate the VQA options' order over the views (the answer is mapped back)"
    )
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
    sample_size: Annotated[int, Field(ge=1)] = Field(
        200, description="train items mined when `mine --sample` is not given"
    )
    max_modes: Annotated[int, Field(ge=1, le=64)] = Field(12, description="the most failure modes (rule files) written")


class PlannerConfig(_Section):
    """The planner: canvas policy, canvas size and prompt layout (agents/planner/)."""

    long_side: Annotated[int, Field(ge=64, le=4096)] = Field(1024, description="the canvas's longer side in pixels")
    multiple: Annotated[int, Field(ge=1, le=256)] = Field(
        16, description="canvas width and height are rounded to a multiple of this"
    )
    aspect_ratios: Annotated[list[Annotated[float, Field(gt=0.1, lt=10)]], Field(min_length=1)] = Field(
        default_factory=lambda: [9 / 16, 2 / 3, 3 / 4, 1.0, 4 / 3, 3 / 2, 16 / 9],
        description="canvas classes as width / height (1.0 is always added); a fitted policy keeps its own",
    )
    policy: str | None = Field(None, description="a fitted policy JSON (portraitcraft plan fit); unset = rule")
    spatial_first: bool = Field(True, description="move spatial and target statements to the front of the prompt")
    trigger_word: str = Field("", description="LoRA trigger word put first in the prompt, e.g. AES_COMP")
    max_prompt_tokens: Annotated[int, Field(ge=16)] | None = Field(
        None, description="the prompt's token budget; unset = the generator's max_sequence_length, capped by what "
        "its diffusers pipeline accepts (Planner.from_config)"
    )
    seed_mode: Literal["fixed", "per_item"] = Field(
        "fixed", description="fixed: every item uses run.seed; per_item: a stable seed from run.seed and the id"
    )
    prior_orientation: Literal["portrait", "square", "landscape"] = Field(
        "portrait", description="the rule policy's canvas when nothing in the description decides"
    )
    convention: Literal["strict", "loose"] | None = Field(
        None, description="how a side said in the subject's frame ('her left') is read: strict = the left of a "
        "subject facing the camera is the viewer's right, loose = the viewer's left; unset = the fitted policy's "
        "convention (plan fit-convention), else strict"
    )
    condense: Literal["off", "rules", "llm"] = Field(
        "rules", description="fit an over-budget prompt: rules (drop repeats and filler, offline), llm (the "
        "critic endpoint rewrites it; rules when it fails), off (warn only)"
    )


class LoopConfig(_Section):
    max_rounds: Annotated[int, Field(ge=0, le=50)] = Field(
        3, description="corrections per item before the loop stops (`generate --max-rounds`)"
    )
    max_generations: Annotated[int, Field(ge=1, le=200)] = Field(
        8, description="images drawn per item (drafts + regenerations); past it, a regenerate becomes an edit"
    )
    drift_guard: bool = Field(
        True,
        description="revert an edit that made the image worse (more findings, or background / person drift past "
                    "the drift_* thresholds) and regenerate"
    )
    select_by_judge: bool = Field(
        True, description="with a VLM critic, the [judge] ranks the rounds of an item that never passed")
    max_edits: Annotated[int, Field(ge=0, le=50)] = Field(
        2, description="edits in a row before the editor regenerates with a new seed instead")
    drift_min_psnr_background: Annotated[float, Field(ge=0)] = Field(
        16.0, description="drift guard: an edit whose background PSNR (dB) falls below this drifted")
    drift_max_delta_e_person: Annotated[float, Field(ge=0)] = Field(
        25.0, description="drift guard: an edit whose mean CIEDE2000 over the person exceeds this drifted")
    mirror: bool = Field(
        True, description="let a mirror image fix a facing / gaze measured on the opposite side (it also mirrors "
        "text and the subject's own left/right)")
    strategy: Literal["loop", "best-of-n", "one-shot"] = Field(
        "loop", description="loop: critique-correct; best-of-n: max_rounds + 1 independent samples (the loop's "
        "image budget) ranked by the critic; one-shot: one draft (`generate --strategy`)")
    group_size: Annotated[int, Field(ge=0, le=64)] = Field(
        0, description="`generate --group G`: G independent candidates per item scored with within-group rewards "
        "(NaSPO); 0 or 1 = off")
    group_weights: dict[str, float] = Field(
        default_factory=lambda: {"critic": 0.4, "content": 0.3, "composition": 0.3},
        description="objective -> weight for group rewards (critic pass ratio, judge content, judge "
        "composition); renormalised over the objectives measured")
    group_pairs: Literal["best-worst", "all"] = Field(
        "best-worst", description="group preference pairs: best vs worst, or every pair with a higher reward first")


class GpuConfig(_Section):
    """The GPU model pool every local backend of a process (or of one Ray actor) shares."""

    pool_budget_gb: Annotated[float, Field(gt=0)] | None = Field(
        None, description="GPU memory the model pool may fill with pipelines (GiB); None = no limit"
    )
    pool_evict: Literal["cpu", "drop"] = Field(
        "cpu", description="what happens to the least recently used pipeline over budget: move to CPU, or drop"
    )


class RayConfig(_Section):
    """The Ray executor (`[run] executor = "ray"`): a pool of GPU actors, one job at a time each."""

    address: str | None = Field(
        None, description='None starts a local Ray on 127.0.0.1; "auto" or "ray://host:port" joins a cluster'
    )
    actors: Annotated[int, Field(ge=1, le=4096)] | None = Field(
        None, description="number of GPU actors; None = one per gpus_per_actor GPUs the cluster reports"
    )
    gpus_per_actor: Annotated[float, Field(ge=0, le=64)] = Field(
        1.0, description="GPUs each actor reserves (0 = none: CPU-only actors, e.g. the tiny test models)"
    )
    max_in_flight_per_actor: Annotated[int, Field(ge=1, le=64)] = Field(
        2, description="jobs queued on one actor at once (one runs, the rest wait there: no GPU idle gap)"
    )
    max_job_retries: Annotated[int, Field(ge=0, le=20)] = Field(
        2, description="times a job is re-run on a surviving actor after its actor died"
    )
    num_cpus: Annotated[int, Field(ge=1)] | None = Field(
        None, description="CPUs of a locally started Ray (address None); None = Ray's own count"
    )
    object_store_gb: Annotated[float, Field(gt=0)] | None = Field(
        None, description="object store size of a locally started Ray (GiB); None = Ray's default"
    )
    start_timeout_s: Annotated[float, Field(gt=0)] = Field(
        600.0, description="how long the actors may take to come up (placement on GPUs) before a clear error"
    )


class RunConfig(_Section):
    out_dir: str = Field(
        "runs", description="parent folder of run folders when --out is not given (<out_dir>/<name or timestamp>)"
    )
    name: str = Field("", description="run folder name under out_dir; empty = a timestamp")
    seed: int = Field(
        0, description="the run seed (drafts; per-item seeds derive from it with planner.seed_mode = per_item)"
    )
    concurrency: Annotated[int, Field(ge=1, le=1024)] = Field(
        4, description="items in flight at once (generate, understand)"
    )
    cache_dir: str | None = Field(
        None, description="the cache root (VLM replies, tiny models); unset = $PORTRAITCRAFT_CACHE_DIR, else the "
        "platform cache folder (~/.cache/portraitcraft on Linux); see portraitcraft/paths.py"
    )
    hf_home: str | None = Field(
        None,
        description="not read by the code at present: set the HF_HOME environment variable for the Hugging Face "
                    "cache (kept so existing configs stay valid)"
    )
    executor: Literal["lane", "ray"] = Field(
        "lane", description="who runs GPU jobs: the in-process GPU lane, or a pool of Ray actors ([ray])"
    )


class VisionConfig(_Section):
    """Seeing the portrait (tools/vision): pose backend, thresholds, and the reframing editor's limits."""

    pose_backend: Literal["mediapipe", "rtmlib"] = Field(
        "mediapipe", description="mediapipe (weights bundled in the wheel; one pose per image, people counted by "
        "its face detector) or rtmlib (every person; needs local ONNX files)"
    )
    model_complexity: Annotated[int, Field(ge=1, le=1)] = Field(
        1, description="mediapipe pose model size; only 1 (pose_landmark_full) is bundled in the wheel"
    )
    rtmlib_det_model: str | None = Field(None, description="local YOLOX end2end .onnx (person detector)")
    rtmlib_pose_model: str | None = Field(None, description="local RTMPose COCO-17 .onnx (SimCC head)")
    rtmlib_det_input_size: tuple[int, int] = Field((640, 640), description="detector input (height, width)")
    rtmlib_pose_input_size: tuple[int, int] = Field((192, 256), description="pose input (width, height)")
    rtmlib_device: str = Field("cpu", description='onnxruntime device: "cpu" or "cuda[:N]"')
    max_side: Annotated[int, Field(ge=64, le=8192)] = Field(
        1024, description="longer side images are scaled to before analysis (coordinates are normalised)"
    )
    person_threshold: Annotated[float, Field(ge=0, le=1)] = Field(0.5, description="min person detection score")
    keypoint_threshold: Annotated[float, Field(ge=0, le=1)] = Field(
        0.5, description="min keypoint visibility for a joint to count as seen"
    )
    mask_threshold: Annotated[float, Field(gt=0, lt=1)] = Field(0.5, description="person-mask probability cut")
    face_threshold: Annotated[float, Field(ge=0, le=1)] = Field(0.5, description="min face detection score")
    facing_threshold: Annotated[float, Field(gt=0, le=1)] = Field(
        0.3, description="|turn score| above which the subject faces left/right rather than the camera"
    )
    gaze_threshold_deg: Annotated[float, Field(gt=0, le=90)] = Field(
        15.0, description="gaze angle (head yaw + eye turn from the iris) beyond which the look is left/right"
    )
    reframe_fill: Literal["none", "blur", "reflect"] = Field(
        "none", description="padding fill when no crop meets the target: none (crop-only; only a generative "
        "outpainting model may pad, and without one the finding stays open as 'needs outpainting'), or the "
        "explicit synthetic fills blur (blurred background, person removed) or reflect (mirror the edge)"
    )
    reframe_max_pad: Annotated[float, Field(ge=0, le=0.9)] = Field(
        0.35, description="max fraction of the reframed image that may be padding"
    )
    reframe_margin: Annotated[float, Field(ge=0, le=0.2)] = Field(
        0.02, description="room kept around the head and the needed joints (fraction of the image side)"
    )
    targets: Literal["rules", "llm", "hybrid"] | None = Field(
        None, description="composition targets from descriptions: rules (agents/planner/targets.py, offline), "
        "llm (an OpenAI-compatible endpoint returns targets with verbatim evidence quotes; the rules when it "
        "fails) or hybrid (both: agreeing raises confidence, disagreeing leaves the target unenforced); unset = "
        "hybrid when the planner is given an endpoint, else rules"
    )
    enforce_confidence: Annotated[float, Field(ge=0, le=1)] = Field(
        0.8, description="a composition target read from the description is enforced by the geometric critic "
        "only at or above this confidence; weaker ones are shown as 'not enforced' (chosen on the real dev set "
        "for precision, benchmarks/targets.py --real)"
    )


class TrainConfig(_Section):
    """LoRA training (`portraitcraft train sft|dpo`, train/): model, adapter, optimiser, data, DPO and logging.

    `model` empty trains the `[generator]` model; the saved LoRA loads through `[generator] loras` unchanged.
    """

    model: str = Field("", description="model folder / hub id to train; empty = the [generator] model")
    precision: Literal["bf16", "fp32"] = Field("bf16", description="mixed precision of the forward passes")
    cpu: bool = Field(False, description="train on the CPU even when a GPU is visible")
    seed: int = Field(0, description="training seed (noise, timesteps, data order; a resumed run replays them)")
    lora_rank: Annotated[int, Field(ge=1, le=1024)] = Field(32, description="LoRA rank")
    lora_alpha: Annotated[float, Field(gt=0)] = Field(
        32.0, description="LoRA alpha (the update is scaled by alpha / rank)"
    )
    lora_targets: Annotated[list[str], Field(min_length=1)] = Field(
        default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"],
        description="transformer module names (or name suffixes) that get a LoRA; checked before training",
    )
    learning_rate: Annotated[float, Field(gt=0)] = Field(1e-4, description="AdamW learning rate")
    weight_decay: Annotated[float, Field(ge=0)] = Field(0.0, description="AdamW weight decay")
    warmup_steps: Annotated[int, Field(ge=0)] = Field(0, description="linear learning-rate warm-up steps")
    max_grad_norm: Annotated[float, Field(ge=0)] = Field(1.0, description="gradient clipping; 0 = none")
    batch_size: Annotated[int, Field(ge=1, le=4096)] = Field(
        1, description="items (SFT) or pairs (DPO) per micro-batch"
    )
    grad_accum: Annotated[int, Field(ge=1, le=4096)] = Field(1, description="micro-batches per optimiser step")
    epochs: Annotated[int, Field(ge=1, le=100000)] = Field(
        1, description="passes over the data (max_steps stops earlier)"
    )
    max_steps: Annotated[int, Field(ge=1)] | None = Field(None, description="stop after this many optimiser steps")
    resolution: Annotated[int, Field(ge=16, le=4096)] = Field(
        1024, description="long side of the aspect-ratio buckets ([planner] aspect_ratios)"
    )
    max_sequence_length: Annotated[int, Field(ge=16, le=1024)] = Field(
        512, description="text-encoder tokens of each training prompt"
    )
    timestep_sampling: Literal["uniform", "logit_normal"] = Field(
        "logit_normal", description="how sigma is drawn: uniform or logit-normal (logit_mean, logit_std)"
    )
    logit_mean: float = Field(0.0, description="mean of the logit-normal sigma distribution")
    logit_std: Annotated[float, Field(gt=0)] = Field(
        1.0, description="standard deviation of the logit-normal sigma distribution"
    )
    timestep_shift: Annotated[float, Field(gt=0)] = Field(
        1.0, description="sigma -> shift*sigma / (1 + (shift-1)*sigma) after sampling; 1 = none"
    )
    beta: Annotated[float, Field(gt=0)] = Field(5000.0, description="Diffusion-DPO beta (velocity MSE, mean)")
    sft_weight: Annotated[float, Field(ge=0)] = Field(0.0, description="weight of an SFT term on the chosen side")
    label_mode: Literal["soft", "hard"] = Field(
        "soft", description="soft: expected DPO loss under label_0 (NaSPO probabilities); hard: chosen = argmax"
    )
    pose: bool = Field(False, description="DPO: condition on each pair's pose through the frozen ControlNet")
    controlnet: str | None = Field(None, description="pose ControlNet folder; empty = [generator] controlnet")
    controlnet_scale: Annotated[float, Field(ge=0)] = Field(
        0.75, description="conditioning scale of the frozen pose ControlNet (train.pose)"
    )
    gradient_checkpointing: bool = Field(
        False, description="recompute activations in the backward pass (less memory, slower)"
    )
    cache: bool = Field(True, description="cache VAE latents and text embeddings on disk (content-hash keys)")
    cache_dir: str = Field("", description="latent/text cache folder; empty = <cache root>/train (run.cache_dir)")
    checkpoint_every: Annotated[int, Field(ge=1)] = Field(
        500, description="optimiser steps between checkpoints (<out>/checkpoints/step_<k>/)"
    )
    keep_checkpoints: Annotated[int, Field(ge=1)] = Field(2, description="checkpoints kept (the oldest are deleted)")
    log_every: Annotated[int, Field(ge=1)] = Field(1, description="optimiser steps between rows of metrics.jsonl")
    validate_prompts: list[str] = Field(
        default_factory=lambda: [
            "A woman stands on the left third of the frame, facing right, full body, soft evening light.",
            "A close-up portrait of a man in the centre, looking at the camera, plain grey background.",
        ],
        description="prompts drawn with and without the LoRA by --validate",
    )
    validate_steps: Annotated[int, Field(ge=1, le=500)] = Field(
        9, description="denoising steps of the --validate images"
    )
    validate_seed: int = Field(0, description="seed of the --validate images (the same with and without the LoRA)")
    validate_guidance: Annotated[float, Field(ge=0)] = Field(
        0.0, description="guidance scale of the --validate images (Z-Image)"
    )


class RewardConfig(_Section):
    """`portraitcraft serve reward`: the critic as a reward server (Flow-Factory's HTTP protocol).

    Each scorer's values are z-scored within the request's group and combined with `weights` (PortraitRL);
    a scorer that is not available is skipped with a message and its weight dropped.
    """

    host: str = Field("127.0.0.1", description="address the reward server listens on")
    port: Annotated[int, Field(ge=0, le=65535)] = Field(8765, description="port the reward server listens on")
    weights: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: {"geometry": 0.3, "rules": 0.3, "content": 0.2, "composition": 0.2, "fidelity": 0.2},
        description="scorer name -> weight (geometry, rules, content, composition, fidelity); renormalised to sum 1 "
        "over the objectives scored (fidelity only when a request sends condition_images)",
    )
    max_concurrency: Annotated[int, Field(ge=1, le=1024)] = Field(4, description="requests scored at once")
    max_images: Annotated[int, Field(ge=1, le=4096)] = Field(64, description="images in one request at most")
    max_image_bytes: Annotated[int, Field(ge=1024)] = Field(
        32 * 1024 * 1024, description="largest decoded image in a request, in bytes (larger: a 400 naming it)"
    )
    normalise: Literal["group", "none"] = Field(
        "group", description="group: each objective z-scored within the request's group of images sharing a prompt "
        "(for Flow-Factory's RemoteGroupwiseRewardModel); none: absolute scores in [0, 1], the same for an image "
        "however a batch is cut (for RemotePointwiseRewardModel)"
    )
    max_body_mb: Annotated[int, Field(ge=1, le=4096)] = Field(
        128, description="largest /compute body in MB; a larger one is refused with 413 before it is read whole"
    )
    dedupe_seconds: Annotated[float, Field(ge=0, le=86400)] = Field(
        300.0, description="an identical /compute body in flight or answered this many seconds ago gets that answer "
        "again (client retries are not judged twice); 0 turns it off"
    )
    judge_deadline: Annotated[float, Field(gt=0, le=86400)] = Field(
        45.0, description="per-image judge deadline while serving, in seconds (the judge's item_deadline is capped "
        "to it): keep it below the trainer's client timeout (Flow-Factory: 60 s)"
    )
    probe_timeout: Annotated[float, Field(gt=0, le=60)] = Field(
        3.0, description="seconds /health and `serve reward` wait for each scorer endpoint's GET /models"
    )


class LimitsConfig(_Section):
    """Bounds on what the CLI reads (`portraitcraft.bounded`)."""

    max_input_mb: Annotated[int, Field(ge=1, le=1024 * 1024)] = Field(
        512, description="largest data/prediction/CSV file (or zip member) read, in MB"
    )


class AssessorTrainConfig(_Section):
    """`portraitcraft train assessor` (train/assessor*.py): LoRA SFT of a Qwen-VL model on the records that
    `understand export-sft --format openai` writes; the adapter is served with vLLM as the `[assessor]` model."""

    base: str = Field("Qwen/Qwen3-VL-4B-Instruct", description="base model: hub id or local folder of a "
                      "Qwen2-VL / Qwen2.5-VL / Qwen3-VL checkpoint (--base wins)")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="weights and compute: auto = bf16 on a GPU, fp32 on the CPU")
    cpu: bool = Field(False, description="train on the CPU even when a GPU is visible")
    seed: int = Field(0, description="seed of the LoRA init, the data order and the held-out split")
    lora_rank: Annotated[int, Field(ge=1, le=512)] = Field(
        16, description="LoRA rank (serve with vLLM --max-lora-rank at least this)")
    lora_alpha: Annotated[float, Field(gt=0)] = Field(32.0, description="LoRA alpha (scale = alpha / rank)")
    lora_dropout: Annotated[float, Field(ge=0, lt=1)] = Field(0.05, description="dropout on the LoRA input")
    lora_targets: Annotated[list[str], Field(min_length=1)] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="language-model linear layers (name suffixes) that get a LoRA; the vision tower is frozen",
    )
    learning_rate: Annotated[float, Field(gt=0)] = Field(1e-4, description="peak learning rate (AdamW)")
    lr_scheduler: Literal["constant", "constant_with_warmup", "linear", "cosine"] = Field(
        "cosine", description="learning-rate schedule after the warmup")
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] = Field(0.03, description="share of the steps spent warming up")
    weight_decay: Annotated[float, Field(ge=0)] = Field(0.0, description="AdamW weight decay")
    max_grad_norm: Annotated[float, Field(ge=0)] = Field(1.0, description="gradient clipping; 0 = none")
    batch_size: Annotated[int, Field(ge=1, le=1024)] = Field(1, description="records per micro-batch (per device)")
    grad_accum: Annotated[int, Field(ge=1, le=4096)] = Field(8, description="micro-batches per optimiser step")
    epochs: Annotated[float, Field(gt=0, le=1000)] = Field(2.0, description="passes over the training records")
    max_steps: Annotated[int, Field(ge=1)] | None = Field(
        None, description="stop after this many optimiser steps (beats epochs; --max-steps wins)")
    max_length: Annotated[int, Field(ge=64)] | None = Field(
        None, description="cut token sequences (prompt + image + answer) to this length, cutting the answer's end; "
        "unset = no cut")
    eval_fraction: Annotated[float, Field(ge=0, lt=1)] = Field(
        0.05, description="share of the records held out for eval_loss (at least one when there are two or more)")
    max_eval_records: Annotated[int, Field(ge=1)] = Field(256, description="held-out records at most")
    eval_every: Annotated[int, Field(ge=1)] = Field(100, description="optimiser steps between held-out evaluations")
    checkpoint_every: Annotated[int, Field(ge=1)] = Field(200, description="optimiser steps between checkpoints")
    keep_checkpoints: Annotated[int, Field(ge=1)] = Field(2, description="newest checkpoints kept in DIR/checkpoints")
    log_every: Annotated[int, Field(ge=1)] = Field(1, description="optimiser steps between metrics.jsonl rows")
    gradient_checkpointing: bool = Field(False, description="recompute activations to save GPU memory")
    dataloader_workers: Annotated[int, Field(ge=0, le=64)] = Field(
        0, description="worker processes decoding images for the batches (0 = in the training process)")


MAX_CONFIG_BYTES = 1024 * 1024
"""A config file larger than this is refused (configs are a few KB; this catches a wrong path)."""

_TOML_PATH: ContextVar[Path | None] = ContextVar("_TOML_PATH", default=None)


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the TOML file chosen by `load_config` (the lowest-precedence source)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = _TOML_PATH.get()
        if path is None:
            return {}
        from portraitcraft.bounded import decode_text, parse_text, read_bytes

        raw = read_bytes(path, what="config file", max_bytes=MAX_CONFIG_BYTES, error=ConfigError)
        text = decode_text(raw, f"config file {path}", what="TOML file", error=ConfigError)
        return parse_text(tomllib.loads, text, f"config file {path}", what="TOML", error=ConfigError)


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

    generator: GeneratorConfig = Field(
        default_factory=GeneratorConfig,
        description="the text-to-image backend that draws the drafts (and its optional refiner)",
    )
    editor: EditorConfig = Field(
        default_factory=EditorConfig,
        description="the image-editing backend the loop's `edit` action uses",
    )
    critic: CriticConfig = Field(
        default_factory=CriticConfig,
        description="the VLM critic (an OpenAI-compatible endpoint), the geometric critic and the model-free checks",
    )
    judge: JudgeConfig = Field(
        default_factory=JudgeConfig,
        description="the VLM judge of `eval track2` (Content, Composition) and of rounds that never passed",
    )
    assessor: AssessorConfig = Field(
        default_factory=AssessorConfig,
        description="the VLM that answers Track 1 (`portraitcraft understand`): views, samples, votes",
    )
    miner: MinerConfig = Field(
        default_factory=MinerConfig,
        description="the VLM that lists discrepancies between real and generated images (`portraitcraft mine`)",
    )
    planner: PlannerConfig = Field(
        default_factory=PlannerConfig,
        description="how a description becomes a canvas, composition targets and a prompt",
    )
    loop: LoopConfig = Field(
        default_factory=LoopConfig,
        description="the critique-correct loop of `generate`: rounds, budgets, drift guard, strategies, groups",
    )
    run: RunConfig = Field(
        default_factory=RunConfig,
        description="the run as a whole: output folder, seed, concurrency, cache root, GPU executor",
    )
    gpu: GpuConfig = Field(default_factory=GpuConfig, description="the GPU model pool shared by the local backends")
    ray: RayConfig = Field(
        default_factory=RayConfig,
        description='the Ray executor (run.executor = "ray"): actors on several GPUs or machines',
    )
    vision: VisionConfig = Field(
        default_factory=VisionConfig,
        description="pose, person mask, face and gaze models and their thresholds; the reframing editor's limits",
    )
    train: TrainConfig = Field(default_factory=TrainConfig, description="LoRA training (`portraitcraft train sft|dpo`)")
    reward: RewardConfig = Field(
        default_factory=RewardConfig,
        description="the reward server (`portraitcraft serve reward`)",
    )
    limits: LimitsConfig = Field(default_factory=LimitsConfig, description="bounds on what the CLI reads")
    assessor_train: AssessorTrainConfig = Field(
        default_factory=AssessorTrainConfig,
        description="LoRA fine-tuning of the Track 1 VLM on its own SFT records (`portraitcraft train assessor`)",
    )

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
        shown = err["type"] not in ("extra_forbidden", "value_error") and not isinstance(err.get("input"), dict)
        got = f" (got {mask_url_secrets(repr(err['input']))})" if shown else ""
        lines.append(f"config key {key}: {mask_url_secrets(msg)}{got}")
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


def mask_secrets(data: Any, *, _key: str = "") -> Any:
    """Replace secret-looking values (keys named like key/token/secret, URL credentials, secret query values
    such as `?key=...`) with '***'.

    `api_key_env` holds a variable NAME, not a secret, and is kept.
    """
    if isinstance(data, dict):
        return {k: mask_secrets(v, _key=str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [mask_secrets(v, _key=_key) for v in data]
    if isinstance(data, str):
        if _key and _key != "api_key_env" and _SECRET_KEY.search(_key) and data:
            return "***"
        return mask_url_secrets(data)
    return data
