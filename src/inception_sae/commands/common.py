"""The model options every model-using command shares, and helpers to report results."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.console import Console

from .options import Group

if TYPE_CHECKING:
    from ..models.inception_v1 import InceptionV1


@dataclass(frozen=True)
class Model:
    """The network a command runs: the same three options on every command that loads it."""

    weights: str | None = None
    """inception5h.pth path, 'random' (seeded, untrained), or omit for the cached/downloaded file"""
    seed: int = 0
    """seed for random weights and every random choice"""
    device: str = "cpu"
    """torch device, e.g. cpu, cuda, cuda:1"""

    def load(self) -> InceptionV1:
        """The network, with a loud warning when its weights are random."""
        from ..models.weights import load_model

        model = load_model(self.weights, seed=self.seed, device=self.device)
        warn_if_random(model.identity)
        return model


#: The model options (``--weights --seed --device``) of a command.
MODEL = Group(Model, "model")

# soft_wrap: a line is one line whatever the width (piped output is not cut at 80 columns; terminals wrap themselves)
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def warn_if_random(identity: str) -> None:
    """Say loudly that results come from an untrained network."""
    if identity.startswith("random:"):
        console.print(
            f"[bold red]UNTRAINED WEIGHTS ({identity})[/]: results describe a random network, not InceptionV1."
        )
