"""CLI subcommands, one module per stage; each exposes ``register(app)``."""

from __future__ import annotations

import importlib

import typer

#: Command modules in the order their commands appear in ``--help``.
MODULES = ("model", "harvest", "train", "analyze", "featvis", "circuits", "compare", "explain", "site", "run")


def register_all(app: typer.Typer) -> None:
    """Add every stage's commands to ``app``."""
    for name in MODULES:
        importlib.import_module(f"{__name__}.{name}").register(app)
