"""README.md is what a newcomer reads first (under 200 lines, the two Quickstart commands, links that resolve);
every section the README used to have lives on in docs/ (the page, the heading, and a sentence of it)."""

from __future__ import annotations

import re

import pytest
from docs_hooks import ROOT, hook_module

README = ROOT / "README.md"
DOCS = ROOT / "docs"

# old README section -> (docs page, the heading it lives under there, a sentence carried over from it)
HOMES: dict[str, tuple[str, str, str]] = {
    "Quickstart": ("getting-started.md", "## Quickstart", "bash scripts/demo.sh"),
    "Installing": ("getting-started.md", "## Installing", "who only scores with a remote judge never needs torch"),
    "Running on a GPU box with real weights and a vLLM-served VLM": (
        "guides/gpu-box.md", "# Running on a GPU box with real weights and vLLM",
        "Any OpenAI-compatible endpoint works as critic or judge"),
    "Configuration": ("guides/configuration.md", "# Configuration",
                      "Unknown keys and wrong types are errors naming the key"),
    "Data formats": ("guides/data-formats.md", "# Data formats and submissions",
                     "The 13 attributes, in order: Color Harmony"),
    "Limits": ("guides/data-formats.md", "## Limits", "Every data, prediction, CSV and zip member read is bounded"),
    "Using the pieces": ("reference/api.md", "## Using the pieces", "async with VLMClient(cfg.critic) as vlm"),
    "Planning: targets, canvas, prompt budget": (
        "guides/planning.md", "# Reading the description: targets, canvas, prompt",
        "The planner (`agents/planner/`) reads each description once into **composition targets**"),
    "Exit codes": ("guides/evaluation.md", "## Exit codes",
                   "The `portraitcraft` command's exit code is the outcome"),
    "Seeing the portrait": ("guides/vision.md", "# Seeing the portrait: inspect and reframe",
                            "Every direction (`horizontal`, `facing`, `gaze`, the critic's instructions) is in the"),
    "Track 1: understand": ("guides/understand.md", "# Track 1: understand",
                            "and a **vote** turns them into the official submission"),
    "Training": ("guides/pairs-and-training.md", "## Training",
                 "VAE latents and text embeddings are computed once"),
    "Run folders": ("guides/generate.md", "## The run folder",
                    "Every batch\n(`generate`, `understand`, `mine` and its counterpart drawing, "
                    "`eval track2`) runs through ONE driver"),
    "Architecture": ("project/architecture.md", "# Architecture", "One installed namespace over the top-level folders"),
    "Tests": ("project/tests.md", "# Tests", "`bash scripts/test.sh` runs, in one pytest session"),
    "Benchmarks": ("project/benchmarks.md", "# Benchmarks", "GPU-lane utilisation with N items in flight"),
    "Critique-correct generation": ("guides/generate.md", "## The loop",
                                    "Drift guard: an edit that leaves more/heavier findings"),
    "GPU jobs, several GPUs and clusters (Ray)": (
        "guides/ray.md", "# GPU jobs, several GPUs and clusters (Ray)",
        "An actor that dies (killed, OOM, node lost) is dropped"),
    "Mining failure modes and preference pairs": (
        "guides/rules-and-mining.md", "## Mining failure modes",
        "Every VLM statement naming a side is checked\n  against the geometry"),
    "Mining failure modes and preference pairs (pairs)": (
        "guides/pairs-and-training.md", "## Preference pairs", "drops near-identical\n  pairs"),
    "Reward server": ("guides/reward-server.md", "# The reward server", "Flow-Factory's HTTP reward protocol"),
}


def _normalised(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("section", sorted(HOMES))
def test_every_old_readme_section_has_a_home(section: str) -> None:
    page, heading, sentence = HOMES[section]
    text = (DOCS / page).read_text(encoding="utf-8")
    assert heading in text.splitlines(), f"{page} lost the heading {heading!r} (old README: {section})"
    assert _normalised(sentence) in _normalised(text), f"{page}: the old README's {section!r} text is gone"


def test_readme_is_short_and_keeps_the_quickstart_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) < 200
    quickstart = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = [line for line in quickstart.splitlines() if line.startswith("bash ")]
    assert commands == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    for script in ("scripts/demo.sh", "scripts/test.sh"):
        assert (ROOT / script).is_file()
    for heading in ("## Quickstart", "## What you can do", "## Installing", "## Citing"):
        assert heading in text


def test_readme_links_resolve_and_the_command_table_covers_every_command() -> None:
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(((?!https?:)[^)#]+)(?:#[^)]*)?\)", text)
    assert links and [link for link in links if not (ROOT / link).is_file()] == []
    table = text.split("## What you can do", 1)[1].split("\n## ", 1)[0]
    cli_reference = hook_module("cli_reference")
    top = {cmd.path[0] for cmd in cli_reference.walk() if len(cmd.path) == 1}
    missing = sorted(top - set(re.findall(r"portraitcraft ([a-z-]+)", table)))
    assert missing == [], f"README command table lacks: {missing}"
