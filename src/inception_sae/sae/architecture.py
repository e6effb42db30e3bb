"""What SAE is trained per layer: its architecture and shape (:class:`SAESettings`), with their one set of defaults.

``inception-sae train`` takes its ``--k --expansion --architecture...`` flags from here and ``run`` its ``sae``
section; :meth:`.model.SAEConfig.from_spec` turns them into an ``SAEConfig`` once the layer's width is known.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

from ..errors import UserError
from ..settings import Settings

#: "init": Gao et al.'s tied initialisation, then both matrices trained freely; "full": decoder = encoder^T
Tie = Literal["init", "full"]
#: "topk": k per input (Gao et al.); "batchtopk": k·B per batch, a threshold at inference (Bussmann et al.
#: 2024); "matryoshka": BatchTopK codes, loss averaged over nested prefixes (Bussmann et al. 2025)
Architecture = Literal["topk", "batchtopk", "matryoshka"]


@dataclass(frozen=True, kw_only=True)
class SAESettings(Settings):
    """Shape of the SAE trained per layer (an ``SAEConfig`` once the layer's width is known: SAEConfig.from_spec)."""

    k: int = 32
    """active latents per input"""
    expansion: float = 16.0
    """latents = expansion x d (ignored when ``latents`` is set)"""
    latents: int | None = None
    """explicit latent count"""
    tie: Tie = "init"
    """``init`` (Gao: tied init, trained freely) or ``full`` (decoder = encoder^T)"""
    seed: int = 0
    """SAE initialisation seed"""
    architecture: Architecture = "topk"
    """``topk``, ``batchtopk`` or ``matryoshka`` (docs/training.md, "Architectures")"""
    prefixes: tuple[float, ...] = (1 / 16, 1 / 4, 1.0)
    """Matryoshka's nested prefixes as fractions of the latents, increasing, in (0, 1]; 1 is added when missing"""

    def __post_init__(self) -> None:
        super().__post_init__()
        f = tuple(float(x) for x in self.prefixes)
        if not f or any(not 0 < x <= 1 for x in f) or any(a >= b for a, b in itertools.pairwise(f)):
            raise UserError(f"prefixes must be increasing fractions of the latents in (0, 1], got {list(f)}")
        object.__setattr__(self, "prefixes", f)
