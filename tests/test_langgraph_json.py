"""langgraph.json points at compiled graphs that load (LangGraph Studio / `langgraph dev`)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_graph_entry_loads() -> None:
    spec = json.loads((ROOT / "langgraph.json").read_text())
    assert set(spec["graphs"]) == {"generate", "understand"}
    for name, target in spec["graphs"].items():
        path, attr = target.split(":")
        module_spec = importlib.util.spec_from_file_location(f"lg_{name}", ROOT / path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        graph = getattr(module, attr)
        assert graph.get_graph().nodes, name
        # a client can only send JSON: the context the server builds must be plain JSON fields
        schema = graph.get_context_jsonschema()
        assert schema is not None and schema["properties"], name
        assert graph.get_input_jsonschema()["properties"].keys() == {"item"}, name
