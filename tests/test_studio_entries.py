"""The Studio entries (graphs/studio.py) called in process: the understand entry builds the assessor context
from a JSON context and votes one Track 1 item (the oracle behind the fake VLM); bad items and contexts are a
`failed` outcome naming the problem, never a crash. `tests/test_studio.py` drives both through `langgraph dev`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_vlm import API_KEY_ENV, FakeVLMServer
from pydantic import ValidationError
from understand_oracle import Oracle

from portraitcraft.graphs.studio import generate, understand
from portraitcraft.schemas import ATTRIBUTES

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


async def test_understand_entry_votes_one_item_from_a_json_context(fake_vlm: FakeVLMServer, tmp_path: Path) -> None:
    labels = json.loads((EXAMPLES / "track_1_test_labels.json").read_text())
    fake_vlm.script.default(fn=Oracle(labels, {p.name: p for p in (EXAMPLES / "images").rglob("*.jpg")}))
    config = tmp_path / "understand.toml"
    config.write_text(f'[assessor]\nbase_url = "{fake_vlm.base_url}"\nmodel = "{fake_vlm.model}"\n'
                      f'api_key_env = "{API_KEY_ENV}"\nmax_retries = 0\nsamples = 3\n\n'
                      f'[run]\ncache_dir = "{tmp_path / "cache"}"\n')
    item = json.loads((EXAMPLES / "track_1_test.json").read_text())[0]
    context = {"config": str(config), "run_dir": str(tmp_path / "run"), "images": str(EXAMPLES / "images")}
    out = await understand.ainvoke({"item": item}, context=context)
    assert out["status"] == "finished", out
    truth = next(x for x in labels if x["image_path"] == item["image_path"])
    assert out["levels"] == {a: truth["criteria"][a]["level"] for a in ATTRIBUTES}
    assert out["answer"] == truth["answer"] and isinstance(out["total_score"], float)
    missing = await understand.ainvoke({"item": {**item, "image_path": "nowhere.jpg"}}, context=context)
    assert missing["status"] == "failed" and "image not found" in missing["error"]


async def test_bad_items_and_contexts_are_failed_outcomes(tmp_path: Path) -> None:
    no_text = await generate.ainvoke({"item": {"image_path": "x.png"}}, context={"run_dir": str(tmp_path / "r")})
    assert no_text["status"] == "failed" and "content" in no_text["error"]
    with pytest.raises(ValidationError, match="strategy"):  # LangGraph validates the context before any node
        await generate.ainvoke({"item": {"image_path": "x.png", "content_description": "a man"}},
                               context={"strategy": "greedy"})
    no_config = await understand.ainvoke({"item": {"image_path": "a.jpg"}},
                                         context={"config": str(tmp_path / "absent.toml")})
    assert no_config["status"] == "failed" and "absent.toml" in no_config["error"]
