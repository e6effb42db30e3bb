"""Checkpoints that survive a kill at any instant: a tensors file, a JSON pointer that names it, and a clock.

A checkpoint folder holds one JSON *pointer* (training's ``state.json``, analysis's
``cursor.json``) whose ``"tensors"`` entry names a safetensors file beside it. :func:`save`
writes the new tensors file completely (atomically, under its own name), then atomically
replaces the pointer, and only then removes the older tensors files. A process killed
between any two of these steps leaves the old pointer naming its old, complete file, or
the new pointer naming its new, complete file: never a pointer naming a missing or torn one.

:class:`Clock` decides when a long loop checkpoints: every N steps and/or every S seconds.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from torch import Tensor

from .errors import UserError
from .fsio import TMP_SUFFIX, atomic_save_safetensors, atomic_write_json, read_json

#: The pointer's key that names its tensors file.
TENSORS_KEY = "tensors"


def save(
    folder: str | Path,
    name: str,
    tensors: dict[str, Tensor],
    state: dict[str, Any],
    *,
    pointer: str,
    stale: str,
    indent: int | None = 1,
) -> Path:
    """Write ``tensors`` to ``folder/name``, then atomically point ``folder/pointer`` at it (``state`` plus
    ``"tensors": name``); then remove the files matching the glob ``stale`` other than ``name``, and the temporary
    pointer a save killed mid-write left."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_tensors(folder / name, tensors)
    atomic_write_json(folder / pointer, {**state, TENSORS_KEY: name}, indent=indent)
    for old in [*folder.glob(stale), *folder.glob(f"{pointer}.*{TMP_SUFFIX}")]:  # and a killed save's temporary pointer
        if old.name != name:
            old.unlink(missing_ok=True)
    return folder / pointer


def save_tensors(path: str | Path, tensors: dict[str, Tensor]) -> Path:
    """One safetensors file written atomically (tensors detached, moved to the CPU, made contiguous)."""
    return atomic_save_safetensors(path, {k: v.detach().cpu().contiguous() for k, v in tensors.items()})


def read_pointer(folder: str | Path, pointer: str) -> dict[str, Any] | None:
    """The pointer's JSON object; None when there is none; a one-line :class:`UserError` when it is corrupt."""
    path = Path(folder) / pointer
    try:
        state = read_json(path, None)
    except UserError as e:
        raise UserError(f"{e}; remove {path.parent} to start over") from e
    if state is not None and not isinstance(state, dict):
        raise UserError(f"cannot read checkpoint {path}: not a JSON object; remove {path.parent} to start over")
    return state


def read_tensors(path: str | Path, *, broken_ok: bool = False) -> dict[str, Tensor] | None:
    """The tensors of one file; None when it is absent; a one-line :class:`UserError` when it cannot be read
    (or None with ``broken_ok``: the caller starts over)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        return None
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error type for a file cut short
        if broken_ok:
            return None
        raise UserError(f"cannot read checkpoint {path}: {e}; remove {path.parent} to start over") from e


def load(
    folder: str | Path, pointer: str, *, default_tensors: str | None = None
) -> tuple[dict[str, Tensor], dict[str, Any]] | None:
    """(tensors, pointer state) of the checkpoint in ``folder``; None when it has no pointer.

    A pointer without a ``"tensors"`` entry names ``default_tensors`` (a format that predates the entry).
    A corrupt pointer, or one naming a missing or unreadable file, is a one-line :class:`UserError`.
    """
    state = read_pointer(folder, pointer)
    if state is None:
        return None
    name = state.get(TENSORS_KEY, default_tensors)
    tensors = read_tensors(Path(folder) / name) if isinstance(name, str) else None
    if tensors is None:
        raise UserError(f"cannot read checkpoint in {folder}: {pointer} names no tensors file that exists "
                        f"({name}); remove {folder} to start over")  # fmt: skip
    return tensors, state


def exists(folder: str | Path, pointer: str) -> bool:
    """Whether ``folder`` holds a checkpoint's pointer."""
    return (Path(folder) / pointer).is_file()


class Clock:
    """When to checkpoint: every ``every_steps`` steps and every ``every_s`` seconds (either 0: off).

    The time rule bounds the work a kill loses on runs too slow to reach a step multiple. A distributed
    run must have every rank agree on when to save, and the ranks' clocks do not, so it uses steps alone.
    The seconds count from the clock's creation or its last ``True``.
    """

    def __init__(self, every_steps: int = 0, every_s: float = 0.0, *, distributed: bool = False) -> None:
        self.every_steps, self.every_s = every_steps, 0.0 if distributed else float(every_s)
        self.last = time.monotonic()

    def due(self, step: int = 0, total: int | None = None) -> bool:
        """Whether to checkpoint after ``step`` steps (never at ``total`` or beyond: the final one is saved anyway)."""
        if total is not None and step >= total:
            return False
        by_steps = bool(self.every_steps) and step > 0 and step % self.every_steps == 0
        by_time = bool(self.every_s) and time.monotonic() - self.last >= self.every_s
        if by_steps or by_time:
            self.last = time.monotonic()
            return True
        return False
