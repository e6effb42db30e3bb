"""A small, fast analysis config: no pictures, no UMAP, no logit effect (what most analysis tests need)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inception_sae.analysis.config import AnalyzeConfig

#: tiny inputs, three top examples, and none of the optional (slow or picture-drawing) parts
QUICK: dict[str, Any] = {"input_size": 32, "batch_size": 4, "n_top": 3, "render_top": 0, "render_intervals": 0,
                         "umap": False, "logit_effect": False}  # fmt: skip


def quick_analysis(sae: Path, images: Path, out: Path, **overrides: Any) -> AnalyzeConfig:
    """The config of an analysis of ``sae`` over ``images`` into ``out``: :data:`QUICK` with ``overrides``."""
    return AnalyzeConfig(sae=sae, images=images, out=out, **(QUICK | overrides))
