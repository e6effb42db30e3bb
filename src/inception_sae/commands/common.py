"""Options shared by every model-using command, and helpers to report results."""

from __future__ import annotations

import dataclasses
from typing import Any

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


def option(cls: type, name: str, help: str, *decls: str, **kw: Any) -> Any:
    """The option of the field ``name`` of the config dataclass ``cls``, with that field's default.

    Its flag is the field's name (``n_top`` -> ``--n-top``; a bool ``--x/--no-x``), so one setting has one name
    and one default in the library, on the command line and in ``run``'s config; ``decls`` replace the flag,
    ``kw`` go to ``typer.Option`` (e.g. ``metavar``).
    """
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    default = None if f.default is dataclasses.MISSING else f.default
    flag = "--" + name.replace("_", "-")
    if not decls:
        decls = (f"{flag}/--no-{flag[2:]}",) if isinstance(default, bool) else (flag,)
    return typer.Option(default, *decls, help=help, **kw)


def deprecated(old: str, new: str) -> Any:
    """A hidden option that still reads an old spelling of the flag ``new`` (see :func:`pick`)."""
    return typer.Option(None, old, hidden=True, help=f"Deprecated spelling of {new}.")


def pick(value: Any, old_value: Any, old: str, new: str) -> Any:
    """``value``, or the value given under the deprecated flag ``old`` (with a warning naming ``new``)."""
    if old_value is None:
        return value
    console.print(f"[yellow]warning[/]: {old} is deprecated; use {new}")
    return old_value
