"""The model options every model-using command shares, and helpers to report results."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

from ..models import choice
from .options import Group

if TYPE_CHECKING:
    from ..models.inception_v1 import InceptionV1


class Model(choice.Model):
    """The network a command runs: the same three options on every command that loads it."""

    def load(self) -> InceptionV1:
        """The network, with a loud warning when its weights are random."""
        model = self.load_model()
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
