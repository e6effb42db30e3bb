"""`featvis`: render SAE features or neurons as images (Lucid recipe, batched)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import UserError
from ..featvis.run import FeatvisConfig, FeatvisSettings, job_from, parse_ids, progress_view
from ..settings import values
from .common import MODEL, Model, console, out
from .options import Group, stage


@stage(settings=Group(FeatvisSettings, "featvis"), model=MODEL)
def featvis(
    sae: Path = typer.Option(None, "--sae", help="SAE folder (cfg.json + sae_weights.safetensors)."),
    features: str = typer.Option(None, "--features", help="SAE features to render, e.g. 0-99 or 3,7,10-12."),
    layer: str = typer.Option(None, "--layer", help="Layer for --neurons (default: the SAE's layer)."),
    neurons: str = typer.Option(None, "--neurons", help="Channels of --layer to render, e.g. 0-15."),
    out_dir: Path = typer.Option(..., "--out", help="Output folder: <layer>/{f,n}/<id>.png + featvis.json."),
    branch: str = typer.Option(None, "--branch", help="Restrict the objective to one branch: 1x1, 3x3, 5x5, pool."),
    settings: FeatvisSettings = FeatvisSettings(),
    model: Model = Model(),
) -> None:
    """Render SAE features (--sae --features) or neurons (--layer --neurons); skips PNGs that exist."""
    from ..featvis.run import check_job

    sae_w, layer, kind, ids = _target(sae, features, layer, neurons)
    job = job_from(settings, out=out_dir, layer=layer, kind=kind, ids=ids, branch=branch,
                   sae=sae if kind == "f" else None, **values(model))  # fmt: skip
    check_job(job, sae_w)  # fail in one line before loading the model
    net = model.load()
    if sae_w is not None and sae_w.cfg.get("model") not in (None, net.identity):
        console.print(f"[yellow]warning[/]: the SAE was trained on {sae_w.cfg.get('model')}, not {net.identity}")
    result = _run_with_progress(job, net)
    out.print(f"{result.items} {job.kind} items of {layer} in {out_dir / 'featvis.json'}")


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


def _run_with_progress(job: FeatvisConfig, model):
    """The featvis run under a progress bar over optimisation steps (features or neurons done, ETA).

    With diversity D a feature is 1 + D images, so the count is images / (1 + D).
    """
    from ..featvis.run import run

    per = 1 + (job.diversity if job.diversity > 1 else 0)
    with progress_view(console, f"featvis {job.layer}/{job.kind}", per) as tick:
        return run(job, model, on_progress=tick)


def register(app: typer.Typer) -> None:
    app.command()(featvis)
