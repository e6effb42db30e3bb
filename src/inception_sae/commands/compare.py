"""`compare A B`: which features of one SAE reappear in another (same layer or another layer)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..compare.run import CompareConfig, CompareSettings
from ..settings import values
from .common import MODEL, Model, console, out
from .options import Group, stage


@stage(settings=Group(CompareSettings, "compare"), model=MODEL)
def compare(
    sae_a: Path = typer.Argument(..., metavar="A", help="First SAE folder."),
    sae_b: Path = typer.Argument(..., metavar="B", help="Second SAE folder."),
    out_dir: Path = typer.Option(..., "--out", help="Folder for compare.json and compare.png."),
    images: Path = typer.Option(
        None, "--images", help="Images for the activation correlation (needed when the layers differ)."
    ),
    analysis_a: Path = typer.Option(None, "--analysis-a", help="Analysis folder of A (its dominant branches)."),
    analysis_b: Path = typer.Option(None, "--analysis-b", help="Analysis folder of B (its dominant branches)."),
    settings: CompareSettings = CompareSettings(),
    model: Model = Model(),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Match the features of SAEs A and B; write OUT/compare.json, OUT/compare.png and print the table."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from ..compare.report import table_rows
    from ..compare.run import run

    cfg = CompareConfig(sae_a=sae_a, sae_b=sae_b, out=out_dir, images=images, analysis_a=analysis_a,
                        analysis_b=analysis_b, **values(model), **values(settings))  # fmt: skip
    columns = (TextColumn("compare"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]} img/s"),
               TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=console, disable=not progress or images is None) as bar:
        task = bar.add_task("compare", total=None, rate="-")

        def tick(done: int, total: int) -> None:
            elapsed = bar.tasks[0].elapsed or 1e-9
            bar.update(task, completed=done, total=total, rate=f"{done / elapsed:.1f}")

        result = run(cfg, model=model.load() if images is not None else None, progress=tick)
    a, b = result.a, result.b
    table = Table(title=f"A = {a['layer']} ({a['d_sae']} features)  vs  B = {b['layer']} ({b['d_sae']} features)")
    for col in ("comparison", "direction", "group", "n", ">= 0.7", ">= 0.9", "> null 99%"):
        table.add_column(col, justify="right" if col[0] in ">n" else "left")
    for row in table_rows(result):
        table.add_row(*row)
    out.print(table)
    if result.images is not None:
        im = result.images
        out.print(f"activations: {im['count']} images x {im['positions_per_image']} positions ({im['grid']})")
    out.print(f"wrote {out_dir}/compare.json, {out_dir}/compare.png", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("compare")(compare)
