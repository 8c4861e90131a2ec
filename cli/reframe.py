"""`portraitcraft reframe IMAGE --out OUT.png`: crop a picture so its subject sits where asked (pad only with a
generative model, or with a synthetic fill the user asks for)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from portraitcraft.cli.common import ConfigOption, config_from_cli, console, print_json
from portraitcraft.errors import InputError

HORIZONTAL = ("left", "center", "right")
VERTICAL = ("upper", "middle", "lower")
FILLS = ("none", "outpaint", "blur", "reflect")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def reframe(
    image: Path = typer.Argument(..., help="The picture to reframe."),
    horizontal: str | None = typer.Option(None, "--horizontal", help="left | center | right (viewer's frame)."),
    vertical: str | None = typer.Option(None, "--vertical", help="upper | middle | lower (of the face centre)."),
    aspect: str | None = typer.Option(None, "--aspect", help="W:H of the result (default: the image's)."),
    out: Path = typer.Option(..., "--out", help="Where to write the reframed PNG."),
    fill: str | None = typer.Option(
        None, "--fill", help="When no crop meets the target: none (default: keep the best crop, marked 'needs "
        "outpainting'), outpaint (the [editor] model repaints the pad), or the synthetic blur | reflect."),
    force: bool = typer.Option(False, "--force", help="Allow --out to be the input file (it is replaced)."),
    as_json: bool = typer.Option(False, "--json", help="Print crop_box, padding, fill, kept_fraction, "
                                 "needs_outpainting, size and the subject after."),
    config: Path | None = ConfigOption,
) -> None:
    """Largest crop putting the subject where asked (never cuts the head); pads only with --fill."""
    if horizontal is not None and horizontal not in HORIZONTAL:
        raise InputError(f"--horizontal {horizontal!r}: expected one of {', '.join(HORIZONTAL)}")
    if vertical is not None and vertical not in VERTICAL:
        raise InputError(f"--vertical {vertical!r}: expected one of {', '.join(VERTICAL)}")
    if fill is not None and fill not in FILLS:
        raise InputError(f"--fill {fill!r}: expected one of {', '.join(FILLS)}")
    if out.is_dir():
        raise InputError(f"--out {out}: is a folder; give the PNG file's path")
    if _same_file(image, out) and not force:
        raise InputError(f"--out {out} is the input picture: it would be replaced; give another path, or --force")
    synthetic = fill if fill in ("blur", "reflect") else None
    cfg = config_from_cli(config, vision={"reframe_fill": synthetic or ("none" if fill else None)})
    from portraitcraft.agents.reframe import ReframeError, parse_aspect
    from portraitcraft.agents.reframe import reframe as do_reframe
    from portraitcraft.tools.images import load_image
    from portraitcraft.tools.provenance import REFRAME_KEY, save_with_provenance
    from portraitcraft.tools.vision import analyze

    try:
        ratio = parse_aspect(aspect) if aspect is not None else None
    except ReframeError as exc:  # a usage problem (exit 2), not "nothing to reframe"
        raise InputError(f"--aspect: {exc}") from None
    picture = load_image(image)
    outpaint = None
    if fill == "outpaint":
        from portraitcraft.tools.diffusion.outpaint import InpaintOutpainter

        outpaint = InpaintOutpainter(cfg.editor).fill()
    analysis = analyze(picture, cfg.vision)
    result = do_reframe(picture, analysis, horizontal=horizontal, vertical=vertical, aspect=ratio,
                        config=cfg.vision, outpaint=outpaint)
    record = result.record(str(image))
    if result.pad_mask is not None:
        mask_path = out.with_name(out.stem + ".pad_mask.png")
        save_with_provenance(result.pad_mask, mask_path)
        record["pad_mask"] = str(mask_path)
    save_with_provenance(result.image, out, {REFRAME_KEY: record})
    after = result.after.subject if result.after is not None else None
    if as_json:
        print_json({"image": str(image), "out": str(out), **{k: v for k, v in record.items() if k != "source"},
                    "subject": after.model_dump(mode="json") if after else None})
        return
    w, h = result.image.size
    console.print(f"wrote {out} ({w}x{h}): crop box {list(result.crop_box)}, padding {list(result.padding)} "
                  f"(fill {result.fill}), kept {result.kept_fraction:.0%} of the source", highlight=False, markup=False)
    if result.needs_outpainting:
        console.print("needs outpainting: no crop puts the subject where asked; this is the best crop (run with "
                      "--fill outpaint and an [editor] model to pad it)", highlight=False, markup=False)
    if after is not None:
        console.print(f"subject now {after.horizontal} / {after.vertical}, crop level {after.crop_level}",
                      highlight=False)
