"""The training stage shared by ``inception-sae train`` and ``run``: one config, one :func:`run`.

:func:`run` turns a :class:`TrainStageConfig` into a batch source (a store minus its held-out tail, or
activations streamed from images through the network), the provenance recorded in each SAE's cfg.json, and
the :class:`.TrainConfig` of the pass, then calls :func:`.train.train`, which trains the sweep and writes
the folders (:class:`.folder.SAEFolder`). Under torchrun every rank calls it; each reads its slice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..models.choice import Model
from ..settings import values
from .architecture import SAESettings
from .eval_stage import EvalSettings
from .train import TrainResult
from .train_config import TrainConfig, TrainSettings


@dataclass(frozen=True, kw_only=True)
class TrainStageConfig(TrainSettings, Model):
    """One training pass: how to train (the settings), its data (a store, or images and a layer through the
    network), its output and the SAE sweep."""

    out: Path
    """output folder: the SAE itself (one SAE), or one sub-folder per SAE of the sweep"""
    store: Path | None = None
    """activation store folder (from ``harvest``)"""
    images: Path | None = None
    """stream activations of ``layer`` from these images instead of a store"""
    layer: str | None = None
    """layer to stream (with ``images``)"""
    saes: tuple[SAESettings, ...] = (SAESettings(),)
    """the SAEs trained on every batch (a k and seed sweep)"""
    held_out: int = EvalSettings.max_vectors
    """store vectors (its tail, at most 20%) never trained on, for ``eval``; 0: none"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.store is None) == (self.images is None):
            raise UserError("give exactly one of a store or images to train on")
        if self.images is not None and not self.layer:
            raise UserError("streaming from images needs a layer")
        if not self.saes:
            raise UserError("no SAE to train")
        if self.held_out < 0:
            raise UserError(f"held_out must be >= 0, got {self.held_out}")


def _store_source(cfg: TrainStageConfig, batch: int, rank: int, world: int) -> tuple[Any, dict[str, Any]]:
    """Shuffled batches of the store minus its held-out tail (never read, so ``eval`` can measure on it)."""
    from ..data.reader import StoreSource
    from ..data.store import ActivationStore
    from ..data.subsets import held_out_tail
    from .provenance import DATA_KEY, store_record

    assert cfg.store is not None
    store = ActivationStore.read(cfg.store)
    total = cfg.batch_size
    if len(store) < total:
        raise UserError(f"the store {store.path} holds {len(store):,} vectors, fewer than one batch of {total}; "
                        "lower the batch size or harvest more images")  # fmt: skip
    rows = held_out_tail(store, cfg.held_out)
    try:
        source = StoreSource(store, batch, seed=cfg.seed, rank=rank, world=world, held_out=rows)
    except ValueError as e:
        raise UserError(f"store {store.path}: {e}") from e
    meta = {"layer": store.layer, "model": store.manifest.get("model"), "store": str(store.path),
            "batch_mixing": source.mixing(), DATA_KEY: store_record(store, source.held_out)}  # fmt: skip
    return source, meta


def _stream_source(cfg: TrainStageConfig, model, batch: int, rank: int, world: int) -> tuple[Any, dict[str, Any]]:
    """Batches of ``cfg.layer``'s activations computed from ``cfg.images`` as training reads them."""
    from ..data.images import ImageDataset
    from ..data.stream import StreamSource
    from ..models.layers import spatial_layer_info
    from ..models.weights import load_model
    from .provenance import DATA_KEY, stream_record

    layer, images = cfg.layer, cfg.images
    assert layer is not None and images is not None
    try:
        spatial_layer_info(layer)
    except KeyError as e:
        raise UserError(e.args[0]) from None
    if model is None:
        model = load_model(cfg.weights, seed=cfg.seed, device=cfg.device)
    dataset = ImageDataset.from_path(images)
    src = StreamSource(model, dataset, layer, batch, seed=cfg.seed, rank=rank, world=world)
    return src, {"layer": layer, "model": model.identity, DATA_KEY: stream_record(src, images, model.identity)}


def run(
    cfg: TrainStageConfig, model=None, *, progress: bool = True, on_note: Callable[[str], None] | None = None
) -> TrainResult:
    """Train ``cfg``'s SAEs (:func:`.train.train`; resumes from ``cfg.out/checkpoint`` when present).

    ``model`` is ``cfg``'s network when already loaded (streaming only: a store needs none). ``on_note`` gets
    one line on rank 0 before training: how well the store reader mixes its batches.
    """
    from ..data.distributed import DistEnv, process_group
    from .model import SAEConfig
    from .train import train

    env = DistEnv.from_environ()
    if cfg.batch_size % env.world:
        raise UserError(f"the batch size {cfg.batch_size} is not divisible by {env.world} processes")
    batch = cfg.batch_size // env.world
    with process_group(env, cfg.device):  # torchrun: a process group, shut down on the way out
        if cfg.images is not None:
            source, meta = _stream_source(cfg, model, batch, env.rank, env.world)
        else:
            source, meta = _store_source(cfg, batch, env.rank, env.world)
            if env.rank == 0 and on_note is not None:
                from ..data.reader import mixing_line

                on_note(mixing_line(source))
        tcfg = TrainConfig(device=cfg.device, progress=progress and env.rank == 0, **values(cfg, TrainSettings))
        return train(source, [SAEConfig.from_spec(spec, source.d) for spec in cfg.saes], tcfg, cfg.out, meta)
