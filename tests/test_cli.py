from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from portraitcraft.cli import app

runner = CliRunner()


def test_help_lists_the_command_groups() -> None:
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for name in ("data", "config", "doctor"):
        assert name in res.output


def test_doctor_json_reports_each_check(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[judge]\nbase_url = "http://127.0.0.1:9/v1"\n[generator]\nmodel = "org/not-cached"\n')
    res = runner.invoke(app, ["doctor", "--json", "--config", str(cfg), "--timeout", "1"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["python"]["status"] == "ok"
    assert by_name["weights generator.model"]["status"] == "warn"
    assert "hf download org/not-cached" in by_name["weights generator.model"]["hint"]
    judge = next(c for n, c in by_name.items() if "judge" in n)
    assert judge["status"] == "fail" and "does not answer" in judge["detail"] and judge["hint"]
    assert report["ok"] is False
    strict = runner.invoke(app, ["doctor", "--json", "--config", str(cfg), "--timeout", "1", "--strict"])
    assert strict.exit_code == 4  # --strict with some failed check


def test_config_show_masks_and_applies_overrides(tmp_path: Path) -> None:
    res = runner.invoke(app, ["config", "show", "--json", "--set", "judge.model=m-flag",
                              "--set", "critic.extra={api_key='sk-zzz'}"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["judge"]["model"] == "m-flag" and data["critic"]["extra"]["api_key"] == "***"
    assert "sk-zzz" not in res.stdout


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "c.toml"
    bad.write_text("[judge]\nbogus = 1\n")
    proc = subprocess.run([sys.executable, "-m", "portraitcraft.cli", "config", "show", "--config", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "config key judge.bogus: unknown key" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_doctor_endpoint_checks_against_a_live_server(fake_vlm, tmp_path: Path, monkeypatch) -> None:
    fake_vlm.script.models = ["served-model"]
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[critic]\nbase_url = "{fake_vlm.base_url}"\nmodel = "served-model"\n'
        f'[judge]\nbase_url = "{fake_vlm.base_url}"\nmodel = "other-model"\n'
        f'[assessor]\nbase_url = "{fake_vlm.base_url}"\nmodel = "served-model"\napi_key_env = "DOC_KEY"\n'
    )
    fake_vlm.script.api_key = "right-key"
    monkeypatch.setenv("DOC_KEY", "right-key")
    res = runner.invoke(app, ["doctor", "--json", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    checks = {c["name"]: c for c in json.loads(res.stdout)["checks"] if c["name"].startswith("endpoint")}
    assert checks["endpoint assessor"]["status"] == "ok"
    assert "serves served-model" in checks["endpoint assessor"]["detail"]
    critic = next(c for n, c in checks.items() if "critic" in n)  # OPENAI_API_KEY unset: the key is refused
    assert critic["status"] == "fail" and "HTTP 401" in critic["detail"] and "OPENAI_API_KEY" in critic["hint"]
    fake_vlm.script.api_key = None
    res = runner.invoke(app, ["doctor", "--json", "--config", str(cfg)])
    checks = {c["name"]: c for c in json.loads(res.stdout)["checks"] if c["name"].startswith("endpoint")}
    judge = next(c for n, c in checks.items() if "judge" in n)
    assert judge["status"] == "fail" and "does not serve other-model; it serves: served-model" in judge["detail"]
    assert "sk-" not in res.stdout and "right-key" not in res.stdout
