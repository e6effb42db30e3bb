"""`circuits`: connections between SAE features of consecutive layers."""

from __future__ import annotations

from pathlib import Path

import typer

from ..circuits.config import CircuitsConfig
from ..display import fmt_p
from ..errors import UserError
from .common import DEVICE, SEED, WEIGHTS, option, out, warn_if_random


def circuits(
    upstream: Path = typer.Option(..., "--upstream", help="SAE folder on the earlier layer (e.g. mixed4b)."),
    downstream: Path = typer.Option(..., "--downstream", help="SAE folder on the next block (e.g. mixed4c)."),
    output: Path = typer.Option(..., "--out", help="Output folder."),
    feature: int = option(CircuitsConfig, "feature", "Downstream feature to centre the graph on."),
    images: Path = typer.Option(None, "--images", help="Images for attribution, ablation and validation."),
    max_images: int = option(CircuitsConfig, "max_images", "Images scanned for sites (seeded, class-spread)."),
    image_size: int = option(CircuitsConfig, "image_size", "Centre-crop side (default: the SAE's harvest)."),
    compare_features: int = option(CircuitsConfig, "compare_features", "Downstream features compared by all methods."),
    recipe_features: int = option(
        CircuitsConfig, "recipe_features", "Weight partners of the focus followed through Bozoukov's recipe (0: off)."
    ),
    top: int = option(CircuitsConfig, "top", "Neighbours per feature in neighbours.json."),
    hops: int = option(CircuitsConfig, "hops", "Neighbourhood radius of the figure."),
    classes: str = typer.Option("", "--classes", help="Class indices (comma-separated) for class circuits (mixed5b)."),
    labels: Path = option(CircuitsConfig, "labels", "inception5h labels TSV for class names."),
    analysis: list[Path] = typer.Option(
        [], "--analysis", help="Analysis folder(s) whose features/<i>.json give labels (repeat per layer)."
    ),
    weights: str = WEIGHTS,
    seed: int = SEED,
    device: str = DEVICE,
) -> None:
    """Feature-to-feature circuits: Gorton's weights, attribution, ablation, validation against baselines, graph."""
    from ..circuits.run import run_circuits

    try:
        cls = tuple(int(c) for c in classes.split(",") if c.strip())
    except ValueError:
        raise UserError(f"--classes {classes!r}: give class indices separated by commas, e.g. 208,209") from None
    cfg = CircuitsConfig(
        upstream=upstream, downstream=downstream, out=output, feature=feature, images=images, max_images=max_images,
        image_size=image_size, compare_features=compare_features, recipe_features=recipe_features, top=top, hops=hops,
        classes=cls, labels=labels,
        analysis=tuple(analysis), weights=weights, seed=seed, device=device,
    )  # fmt: skip
    summary = run_circuits(cfg)
    warn_if_random(summary["model"])
    v = summary["validation"]
    out.print(
        f"{summary['upstream']['layer']} -> {summary['downstream']['layer']}: wrote {output} ({summary['seconds']} s)"
    )
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
