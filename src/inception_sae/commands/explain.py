"""`explain IMG --sae SAE`: why the network predicts a class, in SAE features."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    pass
