"""`layers` and `classify`: inspect the network and run it on images."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import UserError
from .common import MODEL, Model, out
from .options import stage


def layers(
    input_size: int = typer.Option(224, "--input-size", help="Input side in pixels."),
    branches: bool = typer.Option(True, "--branches/--no-branches", help="Show each mixed layer's branches."),
) -> None:
    """List every layer: channels, spatial size, jump and receptive field; branches with their slices."""
    from ..models.layers import STAGE_NAMES, layer_info

    if input_size < 1:
        raise UserError(f"--input-size {input_size}: give a side of at least 1 pixel (224 is the model's own)")
    fmt = "{:<22} {:<8} {:>8} {:>9} {:>5} {:>5}  {:<10} {:<6}"
    print(f"InceptionV1 (inception5h) at {input_size}x{input_size}; RF and jump in input pixels")
    print(fmt.format("layer", "kind", "channels", "size", "jump", "RF", "slice", "kernel").rstrip())
    for name in STAGE_NAMES:
        info = layer_info(name, input_size)
        print(
            fmt.format(name, info.kind, info.channels, f"{info.size}x{info.size}", info.jump, info.rf, "", "").rstrip()
        )
        for b in info.branches if branches else ():
            sl = f"{b.slice[0]}-{b.slice[1] - 1}"
            print(fmt.format("  " + b.layer, "branch", b.channels, "", "", b.rf, sl, f"{b.kernel}x{b.kernel}").rstrip())
    print(fmt.format("avgpool", "pool", 1024, "1x1", "", "", "", "").rstrip())
    print(fmt.format("logits", "fc", 1008, "1x1", "", "", "", "").rstrip())


@stage(model=MODEL)
def classify(
    images: list[Path] = typer.Argument(..., help="Image files, or folders (their images, recursively)."),
    top: int = typer.Option(5, "--top", help="How many classes to show per image."),
    labels: Path = typer.Option(None, "--labels", help="inception5h labels TSV (index, wnid, name)."),
    model: Model = Model(),
) -> None:
    """Print the top classes and probabilities for each image."""
    import torch

    from ..data.images import ImageDecodeError, list_images, load_image
    from ..data.labels import load_labels
    from ..models.layers import NUM_CLASSES

    if not 1 <= top <= NUM_CLASSES:
        raise UserError(f"--top {top}: choose 1..{NUM_CLASSES} (the model has {NUM_CLASSES} outputs)")
    net, device = model.load(), model.device
    names = load_labels(labels)
    paths = [p for arg in images for p in ([arg / r for r in list_images(arg)] if arg.is_dir() else [arg])]
    if not paths:
        raise UserError(f"no images found in {', '.join(map(str, images))}")
    for path in paths:
        try:
            x = load_image(path).unsqueeze(0).to(device)
        except ImageDecodeError as e:
            out.print(f"{path}: skipped ({e.reason})")
            continue
        with torch.no_grad():
            probs = net.probabilities(x)[0]
        p, idx = probs.topk(top)
        tag = "  [UNTRAINED WEIGHTS]" if net.is_random else ""
        out.print(f"{path}{tag}")
        for pi, ii in zip(p.tolist(), idx.tolist(), strict=True):
            out.print(f"  {pi:7.4f}  {ii:4d}  {names[ii]}")


def register(app: typer.Typer) -> None:
    app.command()(layers)
    app.command()(classify)
