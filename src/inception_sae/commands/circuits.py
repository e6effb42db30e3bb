"""`circuits`: connections between SAE features of consecutive layers."""

from __future__ import annotations

from pathlib import Path

import typer

from ..circuits.config import CircuitsConfig, CircuitsSettings
from ..display import fmt_p
from ..settings import values
from .common import MODEL, Model, out, warn_if_random
from .options import Group, stage


@stage(settings=Group(CircuitsSettings, "circuits"), model=MODEL)
def circuits(
    upstream: Path = typer.Option(..., "--upstream", help="SAE folder on the earlier layer (e.g. mixed4b)."),
    downstream: Path = typer.Option(..., "--downstream", help="SAE folder on the next block (e.g. mixed4c)."),
    output: Path = typer.Option(..., "--out", help="Output folder."),
    images: Path = typer.Option(None, "--images", help="Images for attribution, ablation and validation."),
    analysis: list[Path] = typer.Option(
        [], "--analysis", help="Analysis folder(s) whose features/<i>.json give labels (repeat per layer)."
    ),
    settings: CircuitsSettings = CircuitsSettings(),
    model: Model = Model(),
) -> None:
    """Feature-to-feature circuits: Gorton's weights, attribution, ablation, validation against baselines, graph."""
    from ..circuits.run import run

    cfg = CircuitsConfig(upstream=upstream, downstream=downstream, out=output, images=images, analysis=tuple(analysis),
                         **values(model), **values(settings))  # fmt: skip
    result = run(cfg)
    warn_if_random(result.model)
    v = result.validation
    out.print(f"{result.upstream} -> {result.downstream}: wrote {output} ({result.seconds} s)")
    if "verdicts" in v:
        out.print(f"  each method vs measured ablation, per downstream feature ({v['pairs']} pairs):")
        for line in v["verdicts"].values():
            out.print(f"    {line}")
        sign = v["sign_disagreements_encoder_expanded_vs_ablation"]["count"]
        out.print(f"  sign disagreements (encoder-read expanded weight vs ablation): {sign}")
    if "branch_consistency" in v:
        b = v["branch_consistency"]
        if b["status"] != "ok":
            out.print(f"  dominant-branch agreement: {b['status']}")
        else:
            out.print(
                f"  dominant-branch agreement {b['agreement']:.2f} over {b['labelled_pairs']} labelled partner pairs "
                f"vs chance {b['chance']:.2f}; each of {b['labelled_partners']} distinct partners once: "
                f"{b['difference']:+.2f} (95% CI {b['ci95'][0]:+.2f} to {b['ci95'][1]:+.2f}, p={fmt_p(b['p_value'])})"
            )


def register(app: typer.Typer) -> None:
    app.command()(circuits)
