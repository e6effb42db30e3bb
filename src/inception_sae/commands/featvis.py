"""`featvis`: render SAE features or neurons as images (Lucid recipe, batched)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import typer

from ..errors import UserError
from ..featvis.param import ParamConfig
from ..featvis.render import RenderConfig
from ..featvis.run import FeatvisJob, parse_ids, progress_view
from .common import DEVICE, SEED, WEIGHTS, console, option, out, warn_if_random


def featvis(
    sae: Path = typer.Option(None, "--sae", help="SAE folder (cfg.json + sae_weights.safetensors)."),
    features: str = typer.Option(None, "--features", help="SAE features to render, e.g. 0-99 or 3,7,10-12."),
    layer: str = typer.Option(None, "--layer", help="Layer for --neurons (default: the SAE's layer)."),
    neurons: str = typer.Option(None, "--neurons", help="Channels of --layer to render, e.g. 0-15."),
    out_dir: Path = typer.Option(..., "--out", help="Output folder: <layer>/{f,n}/<id>.png + featvis.json."),
    objective: str = option(FeatvisJob, "objective", "SAE objective: encoder (pre-activation) or decoder."),
    at: str = option(FeatvisJob, "at", "Read the unit at the centre position or its mean: center|mean."),
    diversity: int = option(FeatvisJob, "diversity", "Also render this many diverse variants per item (>1)."),
    diversity_weight: float = option(FeatvisJob, "diversity_weight", "Weight of the diversity term."),
    steps: int = option(RenderConfig, "steps", "Adam steps per image."),
    lr: float = option(RenderConfig, "lr", "Adam learning rate."),
    size: int = option(ParamConfig, "size", "Canvas size in pixels (upsampled to --model-size)."),
    model_size: int = option(RenderConfig, "model_size", "Input size fed to the network."),
    decay: float = option(ParamConfig, "decay", "Fourier spectrum decay exponent."),
    fourier: bool = option(ParamConfig, "fourier", "Fourier or pixel parameterisation.", "--fourier/--pixel"),
    redirected_relu: bool = option(RenderConfig, "redirected_relu", "Lucid's redirected ReLU gradients."),
    batch_size: int = option(FeatvisJob, "batch_size", "Images optimised together."),
    branch: str = typer.Option(None, "--branch", help="Restrict the objective to one branch: 1x1, 3x3, 5x5, pool."),
    weights: str = WEIGHTS,
    seed: int = SEED,
    device: str = DEVICE,
) -> None:
    """Render SAE features (--sae --features) or neurons (--layer --neurons); skips PNGs that exist."""
    from ..featvis.run import check_job
    from ..models.weights import load_model

    sae_w, layer, kind, ids = _target(sae, features, layer, neurons)
    try:
        render_cfg = RenderConfig(
            steps=steps,
            lr=lr,
            param=ParamConfig(size=size, fourier=fourier, decay=decay),
            model_size=model_size,
            redirected_relu=redirected_relu,
        )
    except ValueError as e:
        raise UserError(str(e)) from None
    # the str options' values are checked against the config's Literal fields (one-line errors)
    job = FeatvisJob(
        out=out_dir,
        layer=layer,
        kind=kind,
        ids=ids,
        render=render_cfg,
        objective=cast(Any, objective),
        at=cast(Any, at),
        diversity=diversity,
        diversity_weight=diversity_weight,
        batch_size=batch_size,
        seed=seed,
        branch=cast(Any, branch),
    )
    check_job(job, sae_w)  # fail in one line before loading the model
    model = load_model(weights, seed=seed, device=device)
    warn_if_random(model.identity)
    if sae_w is not None and sae_w.cfg.get("model") not in (None, model.identity):
        console.print(f"[yellow]warning[/]: the SAE was trained on {sae_w.cfg.get('model')}, not {model.identity}")
    index = _run_with_progress(model, job, sae_w, str(sae) if sae else None, device)
    items = index["layers"][layer][job.kind]["items"]
    out.print(f"{len(items)} {job.kind} items of {layer} in {out_dir / 'featvis.json'}")


def _target(sae: Path | None, features: str | None, layer: str | None, neurons: str | None):
    """(SAE weights or None, layer, kind "f"/"n", ids) from the CLI's selection flags."""
    from ..sae.model import load_layer_sae

    if (features is None) == (neurons is None):
        raise UserError("give exactly one of --features (with --sae) or --neurons (with --layer)")
    sae_w = load_layer_sae(sae, needed_by="featvis").frozen(sae) if sae is not None else None
    if features is not None and sae_w is None:
        raise UserError("--features needs --sae")
    layer = layer or (sae_w.layer if sae_w else None)
    if layer is None:
        raise UserError("--neurons needs --layer (or --sae to take its layer)")
    if features is not None:
        return sae_w, layer, "f", parse_ids(features)
    return sae_w, layer, "n", parse_ids(neurons or "")


def _run_with_progress(model, job, sae_w, sae_path: str | None, device: str) -> dict:
    """run_featvis under a progress bar over optimisation steps (features or neurons done, ETA).

    With diversity D a feature is 1 + D images, so the count is images / (1 + D).
    """
    from ..featvis.run import run_featvis

    per = 1 + (job.diversity if job.diversity > 1 else 0)
    with progress_view(console, f"featvis {job.layer}/{job.kind}", per) as tick:
        return run_featvis(model, job, sae_w, sae_path=sae_path, device=device, on_progress=tick)


def register(app: typer.Typer) -> None:
    app.command()(featvis)
