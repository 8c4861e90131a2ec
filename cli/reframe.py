"""`portraitcraft reframe IMAGE --out OUT.png`: crop (or pad) a picture so its subject sits where asked."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from portraitcraft.cli.common import ConfigOption, config_from_cli, console, print_json
from portraitcraft.errors import InputError

HORIZONTAL = ("left", "center", "right")
VERTICAL = ("upper", "middle", "lower")


def reframe(
    image: Path = typer.Argument(..., help="The picture to reframe."),
    horizontal: str | None = typer.Option(None, "--horizontal", help="left | center | right (viewer's frame)."),
    vertical: str | None = typer.Option(None, "--vertical", help="upper | middle | lower (of the face centre)."),
    aspect: str | None = typer.Option(None, "--aspect", help="W:H of the result (default: the image's)."),
    out: Path = typer.Option(..., "--out", help="Where to write the reframed PNG."),
    as_json: bool = typer.Option(False, "--json", help="Print crop_box, kept_fraction and the subject after."),
    config: Path | None = ConfigOption,
) -> None:
    """Largest crop (or a pad on the side that gives room) putting the subject where asked; never cuts the head."""
    if horizontal is not None and horizontal not in HORIZONTAL:
        raise InputError(f"--horizontal {horizontal!r}: expected one of {', '.join(HORIZONTAL)}")
    if vertical is not None and vertical not in VERTICAL:
        raise InputError(f"--vertical {vertical!r}: expected one of {', '.join(VERTICAL)}")
    if out.is_dir():
        raise InputError(f"--out {out}: is a folder; give the PNG file's path")
    cfg = config_from_cli(config)
    from PIL import PngImagePlugin

    from portraitcraft.agents.reframe import parse_aspect
    from portraitcraft.agents.reframe import reframe as do_reframe
    from portraitcraft.atomic import save_image_atomic
    from portraitcraft.tools.images import load_image
    from portraitcraft.tools.vision import analyze

    ratio = parse_aspect(aspect) if aspect is not None else None
    picture = load_image(image)
    analysis = analyze(picture, cfg.vision)
    result = do_reframe(picture, analysis, horizontal=horizontal, vertical=vertical, aspect=ratio,
                        config=cfg.vision)
    info = PngImagePlugin.PngInfo()
    info.add_itxt("portraitcraft:reframe", json.dumps({
        "source": str(image), "crop_box": list(result.crop_box), "padding": list(result.padding),
        "fill": result.fill, "kept_fraction": result.kept_fraction}))
    save_image_atomic(result.image, out, pnginfo=info)
    after = result.after.subject if result.after is not None else None
    if as_json:
        print_json({"image": str(image), "out": str(out), "crop_box": list(result.crop_box),
                    "padding": list(result.padding), "fill": result.fill, "kept_fraction": result.kept_fraction,
                    "subject": after.model_dump(mode="json") if after else None})
        return
    console.print(f"wrote {out} ({result.image.width}x{result.image.height}): crop box {list(result.crop_box)}, "
                  f"padding {list(result.padding)} (fill {result.fill}), kept {result.kept_fraction:.0%} of the "
                  "source", highlight=False)
    if after is not None:
        console.print(f"subject now {after.horizontal} / {after.vertical}, crop level {after.crop_level}",
                      highlight=False)
