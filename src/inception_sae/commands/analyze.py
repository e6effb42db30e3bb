"""`analyze`: statistics, examples, branch specialization, logit facets and labels of an SAE's features."""

from __future__ import annotations

from pathlib import Path

import typer

from ..analysis.config import AnalysisSettings, AnalyzeConfig
from ..settings import values
from .common import MODEL, Model, console
from .options import Group, stage


@stage(settings=Group(AnalysisSettings, "analyze"), model=MODEL)
def analyze(
    sae: Path = typer.Option(..., "--sae", help="SAE folder (cfg.json with 'layer' + sae_weights.safetensors)."),
    images: Path = typer.Option(..., "--images", help="Image folder (recursive) or .txt list of images."),
    out: Path = typer.Option(..., "--out", help="Analysis folder to write."),
    eval_report: Path = typer.Option(
        None, "--eval-report", help="`eval --report` JSON of this SAE: its numbers head summary.json."
    ),
    harvest_rule: str = typer.Option(
        None, "--harvest-rule", help="For an SAE folder that records none: top-norm:N[:SEED], all, none..."
    ),
    settings: AnalysisSettings = AnalysisSettings(),
    model: Model = Model(),
) -> None:
    """Analyse every feature of an SAE over a set of images and write ANALYSIS (summary.json, features/<id>.json)."""
    from ..analysis.run import run, validate

    cfg = AnalyzeConfig(sae=sae, images=images, out=out, eval_report=eval_report, harvest_rule=harvest_rule,
                        **values(model), **values(settings))  # fmt: skip
    validate(cfg)
    result = run(cfg, model.load(), progress=True)
    s = result.summary
    console.print(
        f"{s['layer']}: {s['counts']['features']} features over {s['images']['analysed']} images "
        f"({s['counts']['dead']} dead, {s['counts']['dense']} dense) in {s['timings_s']['total']:.1f} s -> {out}"
    )


def register(app: typer.Typer) -> None:
    app.command()(analyze)
