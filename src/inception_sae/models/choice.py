"""Which network a stage runs: the weights, the seed of random weights, the device.

Every stage config that runs the network subclasses :class:`Model`, so these three inputs have one name, one
default and one help text everywhere (``--weights --seed --device`` on every such command, the top-level keys of
``inception-sae run``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .inception_v1 import InceptionV1


@dataclass(frozen=True, kw_only=True)
class Model:
    """The network of a stage: inception5h weights (or seeded random ones) on a device."""

    weights: str | None = None
    """inception5h.pth path, 'random' (seeded with ``seed``, untrained), or None for the cached/downloaded file"""
    seed: int = 0
    """seed of random weights and of the stage's random choices (subsets, reservoirs, null draws...)"""
    device: str = "cpu"
    """torch device, e.g. cpu, cuda, cuda:1 (``cuda`` becomes ``cuda:<local rank>`` under torchrun)"""

    def load_model(self) -> InceptionV1:
        """The network (weights verified, or seeded random weights)."""
        from .weights import load_model

        return load_model(self.weights, seed=self.seed, device=self.device)
