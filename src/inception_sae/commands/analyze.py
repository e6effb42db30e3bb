"""`analyze`: statistics, examples, branch specialization, logit facets and labels of an SAE's features."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import typer

from ..analysis.config import AnalyzeConfig
from .common import DEVICE, SEED, WEIGHTS, console, deprecated, option, pick, warn_if_random


def analyze(
    sae: Path = typer.Option(..., "--sae", help="SAE folder (cfg.json with 'layer' + sae_weights.safetensors)."),
    images: Path = typer.Option(..., "--images", help="Image folder (recursive) or .txt list of images."),
    out: Path = typer.Option(..., "--out", help="Analysis folder to write."),
    eval_report: Path = typer.Option(
        None, "--eval-report", help="`eval --report` JSON of this SAE: its numbers head summary.json."
    ),
    max_images: int = option(AnalyzeConfig, "max_images", "Use only N images (seeded, spread over classes)."),
    weights: str = WEIGHTS,
    seed: int = SEED,
    device: str = DEVICE,
    batch_size: int = option(AnalyzeConfig, "batch_size", "Images per batch."),
    labels: Path = option(AnalyzeConfig, "labels", "inception5h labels TSV (index, wnid, name)."),
    label_source: str = option(AnalyzeConfig, "label_source", "auto, true (wnids) or predicted (model top-1)."),
    input_size: int = option(AnalyzeConfig, "input_size", "Centre-crop side fed to the model."),
    n_top: int = option(AnalyzeConfig, "n_top", "Top examples kept per feature."),
    n_intervals: int = option(AnalyzeConfig, "n_intervals", "Equal-width activation intervals from 0 to the max."),
    per_interval: int = option(AnalyzeConfig, "per_interval", "Examples sampled per interval."),
    render_top: int = option(AnalyzeConfig, "render_top", "Top examples per feature with crop + heatmap files."),
    render_intervals: int = option(AnalyzeConfig, "render_intervals", "Examples per interval with image files."),
    training_examples: bool = option(
        AnalyzeConfig, "training_examples", "Also examples on the positions the SAE was trained on."
    ),
    family: str = option(AnalyzeConfig, "family", "Family to highlight in the branch figures: 3,17,40 or label:TEXT."),
    logit_effect: bool = option(AnalyzeConfig, "logit_effect", "Logit effects (linearised before mixed5b)."),
    umap: bool = option(AnalyzeConfig, "umap", "UMAP of decoder vectors (needs umap-learn)."),
    workers: int = option(AnalyzeConfig, "workers", "Image-decoding worker processes."),
    resume: bool = option(AnalyzeConfig, "resume", "Continue from OUT/checkpoint when it matches."),
    checkpoint_every_s: float = option(
        AnalyzeConfig, "checkpoint_every_s", "Seconds between checkpoints (0: per pass)."
    ),
    harvest_rule: str = option(
        AnalyzeConfig, "harvest_rule", "For an SAE folder that records none: top-norm:N[:SEED], all, none..."
    ),
    top: int = deprecated("--top", "--n-top"),
    checkpoint_every: float = deprecated("--checkpoint-every", "--checkpoint-every-s"),
) -> None:
    """Analyse every feature of an SAE over a set of images and write ANALYSIS (summary.json, features/<id>.json)."""
    from ..analysis.run import analyze as run_analysis
    from ..analysis.run import validate
    from ..models.weights import load_model

    # the str options' values are checked against the config's Literal fields (one-line errors)
    cfg = AnalyzeConfig(
        sae=sae, images=images, out=out, eval_report=eval_report, max_images=max_images, weights=weights, seed=seed,
        device=device,
        batch_size=batch_size, labels=labels, input_size=input_size, n_top=pick(n_top, top, "--top", "--n-top"),
        n_intervals=n_intervals, per_interval=per_interval, render_top=render_top, render_intervals=render_intervals,
        training_examples=training_examples, family=family, logit_effect=logit_effect, umap=umap,
        label_source=cast(Any, label_source), workers=workers, resume=resume,
        checkpoint_every_s=pick(checkpoint_every_s, checkpoint_every, "--checkpoint-every", "--checkpoint-every-s"),
        harvest_rule=harvest_rule,
    )  # fmt: skip
    validate(cfg)
    model = load_model(weights, seed=seed, device=device)
    warn_if_random(model.identity)
    result = run_analysis(cfg, model=model, progress=True)
    s = result.summary
    console.print(
        f"{s['layer']}: {s['counts']['features']} features over {s['images']['analysed']} images "
        f"({s['counts']['dead']} dead, {s['counts']['dense']} dense) in {s['timings_s']['total']:.1f} s -> {out}"
    )


def register(app: typer.Typer) -> None:
    app.command()(analyze)
