"""`portraitcraft serve reward`: the critic and judge as an HTTP reward server (Flow-Factory's protocol)."""

from __future__ import annotations

from pathlib import Path

import typer

from portraitcraft.cli.common import ConfigOption, SetOption, config_from_cli, console
from portraitcraft.errors import InputError

app = typer.Typer(no_args_is_help=True)


@app.command("reward")
def reward(
    config: Path | None = ConfigOption,
    sets: list[str] | None = SetOption,
    port: int | None = typer.Option(None, "--port", min=0, max=65535, help="Port (default reward.port)."),
    host: str | None = typer.Option(None, "--host", help="Interface (default reward.host, 127.0.0.1)."),
) -> None:
    """Serve POST /compute (prompts + base64 images -> one reward per image), /health and /metrics.

    Each image is scored on the geometric critic's pass ratio, the VLM rule critic's pass ratio and the
    judge's content and composition; each objective is z-scored within the request's group (images sharing
    a prompt) and combined with reward.weights. Point Flow-Factory's RemotePointwiseRewardModel or
    RemoteGroupwiseRewardModel `server_url` at it.
    """
    try:
        import uvicorn
    except ImportError:
        raise InputError("the reward server needs fastapi and uvicorn (pip install 'portraitcraft[serve]')") from None
    from portraitcraft.train.reward_server import build_app
    from portraitcraft.train.scorers import build_scorers

    cfg = config_from_cli(config, sets, reward={"port": port, "host": host})
    scorers = build_scorers(cfg)
    for objective, why in scorers.skipped.items():
        console.print(f"[yellow]skipped[/yellow] {objective}: {why}", highlight=False)
    if not scorers.scorers:
        raise InputError("no reward objective is available: set reward.weights for ones this install has")
    console.print(f"reward server on http://{cfg.reward.host}:{cfg.reward.port} objectives: "
                  f"{', '.join(scorers.objectives)}", highlight=False)
    uvicorn.run(build_app(scorers, cfg.reward), host=cfg.reward.host, port=cfg.reward.port, log_level="warning")
