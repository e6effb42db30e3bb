"""`harvest`, `store info` and `store verify`: build and inspect activation stores."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..data.harvest import HarvestPassConfig, HarvestSettings
from ..settings import values
from .common import MODEL, Model, console, out, warn_if_random
from .options import Group, stage


@stage(settings=Group(HarvestSettings, "harvest"), model=MODEL)
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
    settings: HarvestSettings = HarvestSettings(),
    model: Model = Model(),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Harvest activation vectors of one or more layers (one pass over the images) into resumable stores."""
    from ..data.harvest import run

    layers = tuple(dict.fromkeys(layer))
    outs = (out_dir,) if len(layers) == 1 else tuple(out_dir / x for x in layers)
    cfg = HarvestPassConfig(images=images, layers=layers, outs=outs, **values(settings), **values(model))
    if model.weights and model.weights.startswith("random"):
        warn_if_random(f"random:{model.seed}")
    for result in run(cfg, progress=progress):
        if result.complete:
            console.print(
                f"{result.store}: complete, {result.vectors:,} vectors; this run {result.images} images "
                f"in {result.seconds:.1f} s ({result.images_per_s:.1f} img/s); skipped {result.skipped} unreadable"
            )


store_app = typer.Typer(help="Inspect and check activation stores.", no_args_is_help=True, rich_markup_mode=None)


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
