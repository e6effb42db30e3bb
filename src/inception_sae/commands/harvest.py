"""`harvest`, `store info` and `store verify`: build and inspect activation stores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import typer

from ..data.harvest import HarvestConfig
from .common import DEVICE, SEED, WEIGHTS, console, option, out, warn_if_random


def harvest(
    images: Path = typer.Option(..., "--images", help="Image folder (recursive) or a .txt list of image paths."),
    layer: list[str] = typer.Option(
        ...,
        "--layer",
        help="Layer or single branch, e.g. mixed4d or mixed4d_5x5; "
        "repeat to harvest several layers in one pass over the images.",
    ),
    out_dir: Path = typer.Option(
        ...,
        "--out",
        help="Store folder (with several --layer: a folder of <layer>/ stores); rerunning the same command resumes it.",
    ),
    per_image: int = option(HarvestConfig, "per_image", "Vectors per image and view."),
    sampling: str = option(HarvestConfig, "sampling", "top-norm | norm-weighted | uniform | all."),
    views: int = option(HarvestConfig, "views", "Views per image: the eval crop + (V-1) random resized crops/flips."),
    max_images: int = option(HarvestConfig, "max_images", "Use only N images (seeded, spread over classes)."),
    weights: str = WEIGHTS,
    seed: int = SEED,
    dtype: str = option(HarvestConfig, "dtype", "Storage dtype: float16 or float32."),
    device: str = DEVICE,
    workers: int = option(HarvestConfig, "workers", "DataLoader worker processes decoding images."),
    batch_size: int = option(HarvestConfig, "batch_size", "Images per forward pass."),
    shard_size: int = option(HarvestConfig, "shard_size", "Vectors per shard (approximate)."),
    resize: int = option(HarvestConfig, "resize", "Short side after resizing."),
    crop: int = option(HarvestConfig, "crop", "Centre-crop side."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Harvest activation vectors of one or more layers (one pass over the images) into resumable stores."""
    from ..data.harvest import harvest_layers

    layers = list(dict.fromkeys(layer))

    def config(x: str) -> HarvestConfig:
        # the str options' values are checked against the config's Literal fields (one-line errors)
        return HarvestConfig(
            images=images, layer=x, out=out_dir if len(layers) == 1 else out_dir / x, per_image=per_image,
            sampling=cast(Any, sampling), views=views, max_images=max_images, weights=weights, seed=seed,
            dtype=cast(Any, dtype), device=device, workers=workers, batch_size=batch_size, shard_size=shard_size,
            resize=resize, crop=crop, progress=progress,
        )  # fmt: skip

    cfgs = [config(x) for x in layers]
    if weights and weights.startswith("random"):
        warn_if_random(f"random:{seed}")
    for result in harvest_layers(cfgs):
        if result.complete:
            console.print(
                f"{result.store}: complete, {result.vectors:,} vectors; this run {result.images} images "
                f"in {result.seconds:.1f} s ({result.images_per_s:.1f} img/s); skipped {result.skipped} unreadable"
            )


store_app = typer.Typer(help="Inspect and check activation stores.", no_args_is_help=True)


@store_app.command("info")
def store_info(store: Path = typer.Argument(..., help="Store folder.")) -> None:
    """Summary of a store: layer, d, dtype, vectors, shards, model, sampling, status, what a training batch mixes."""
    from ..data.reader import StoreSource
    from ..data.store import ActivationStore

    st = ActivationStore.open(store)
    info = st.info()
    if len(st) > 0:  # images and classes (folder names) a default training batch (4096, seed 0) spans on average
        info["batch_mixing"] = StoreSource(st, min(4096, len(st))).mixing()
    out.print_json(json.dumps(info))


@store_app.command("verify")
def store_verify(store: Path = typer.Argument(..., help="Store folder.")) -> None:
    """Re-hash every shard against the manifest; exit 1 on any mismatch."""
    from ..data.store import ActivationStore

    s = ActivationStore.open(store)
    problems = s.verify()
    for p in problems:
        console.print(f"[red]{p}[/]")
    if problems:
        console.print(f"{store}: {len(problems)} problem(s) in {len(s.shards)} shards")
        raise typer.Exit(1)
    out.print(f"{store}: {len(s.shards)} shards, {len(s):,} vectors, all sha256 match ({s.status})")


def register(app: typer.Typer) -> None:
    app.command()(harvest)
    app.add_typer(store_app, name="store")
