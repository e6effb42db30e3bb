"""`analyze`: statistics, examples, branch specialization, logit facets and labels of an SAE's features."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import DEVICE, SEED, WEIGHTS, console, warn_if_random


def analyze(
    sae: Path = typer.Option(..., "--sae", help="SAE folder (cfg.json with 'layer' + sae_weights.safetensors)."),
    images: Path = typer.Option(..., "--images", help="Image folder (recursive) or .txt list of images."),
    out: Path = typer.Option(..., "--out", help="Analysis folder to write."),
    eval_report: Path = typer.Option(
        None, "--eval-report", help="eval.json of this SAE (`eval --report`): its numbers head summary.json."
    ),
    max_images: int = typer.Option(None, "--max-images", help="Use only N images (seeded, spread over classes)."),
    weights: str = WEIGHTS,
    seed: int = SEED,
    device: str = DEVICE,
    batch_size: int = typer.Option(32, "--batch-size", help="Images per batch."),
    labels: Path = typer.Option(None, "--labels", help="inception5h labels TSV (index, wnid, name)."),
    label_source: str = typer.Option("auto", "--label-source", help="auto, true (wnids) or predicted (model top-1)."),
    input_size: int = typer.Option(224, "--input-size", help="Centre-crop side fed to the model."),
    top: int = typer.Option(20, "--top", help="Top examples kept per feature."),
    render_top: int = typer.Option(5, "--render-top", help="Top examples per feature with crop + heatmap files."),
    render_intervals: int = typer.Option(1, "--render-intervals", help="Examples per interval with image files."),
    null_samples: int = typer.Option(
        131072, "--null-samples", help="Most permutations per branch test (p-value floor 1/(N+1))."
    ),
    logit_effect: bool = typer.Option(
        True, "--logit-effect/--no-logit-effect", help="Logit effects (linearised before mixed5b)."
    ),
    umap: bool = typer.Option(True, "--umap/--no-umap", help="UMAP of decoder vectors (needs umap-learn)."),
    workers: int = typer.Option(0, "--workers", help="Image-decoding worker processes."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue from OUT/checkpoint when it matches."),
    checkpoint_every: float = typer.Option(
        300.0, "--checkpoint-every", help="Seconds between checkpoints (0: per pass)."
    ),
) -> None:
    """Analyse every feature of an SAE over a set of images and write ANALYSIS (summary.json, features/<id>.json)."""
    from ..analysis.config import AnalyzeConfig
    from ..analysis.run import analyze as run_analysis
    from ..analysis.run import validate
    from ..models.weights import load_model

    cfg = AnalyzeConfig(
        sae=sae, images=images, out=out, eval_report=eval_report, max_images=max_images, weights=weights, seed=seed,
        device=device,
        batch_size=batch_size, labels=labels, input_size=input_size, n_top=top, render_top=render_top,
        render_intervals=render_intervals, n_null=null_samples, logit_effect=logit_effect, umap=umap,
        label_source=label_source, workers=workers, resume=resume, checkpoint_every_s=checkpoint_every,
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
