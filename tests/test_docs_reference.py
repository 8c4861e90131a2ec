"""The generated references cover the code: every config key and CLI option has a description, and the
generators list every key `config show --json` prints and every command `portraitcraft --help` lists."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from cli_run import run_cli
from docs_hooks import ROOT, hook_module
from pydantic import BaseModel, Field

from portraitcraft.config import PortraitcraftConfig

config_reference = hook_module("config_reference")
cli_reference = hook_module("cli_reference")


def undescribed_config_keys(model: type[BaseModel] = PortraitcraftConfig, prefix: str = "") -> list[str]:
    """Every field (sections included, nested models walked) without a description."""
    missing = []
    for name, field in model.model_fields.items():
        if not (field.description or "").strip():
            missing.append(prefix + name)
        nested, is_list = config_reference._model_in(field.annotation)
        if nested is not None:
            missing += undescribed_config_keys(nested, f"{prefix}{name}{'[]' if is_list else ''}.")
    return missing


def test_every_config_field_has_a_description() -> None:
    assert undescribed_config_keys() == [], "add description=... to these fields in portraitcraft/config.py"


def test_the_description_check_finds_a_missing_description() -> None:
    class Inner(BaseModel):
        described: int = Field(1, description="fine")
        bare: int = 2

    class Outer(BaseModel):
        section: Inner = Field(default_factory=Inner, description="a section")
        items: list[Inner] = Field(default_factory=list)

    assert undescribed_config_keys(Outer) == ["section.bare", "items", "items[].bare"]


def test_every_cli_command_argument_and_option_has_help() -> None:
    missing = [f"{cmd.name}: {p.name}" for cmd in cli_reference.walk() for p in cmd.params if not p.help]
    missing += [cmd.name for cmd in cli_reference.walk() if not cmd.help.strip()]
    assert missing == [], "add help=... to these commands / parameters"


def _flat_keys(data: dict[str, Any]) -> set[str]:
    return {f"{section}.{key}" for section, values in data.items() for key in values}


def test_config_reference_lists_every_key_config_show_prints(capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    result = run_cli(["config", "show", "--json"], capsys, monkeypatch)
    assert result.exit_code == 0, result.output
    printed = _flat_keys(json.loads(result.stdout))
    assert len(printed) > 250
    page = config_reference.render()
    documented = {key.dotted for key in config_reference.all_keys()}
    documented |= {f"{config_reference.API_KEYS}.{s}" for s in json.loads(result.stdout)["_api_keys"]}
    assert printed <= documented, sorted(printed - documented)
    for key in printed:
        assert f'<span id="{key}"></span>' in page, key
    row = next(line for line in page.splitlines() if 'id="loop.max_rounds"' in line)
    assert "PORTRAITCRAFT_LOOP__MAX_ROUNDS" in row and "default <code>3</code>" in row and "corrections per item" in row
    assert "<code>int (>= 0, &lt;= 50)</code>" in row  # the type with its bounds


def test_config_reference_env_var_really_sets_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment variable the reference prints for a key (a nested one too) is the one that sets it."""
    from portraitcraft.config import load_config

    keys = {k.dotted: k for k in config_reference.all_keys()}
    monkeypatch.setenv(keys["loop.max_rounds"].env, "7")
    monkeypatch.setenv(keys["critic.base_url"].env, "http://127.0.0.1:9/v1")
    cfg = load_config()
    assert cfg.loop.max_rounds == 7 and cfg.critic.base_url == "http://127.0.0.1:9/v1"
    assert keys["generator.loras[].path"].env is None  # a list of tables is set as one JSON value


def _help_commands(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The command names in the "Commands" panel of `portraitcraft ARGS --help`."""
    result = run_cli([*args, "--help"], capsys, monkeypatch)
    assert result.exit_code == 0, result.output
    panel = result.stdout.split("Commands", 1)[1] if "Commands" in result.stdout else ""
    return re.findall(r"^[│|] ([a-z][a-z0-9-]*)\s{2,}", panel, re.M)  # a row, not a wrapped description line


def test_cli_reference_has_an_anchor_for_every_command_help_lists(capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    page = cli_reference.render()
    anchors = set(re.findall(r"\{#([a-z0-9-]+)\}", page))
    seen, queue = [], [[]]
    while queue:
        path = queue.pop()
        for name in _help_commands(path, capsys, monkeypatch):
            seen.append([*path, name])
            queue.append([*path, name])
    assert len(seen) >= 38  # 15 top-level commands and groups, their subcommands
    for path in seen:
        assert "-".join(path) in anchors, f"portraitcraft {' '.join(path)} has no entry in the CLI reference"
    assert "exit-codes" in anchors


def test_cli_reference_shows_options_defaults_and_exit_codes() -> None:
    page = cli_reference.render()
    track2 = page.split("{#eval-track2}", 1)[1].split("\n#", 1)[0]
    assert "<code>--strict</code> | Exit 4 when any image failed." in track2
    assert "[default: progress]" in track2 and "[required]" in track2
    assert "**Exit codes:** 0 scores computed; 3 nothing scored" in track2
    show = page.split("{#config-show}", 1)[1].split("\n#", 1)[0]
    assert "**Exit codes:** the [common codes](#exit-codes)." in show


def test_guides_nav_appends_unlisted_guides_by_title(tmp_path: Any) -> None:
    pages = hook_module("reference_pages")
    guides = tmp_path / "guides"
    guides.mkdir()
    (guides / "generate.md").write_text("# Generate\n")
    (guides / "zeta.md").write_text("# A later guide\n\ntext\n")
    (guides / "compare.md").write_text("no heading\n")
    nav = [{"Home": "index.md"}, {"Guides": ["guides/generate.md"]}]
    assert pages.guides_nav(nav, tmp_path)[1]["Guides"] == [
        "guides/generate.md", {"A later guide": "guides/zeta.md"}, {"Compare": "guides/compare.md"}]


def test_api_sources_tree_resolves_the_installed_names(tmp_path: Any) -> None:
    griffe = pytest.importorskip("griffe", reason="the docs extra (mkdocstrings) is not installed")
    api_sources = hook_module("api_sources")
    search = api_sources.build_tree(ROOT, tmp_path)
    module = griffe.load("portraitcraft.agents.geometry_critic", search_paths=[str(search)])
    assert "critique_geometry" in module.members
    assert module.filepath.resolve() == (ROOT / "agents" / "geometry_critic.py").resolve()
