"""`portraitcraft serve reward`: the critic and judge as an HTTP reward server (Flow-Factory's protocol)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import typer

from portraitcraft.cli.common import ConfigOption, SetOption, config_from_cli, console, err_console
from portraitcraft.errors import InputError

app = typer.Typer(no_args_is_help=True)
NORMALISE = ("group", "none")


def port_taken(host: str, port: int) -> str | None:
    """Why `host:port` cannot be listened on now (taken, or not an address of this machine), else None."""
    if port == 0:
        return None
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind((host, port))
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


async def _probe(scorers: Any) -> dict[str, str]:
    try:
        return await scorers.unreachable()
    finally:
        await scorers.aclose()


@app.command("reward")
def reward(
    config: Path | None = ConfigOption,
    sets: list[str] | None = SetOption,
    port: int | None = typer.Option(None, "--port", min=0, max=65535, help="Port (default reward.port)."),
    host: str | None = typer.Option(None, "--host", help="Interface (default reward.host, 127.0.0.1)."),
    normalise: str | None = typer.Option(None, "--normalise", help="group: z-scores within each prompt's group "
                                         "(Flow-Factory RemoteGroupwiseRewardModel); none: absolute rewards in "
                                         "[0, 1], independent of the batch (RemotePointwiseRewardModel). Default "
                                         "reward.normalise (group)."),
) -> None:
    """Serve POST /compute (prompts + base64 images -> one reward per image), /health and /metrics.

    Each image is scored on the geometric critic's pass ratio, the VLM rule critic's pass ratio, the judge's
    content and composition and, when a request sends condition_images, its fidelity to its source; the
    objectives are combined with reward.weights after --normalise. Every scorer endpoint is probed first: none
    usable is exit 2; /health answers 503 while any does not answer. A port in use is exit 3. Point
    Flow-Factory's RemoteGroupwiseRewardModel (group) or RemotePointwiseRewardModel (none) `server_url` at it.
    """
    try:
        import uvicorn
    except ImportError:
        raise InputError("the reward server needs fastapi and uvicorn (pip install 'portraitcraft[serve]')") from None
    from portraitcraft.train.reward_server import build_app
    from portraitcraft.train.scorers import build_scorers

    if normalise is not None and normalise not in NORMALISE:
        raise InputError(f"--normalise {normalise!r}: use one of {', '.join(NORMALISE)}")
    cfg = config_from_cli(config, sets, reward={"port": port, "host": host, "normalise": normalise})
    where = f"{cfg.reward.host}:{cfg.reward.port}"
    busy = port_taken(cfg.reward.host, cfg.reward.port)
    if busy is not None:
        err_console.print(f"error: cannot listen on {where}: {busy}; choose another --port or stop the server using it",
                  highlight=False, markup=False)
        raise typer.Exit(3)
    scorers = build_scorers(cfg)
    for objective, why in scorers.skipped.items():
        err_console.print(f"skipped {objective}: {why}", highlight=False, markup=False)
    unreachable = asyncio.run(_probe(scorers))  # the probe's clients close with its loop: the server builds anew
    for name, why in unreachable.items():
        err_console.print(f"unreachable {name}: {why}", highlight=False, markup=False)
    if not scorers.scorers or len(unreachable) == len(scorers.scorers):
        raise InputError("no reward objective is usable: start the endpoints named above, or set reward.weights "
                         "for objectives this install can score")
    console.print(f"reward server on http://{where} objectives: {', '.join(scorers.objectives)} "
                  f"(normalise: {cfg.reward.normalise}"
                  f"{'; /health answers 503 until these answer: ' + ', '.join(unreachable) if unreachable else ''})",
                  highlight=False, markup=False)
    uvicorn.run(build_app(build_scorers(cfg), cfg.reward), host=cfg.reward.host, port=cfg.reward.port,
                log_level="warning")
