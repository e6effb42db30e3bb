"""`train` and `eval`: fit TopK SAEs on layer activations and measure them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import typer

from ..errors import UserError
from ..fsio import atomic_write_json
from ..sae.settings import EvalSpec, SAESpec
from ..sae.train_config import TrainConfig
from .common import DEVICE, WEIGHTS, console, option, out


def _open_store(path: Path):
    from ..data.store import ActivationStore

    return ActivationStore.open(path)


def _store_source(store, batch: int, seed: int, rank: int, world: int, held_out: int):
    """Shuffled batches of the store minus its held-out tail (never read, so `eval` can measure on it)."""
    from ..data.reader import StoreSource
    from ..data.subsets import held_out_tail

    rows = held_out_tail(store, held_out)
    try:
        return StoreSource(store, batch, seed=seed, rank=rank, world=world, held_out=rows)
    except ValueError as e:
        raise UserError(f"store {store.path}: {e}") from e


def _stream_source(images: Path, layer: str, weights, seed: int, device: str, batch: int, rank: int, world: int):
    from ..data.images import ImageDataset
    from ..data.stream import StreamSource
    from ..models.layers import spatial_layer_info
    from ..models.weights import load_model
    from ..sae.provenance import DATA_KEY, stream_record

    try:
        spatial_layer_info(layer)
    except KeyError as e:
        raise UserError(e.args[0]) from None
    model = load_model(weights, seed=seed, device=device)
    src = StreamSource(model, ImageDataset.from_path(images), layer, batch, seed=seed, rank=rank, world=world)
    return src, {"layer": layer, "model": model.identity, DATA_KEY: stream_record(src, images, model.identity)}


def train(
    store: Path = typer.Option(None, "--store", help="Activation store folder (from `harvest`)."),
    images: Path = typer.Option(None, "--images", help="Stream activations from these images instead of a store."),
    layer: str = typer.Option(None, "--layer", help="Layer to stream (with --images)."),
    out_dir: Path = typer.Option(..., "--out", help="Output folder (one SAE, or one sub-folder per SAE)."),
    k: list[int] = typer.Option([SAESpec.k], "--k", help="Active latents; repeat for a sweep on one data pass."),
    expansion: float = option(SAESpec, "expansion", "Latents = expansion x d."),
    latents: int = option(SAESpec, "latents", "Explicit latent count (overrides --expansion)."),
    samples: int = option(TrainConfig, "samples", "Training length in vectors."),
    held_out: int = typer.Option(
        EvalSpec.max_vectors,
        "--held-out",
        help="Store vectors (its tail, <= 20%) never trained on, for `eval`; 0: none.",
    ),
    batch_size: int = option(TrainConfig, "batch_size", "Global batch size."),
    seed: list[int] = typer.Option(
        [SAESpec.seed], "--seed", help="Init seed; repeat for a seed sweep (first one seeds data)."
    ),
    tie: str = option(SAESpec, "tie", "init (Gao: tied init, trained freely) or full (decoder = enc^T)."),
    architecture: str = option(SAESpec, "architecture", "topk, batchtopk or matryoshka (docs/training.md)."),
    prefixes: list[float] = option(
        SAESpec, "prefixes", "Matryoshka's nested prefixes, fractions of the latents; repeat.", metavar="FRACTION"
    ),
    device: str = DEVICE,
    dtype: str = option(TrainConfig, "dtype", "Encoder GEMM dtype: float32 or bfloat16."),
    lr: float = option(
        TrainConfig,
        "lr",
        "Adam LR (default 2e-4/sqrt(m/2^14) x8 up to 2M samples, log-linear to x1 at 1e9: docs/training.md).",
    ),
    checkpoint_every: int = option(TrainConfig, "checkpoint_every", "Steps between checkpoints (0: off)."),
    checkpoint_every_s: float = option(
        TrainConfig, "checkpoint_every_s", "Also checkpoint after this many seconds (0: off)."
    ),
    multi_topk: bool = option(TrainConfig, "multi_topk", "Add the MultiTopK L(4k)/8 term."),
    aux_coef: float = option(TrainConfig, "aux_coef", "AuxK coefficient (0 disables)."),
    aux_rescale: bool = option(TrainConfig, "aux_rescale", "Least-squares-scale AuxK."),
    dead_window: int = option(TrainConfig, "dead_window", "Samples without firing => dead."),
    resample_every: int = option(
        TrainConfig, "resample_every", "Steps between restarts of dead latents (default: the dead window; 0: off)."
    ),
    b_dec_init: str = option(TrainConfig, "b_dec_init", "b_dec start: median (geometric), mean, zero."),
    normalize_input: bool = option(
        TrainConfig,
        "normalize_input",
        "Train on activations scaled to mean squared norm d (folded out on save).",
    ),
    log_every: int = option(TrainConfig, "log_every", "Steps between log lines."),
    progress: bool = option(TrainConfig, "progress", "Show the progress bar."),
    weights: str = WEIGHTS,
) -> None:
    """Train TopK SAEs (several share one data pass); resumes from OUT/checkpoint when present."""
    from ..data.distributed import DistEnv, process_group
    from ..sae.model import SAEConfig
    from ..sae.provenance import DATA_KEY, store_record
    from ..sae.train import train as run_train

    if (store is None) == (images is None):
        raise UserError("give exactly one of --store or --images")
    spec = SAESpec(architecture=cast(Any, architecture), prefixes=tuple(prefixes))
    env = DistEnv.from_environ()
    with process_group(env, device):  # torchrun: a process group, shut down on the way out
        rank, world = env.rank, env.world
        if batch_size % world:
            raise UserError(f"--batch-size {batch_size} is not divisible by {world} processes")
        if images is not None:
            if not layer:
                raise UserError("--images needs --layer")
            source, meta = _stream_source(images, layer, weights, seed[0], device, batch_size // world, rank, world)
        else:
            st = _open_store(store)
            source = _store_source(st, batch_size // world, seed[0], rank, world, held_out)
            meta = {"layer": st.layer, "model": st.manifest.get("model"), "store": str(st.path),
                    "batch_mixing": source.mixing(), DATA_KEY: store_record(st, source.held_out)}  # fmt: skip
            if rank == 0 and progress:
                from ..data.reader import mixing_line

                console.print(mixing_line(source), soft_wrap=True)
        saes = [SAEConfig.from_expansion(source.d, expansion, latents, spec.prefixes, k=ki, tie=tie, seed=s,
                                         architecture=architecture) for ki in k for s in seed]  # fmt: skip
        # the str options' values are checked against the config's Literal fields (one-line errors)
        cfg = TrainConfig(
            samples=samples, batch_size=batch_size, lr=lr, dead_window=dead_window, resample_every=resample_every,
            aux_coef=aux_coef, aux_rescale=aux_rescale, multi_topk=multi_topk,
            b_dec_init=cast(Any, b_dec_init),
            normalize_input=normalize_input,
            dtype=cast(Any, dtype), device=device,
            checkpoint_every=checkpoint_every, checkpoint_every_s=checkpoint_every_s, log_every=log_every,
            progress=progress and rank == 0,
        )  # fmt: skip
        result = run_train(source, saes, cfg, out_dir, meta)
        if rank == 0:
            for name, s in result.summaries.items():
                out.print(f"{name}: step {result.steps}, FVU {s['final_fvu']:.4f}, dead {s['dead_fraction']:.2%}")
            if result.interrupted:
                console.print(f"interrupted: checkpoint saved in {out_dir / 'checkpoint'}; rerun to resume")
        if result.interrupted:
            raise typer.Exit(130)


def evaluate(
    sae_dir: Path = typer.Option(..., "--sae", help="SAE folder."),
    store: Path = typer.Option(
        None, "--store", help="Activation store: its held-out rows if the SAE was trained on it, else its last rows."
    ),
    images: Path = typer.Option(None, "--images", help="Images for splice-back (folder or .txt list)."),
    max_vectors: int = option(EvalSpec, "max_vectors", "Store vectors evaluated."),
    max_images: int = option(EvalSpec, "max_images", "Images for splice-back (seeded, spread over classes)."),
    batch_size: int = option(EvalSpec, "batch_size", "Images per splice-back batch."),
    seed: int = typer.Option(0, "--seed", help="Seed of the splice-back image subset."),
    report: Path = typer.Option(None, "--report", help="Write the results (and frequency histogram) as JSON."),
    harvest_rule: str = typer.Option(
        None, "--harvest-rule", help="For an SAE folder that records none: top-norm:N[:SEED], all, none..."
    ),
    resize: int = typer.Option(None, "--resize", help="For an SAE folder that records none: the harvest's short side."),
    crop: int = typer.Option(None, "--crop", help="For an SAE folder that records none: the harvest's centre crop."),
    weights: str = WEIGHTS,
    device: str = DEVICE,
) -> None:
    """FVU, L0, dead/dense fractions; splice-back top-1 agreement and KL, at every position and the trained ones."""
    from ..sae.eval_stage import evaluate as run_eval
    from ..sae.model import TopKSAE

    if store is None and images is None:
        raise UserError("give --store and/or --images")
    sae = TopKSAE.load(sae_dir, device=device)
    st = _open_store(store) if store is not None else None
    rep = run_eval(sae, sae_dir, store=st, images=images, weights=weights, max_vectors=max_vectors,
                   max_images=max_images, batch_size=batch_size, seed=seed, device=device, harvest_rule=harvest_rule,
                   resize=resize, crop=crop)  # fmt: skip
    for line in report_lines(rep.to_dict()):
        out.print(line)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(report, rep.to_dict(), indent=2, default=float)


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
    return lines


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command("eval")(evaluate)
