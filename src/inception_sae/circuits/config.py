"""Typed configuration of the ``circuits`` stage."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..models.choice import Model
from ..settings import Settings


@dataclass(frozen=True, kw_only=True)
class CircuitsSettings(Settings):
    """Which circuits are computed and how: what ``run``'s ``circuits`` section and the command's flags set."""

    feature: int | None = None
    """downstream feature to centre the graph on (default: most frequent)"""
    max_images: int = 64
    """images scanned for sites: a seeded subset spread over the classes"""
    input_size: int | None = None
    """centre-crop side (resize to 256/224 of it); None: the upstream SAE's harvest"""
    sites: int = 8
    """images (one site each) per downstream feature"""
    compare_features: int = 24
    """downstream features compared across methods (validation; bootstrap over them)"""
    candidates: int = 48
    """upstream features ablated per downstream feature"""
    top: int = 10
    """neighbours per feature in neighbours.json"""
    graph_top: int = 6
    """upstream neighbours per node drawn in the graph"""
    hops: int = 2
    """neighbourhood radius of the figure"""
    permutations: int = 2000
    """permutation-null draws"""
    recipe_features: int = 3
    """upstream partners of the focus followed through Bozoukov's recipe (0: off)"""
    classes: tuple[int, ...] = ()
    """class indices for a class -> mixed5b -> mixed5a circuit"""
    labels: Path | None = None
    """inception5h labels TSV (class names)"""
    batch_size: int = 16
    """images per forward pass"""
    chunk: int = 1024
    """downstream features per chunk when scanning all pairs"""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("max_images", "sites", "top", "graph_top", "chunk", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.hops < 1 or self.permutations < 1 or self.compare_features < 0 or self.candidates < 1:
            raise UserError("hops, permutations and candidates must be >= 1, compare_features >= 0")
        if self.input_size is not None and self.input_size < 1:
            raise UserError(f"input_size must be >= 1, got {self.input_size}")
        if self.recipe_features < 0:
            raise UserError(f"recipe_features must be >= 0, got {self.recipe_features}")
        if self.feature is not None and self.feature < 0:
            raise UserError(f"feature must be >= 0, got {self.feature}")


@dataclass(frozen=True, kw_only=True)
class CircuitsConfig(CircuitsSettings, Model):
    """Everything the circuits run (:func:`.run.run`) needs: the settings, the network and the inputs; the CLI
    builds it, library code never mutates it."""

    upstream: Path
    """SAE folder on the earlier layer"""
    downstream: Path
    """SAE folder on the next inception block"""
    out: Path
    """output folder"""
    images: Path | None = None
    """image folder / list for attribution, ablation and validation"""
    analysis: tuple[Path, ...] = ()
    """analysis folders (any layer) whose features/<i>.json give labels"""
