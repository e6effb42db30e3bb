"""Options shared by every model-using command, and helpers to report results."""

from __future__ import annotations

import typer
from rich.console import Console

WEIGHTS = typer.Option(
    None,
    "--weights",
    help="inception5h.pth path, 'random' (seeded, untrained), or omit for the cached/downloaded file.",
)
SEED = typer.Option(0, "--seed", help="Seed for random weights and every random choice.")
DEVICE = typer.Option("cpu", "--device", help="torch device, e.g. cpu, cuda, cuda:1.")

# soft_wrap: a line is one line whatever the width (piped output is not cut at 80 columns; terminals wrap themselves)
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def warn_if_random(identity: str) -> None:
    """Say loudly that results come from an untrained network."""
    if identity.startswith("random:"):
        console.print(
            f"[bold red]UNTRAINED WEIGHTS ({identity})[/]: results describe a random network, not InceptionV1."
        )


def parse_weights(weights: str | None):
    """CLI string -> load_model argument."""
    return weights
