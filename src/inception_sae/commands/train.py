"""`train` and `eval`: fit TopK SAEs on layer activations and measure them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import typer

from ..errors import UserError
from ..sae.architecture import SAESettings
from ..sae.eval_stage import EvalSettings
from ..sae.train_config import TrainSettings
from ..settings import values
from .common import MODEL, Model, console, out
from .options import Group, stage


@stage(settings=Group(TrainSettings, "train"), saes=Group(SAESettings, "sae", sweep=("k", "seed")),
       model=Group(Model, "model", skip=("seed",)))  # fmt: skip
def train(
    store: Path = typer.Option(None, "--store", help="Activation store folder (from `harvest`)."),
    images: Path = typer.Option(None, "--images", help="Stream activations from these images instead of a store."),
    layer: str = typer.Option(None, "--layer", help="Layer to stream (with --images)."),
    out_dir: Path = typer.Option(..., "--out", help="Output folder (one SAE, or one sub-folder per SAE)."),
    saes: Sequence[SAESettings] = (SAESettings(),),
    settings: TrainSettings = TrainSettings(),
    held_out: int = typer.Option(
        EvalSettings.max_vectors,
        "--held-out",
        help="Store vectors (its tail, <= 20%) never trained on, for `eval` (eval.max_vectors in `run`); 0: none.",
    ),
    model: Model = Model(),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
) -> None:
    """Train TopK SAEs (a k and seed sweep shares one data pass; the first seed also orders the data).

    Resumes from OUT/checkpoint when present.
    """
    from ..data.distributed import DistEnv
    from ..sae.train_stage import TrainStageConfig, run

    if (store is None) == (images is None):
        raise UserError("give exactly one of --store or --images")
    if images is not None and not layer:
        raise UserError("--images needs --layer")
    cfg = TrainStageConfig(out=out_dir, store=store, images=images, layer=layer, saes=tuple(saes), **values(settings),
                           held_out=held_out, weights=model.weights, seed=saes[0].seed,
                           device=model.device)  # fmt: skip
    rank = DistEnv.from_environ().rank

    def note(line: str) -> None:
        console.print(line, soft_wrap=True)

    result = run(cfg, progress=progress, on_note=note if progress else None)
    if rank == 0:
        for name, s in result.summaries.items():
            out.print(f"{name}: step {result.steps}, FVU {s['final_fvu']:.4f}, dead {s['dead_fraction']:.2%}")
        if result.interrupted:
            console.print(f"interrupted: checkpoint saved in {out_dir / 'checkpoint'}; rerun to resume")
    if result.interrupted:
        raise typer.Exit(130)


@stage(settings=Group(EvalSettings, "eval"), model=MODEL)
def evaluate(
    sae_dir: Path = typer.Option(..., "--sae", help="SAE folder."),
    store: Path = typer.Option(
        None, "--store", help="Activation store: its held-out rows if the SAE was trained on it, else its last rows."
    ),
    images: Path = typer.Option(None, "--images", help="Images for splice-back (folder or .txt list)."),
    settings: EvalSettings = EvalSettings(),
    report: Path = typer.Option(None, "--report", help="Write the results (and frequency histogram) as JSON."),
    harvest_rule: str = typer.Option(
        None, "--harvest-rule", help="For an SAE folder that records none: top-norm:N[:SEED], all, none..."
    ),
    resize: int = typer.Option(None, "--resize", help="For an SAE folder that records none: the harvest's short side."),
    crop: int = typer.Option(None, "--crop", help="For an SAE folder that records none: the harvest's centre crop."),
    sibling: list[Path] = typer.Option(
        [], "--sibling", help="Another SAE folder of the layer (repeatable): same k = seed stability; any k = L0 sweep."
    ),
    model: Model = Model(),
) -> None:
    """FVU, L0, dead/dense fractions; splice-back top-1 agreement and KL, at every position and the trained ones;
    the quality panel (docs/quality.md)."""
    from ..sae.eval_stage import EvalConfig, run

    if store is None and images is None:
        raise UserError("give --store and/or --images")
    cfg = EvalConfig(sae=sae_dir, store=store, images=images, siblings=tuple(sibling), harvest_rule=harvest_rule,
                     resize=resize, crop=crop, **values(settings), **values(model))  # fmt: skip
    rep = run(cfg)
    for line in report_lines(rep.to_dict()):
        out.print(line)
    if report is not None:
        rep.write(report)


def report_lines(rep: dict) -> list[str]:
    """Human summary of an evaluation report; "held-out" only for rows training never read."""
    lines = []
    if rep.get("store") and not rep["store"].get("available", True):
        lines.append(f"store rows: not measured: {rep['store']['note']}")
    elif rep.get("store"):
        s = rep["store"]
        what = "held-out vectors (never trained on)" if s["held_out"] else "store vectors (NOT held out)"
        lines.append(f"{what}: rows [{s['rows'][0]}, {s['rows'][1]})  FVU {s['fvu']:.4f}  L0 {s['l0']:.1f}  "
                     f"dead {s['dead_fraction']:.2%}")  # fmt: skip
    sp = rep.get("splice")
    for part, label in ((sp, "every position"), ((sp or {}).get("training_positions"), "trained positions")):
        if part:
            lines.append(f"splice-back on {part['images']} images, {label}: top-1 agreement "
                         f"{part['top1_agreement']:.1%}, KL {part['kl']:.4f} nats, FVU {part['fvu']:.4f}, "
                         f"L0 {part['vectors']['l0']:.1f}")  # fmt: skip
    lines.extend(quality_lines(rep.get("quality") or {}))
    return lines


def _pct(x) -> str:
    return "–" if x is None else f"{x:.1%}"


def quality_lines(q: dict) -> list[str]:
    """One line per quality metric: its value, interval and sample, or why it was skipped."""
    lines = []
    ab = q.get("absorption") or {}
    if ab.get("skipped"):
        lines.append(f"absorption: {ab['skipped']}")
    for p in ab.get("parents", []):
        a = p["absorbed"]
        lines.append(f"absorption {p['concept']}: {_pct(a['rate'])} [{_pct(a['interval'][0])}, "
                     f"{_pct(a['interval'][1])}] of {a['n']} images (parent latent {p['parent_latent']}, "
                     f"F1 {p['parent_f1']:.2f})")  # fmt: skip
    pr = q.get("probing") or {}
    if pr.get("skipped"):
        lines.append(f"probing: {pr['skipped']}")
    for c in pr.get("concepts", []):
        if c.get("probes"):
            f1s = ", ".join(f"k={p['k']} {p['f1']:.2f}" for p in c["probes"])
            lines.append(f"sparse probe {c['concept']} (F1 on {c['test']} test images): {f1s}")
    st = q.get("stability") or {}
    if st.get("skipped"):
        lines.append(f"stability: {st['skipped']}")
    for s in st.get("siblings", []):
        mcc = "–" if s["mcc"]["mean"] is None else f"{s['mcc']['mean']:.3f}"
        lines.append(f"stability vs {s['sae']}: matched cosine {s['mean_cosine']['mean']:.3f}, "
                     f">0.9 {_pct(s['above_0.9']['rate'])}, MCC {mcc} on {s['rows']} rows")  # fmt: skip
    lo = q.get("l0") or {}
    if lo:
        lines.append(f"L0 advice: {lo['l0']:.1f} (between {lo['interval'][0]:.1f} and {lo['interval'][1]:.1f})"
                     if lo.get("l0") is not None else f"L0 advice: none ({lo.get('note')})")  # fmt: skip
    return lines


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command("eval")(evaluate)
