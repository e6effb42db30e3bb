"""The harvest's typed configuration and result: one layer's (:class:`HarvestConfig`), the settings ``run`` and
the command share (:class:`HarvestSettings`), and one pass over the images for several layers
(:class:`HarvestPassConfig`, what :func:`.harvest.run` takes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..models.choice import Model
from ..settings import Settings, values
from .sampling import Sampling
from .store import StoreDtype


@dataclass(frozen=True, kw_only=True)
class HarvestSettings(Settings):
    """How a harvest samples, stores and decodes: what ``run``'s ``harvest`` section and the command's flags set."""

    per_image: int = 10
    """vectors per image and view (ignored for ``sampling="all"``)"""
    sampling: Sampling = "top-norm"
    """which positions of each image: top-norm, norm-weighted (both by activation norm), uniform or all"""
    views: int = 1
    """views per image: 0 is the evaluation crop, others random resized crop + flip"""
    max_images: int | None = None
    """use only N images: a seeded random subset spread over the classes"""
    dtype: StoreDtype = "float16"
    """storage dtype of the vectors"""
    workers: int = 2
    """DataLoader worker processes decoding images"""
    batch_size: int = 32
    """images per forward pass (times ``views`` crops)"""
    shard_size: int = 1 << 16
    """vectors per shard (approximate: shards end on a batch boundary)"""
    resize: int = 256
    """short side after resizing"""
    crop: int = 224
    """centre-crop side"""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("per_image", "views", "batch_size", "shard_size"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_images is not None and self.max_images < 1:
            raise UserError(f"max_images must be >= 1, got {self.max_images}")
        if self.workers < 0:
            raise UserError(f"workers must be >= 0, got {self.workers}")


@dataclass(frozen=True, kw_only=True)
class HarvestConfig(HarvestSettings, Model):
    """One layer's harvest: its settings, the network, and its inputs (the CLI builds it; library code never
    changes it)."""

    images: Path
    """image folder, or a .txt list of image paths"""
    layer: str
    """layer or single branch, e.g. ``mixed4d`` or ``mixed4d_5x5``"""
    out: Path
    """store folder (created; resumed if it holds the same harvest)"""
    progress: bool = True
    """show a progress bar (rank 0 only)"""


@dataclass(frozen=True)
class HarvestResult:
    """What a harvest produced (on this rank; the store holds the merged total)."""

    store: Path  #: store folder
    vectors: int  #: vectors in the store's manifest (all ranks once complete)
    images: int  #: images this rank handled in this run
    skipped: int  #: images skipped as unreadable (all runs, all ranks)
    seconds: float  #: wall time of this run's image loop
    complete: bool  #: store status is ``complete``

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True, kw_only=True)
class HarvestPassConfig(HarvestSettings, Model):
    """One pass over the images harvesting several layers, each into its own store (:func:`.harvest.run`)."""

    images: Path
    """image folder, or a .txt list of image paths"""
    layers: tuple[str, ...]
    """layers or single branches, e.g. ``mixed4d`` or ``mixed4d_5x5``"""
    outs: tuple[Path, ...]
    """one store folder per layer (created; resumed if it holds the same harvest)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.layers:
            raise UserError("name at least one layer to harvest")
        if len(self.outs) != len(self.layers):
            raise UserError(f"{len(self.layers)} layers need {len(self.layers)} store folders, got {len(self.outs)}")
        if len(set(self.layers)) < len(self.layers):
            raise UserError(f"a layer is named twice: {list(self.layers)}")

    def configs(self, progress: bool = True) -> list[HarvestConfig]:
        """Each layer's :class:`HarvestConfig`."""
        shared = values(self, HarvestSettings) | values(self, Model)
        return [HarvestConfig(images=self.images, layer=layer, out=out, progress=progress, **shared)
                for layer, out in zip(self.layers, self.outs, strict=True)]  # fmt: skip
