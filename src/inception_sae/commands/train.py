"""`train` and `eval`: fit TopK SAEs on layer activations and measure them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from ..errors import UserError
from .common import DEVICE, WEIGHTS, console, out


def _distributed(device: str) -> tuple[int, int]:
    """(rank, world) under torchrun, initialising the process group; (0, 1) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    if device.startswith("cuda"):
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return dist.get_rank(), dist.get_world_size()


def _open_store(path: Path):
    try:
        from ..data.store import ActivationStore
    except ImportError as e:
        raise UserError(f"the activation store is not available in this install ({e})") from e
    return ActivationStore.open(path)


def _store_source(store, batch: int, seed: int, rank: int, world: int, held_out: int):
    """Shuffled batches of the store minus its held-out tail (never read, so `eval` can measure on it)."""
    from ..data.subsets import held_out_tail

    rows = held_out_tail(store, held_out)
    try:
        return store.source(batch_size=batch, seed=seed, rank=rank, world=world, held_out=rows)
    except ValueError as e:
        raise UserError(f"store {store.path}: {e}") from e


def mixing_line(source) -> str:
    """One line on what a training batch mixes (images, classes) and which rows are held out."""
    m = source.mixing()
    held = f"rows [{source.held_out[0]}, {source.held_out[1]})" if source.held_out else "nothing"
    if not m["images"]:  # vectors without provenance
        return f"held out from training (never read): {held}"
    classes = f", {m['classes_per_batch']:.0f} of {m['classes']} classes" if m.get("classes_per_batch") else ""
    return (
        f"a batch of {m['batch_size']} spans {m['images_per_batch']:.0f} of {m['images']} images on average"
        f"{classes}; held out from training (never read): {held}"
    )


def _stream_source(images: Path, layer: str, weights, seed: int, device: str, batch: int, rank: int, world: int):
    try:
        from ..data.stream import StreamSource
    except ImportError as e:
        raise UserError(f"training from --images needs inception_sae.data.stream, not available here ({e})") from e
    from ..data.images import ImageDataset
    from ..models.layers import spatial_layer_info
    from ..models.weights import load_model

    try:
        spatial_layer_info(layer)
    except KeyError as e:
        raise UserError(e.args[0]) from None
    model = load_model(weights, seed=seed, device=device)
    src = StreamSource(model, ImageDataset.from_path(images), layer, batch, seed=seed, rank=rank, world=world)
    return src, {"layer": layer, "model": model.identity}


def train(
    store: Path = typer.Option(None, "--store", help="Activation store folder (from `harvest`)."),
    images: Path = typer.Option(None, "--images", help="Stream activations from these images instead of a store."),
    layer: str = typer.Option(None, "--layer", help="Layer to stream (with --images)."),
    out_dir: Path = typer.Option(..., "--out", help="Output folder (one SAE, or one sub-folder per SAE)."),
    k: list[int] = typer.Option([32], "--k", help="Active latents; repeat for a sweep on one data pass."),
    expansion: float = typer.Option(16.0, "--expansion", help="Latents = expansion x d."),
    latents: int = typer.Option(None, "--latents", help="Explicit latent count (overrides --expansion)."),
    samples: int = typer.Option(10_000_000, "--samples", help="Training length in vectors."),
    held_out: int = typer.Option(
        65536, "--held-out", help="Store vectors (its tail, <= 20%) never trained on, for `eval`; 0: none."
    ),
    batch_size: int = typer.Option(4096, "--batch-size", help="Global batch size."),
    seed: list[int] = typer.Option([0], "--seed", help="Init seed; repeat for a seed sweep (first one seeds data)."),
    tie: str = typer.Option("init", "--tie", help="init (Gao: tied init, trained freely) or full (decoder = enc^T)."),
    device: str = DEVICE,
    dtype: str = typer.Option("float32", "--dtype", help="Encoder GEMM dtype: float32 or bfloat16."),
    lr: float = typer.Option(None, "--lr", help="Adam LR (default 2e-4 / sqrt(m / 2^14))."),
    checkpoint_every: int = typer.Option(1000, "--checkpoint-every", help="Steps between checkpoints (0: off)."),
    checkpoint_every_s: float = typer.Option(
        300.0, "--checkpoint-every-s", help="Also checkpoint after this many seconds (0: off)."
    ),
    multi_topk: bool = typer.Option(False, "--multi-topk", help="Add the MultiTopK L(4k)/8 term."),
    aux_coef: float = typer.Option(1 / 32, "--aux-coef", help="AuxK coefficient (0 disables)."),
    aux_rescale: bool = typer.Option(True, "--aux-rescale/--no-aux-rescale", help="Least-squares-scale AuxK."),
    dead_window: int = typer.Option(None, "--dead-window", help="Samples without firing => dead."),
    b_dec_init: str = typer.Option("median", "--b-dec-init", help="b_dec start: median (geometric), mean, zero."),
    no_normalize: bool = typer.Option(False, "--no-normalize", help="Train on raw activations."),
    log_every: int = typer.Option(10, "--log-every", help="Steps between log lines."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
    weights: str = WEIGHTS,
) -> None:
    """Train TopK SAEs (several share one data pass); resumes from OUT/checkpoint when present."""
    from ..sae.model import SAEConfig
    from ..sae.train import TrainConfig
    from ..sae.train import train as run_train

    if (store is None) == (images is None):
        raise UserError("give exactly one of --store or --images")
    rank, world = _distributed(device)
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
                "batch_mixing": source.mixing()}  # fmt: skip
        if rank == 0 and progress:
            console.print(mixing_line(source), soft_wrap=True)
    saes = [SAEConfig.from_expansion(source.d, expansion, latents, k=ki, tie=tie, seed=s) for ki in k for s in seed]
    cfg = TrainConfig(
        samples=samples, batch_size=batch_size, lr=lr, dead_window=dead_window, aux_coef=aux_coef,
        aux_rescale=aux_rescale, multi_topk=multi_topk, b_dec_init=b_dec_init, normalize_input=not no_normalize,
        dtype=dtype, device=device,
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
    max_vectors: int = typer.Option(65536, "--max-vectors", help="Store vectors evaluated."),
    max_images: int = typer.Option(64, "--max-images", help="Images for splice-back (seeded, spread over classes)."),
    batch_size: int = typer.Option(16, "--image-batch", help="Images per batch."),
    seed: int = typer.Option(0, "--seed", help="Seed of the splice-back image subset."),
    report: Path = typer.Option(None, "--report", help="Write the results (and frequency histogram) as JSON."),
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
                   max_images=max_images, batch_size=batch_size, seed=seed, device=device)  # fmt: skip
    for line in report_lines(rep.to_dict()):
        out.print(line)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(rep.to_dict(), indent=2))


def report_lines(rep: dict) -> list[str]:
    """Human summary of an evaluation report; "held-out" only for rows training never read."""
    lines = []
    if rep.get("store"):
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
