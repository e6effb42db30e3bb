"""Checkpoints of the batch being optimised, so a killed featvis job loses minutes, not the batch.

A batch's checkpoint is ``OUT/.checkpoint/<key>.safetensors``: the optimisation state of
:func:`~inception_sae.featvis.render.render` (parameters, Adam moments, transform generators, objective
curve), one file written atomically (no pointer: the file is the whole state). Its key hashes the job's
settings and the batch's (id, variant) items, so a rerun with other settings or another batch split never
resumes from it. It is removed once the batch's PNGs are written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import Tensor

from .. import checkpoint

FOLDER = ".checkpoint"


class BatchCheckpoints:
    """Save the current batch's state every ``every_s`` seconds (0: never) and find it again on a rerun."""

    def __init__(self, out: Path, settings: dict[str, Any], every_s: float = 120.0) -> None:
        self.folder, self.every_s = Path(out) / FOLDER, every_s
        self.settings = json.dumps(settings, sort_keys=True, default=str)

    def path(self, batch: list[tuple[int, int]]) -> Path:
        key = hashlib.sha256(f"{self.settings}|{sorted(batch)}".encode()).hexdigest()[:24]
        return self.folder / f"{key}.safetensors"

    def load(self, batch: list[tuple[int, int]]) -> dict[str, Tensor] | None:
        """The saved state of this batch, or None (absent or unreadable: the batch starts over)."""
        return checkpoint.read_tensors(self.path(batch), broken_ok=True)

    def saver(self, batch: list[tuple[int, int]]) -> Callable[[int, Callable[[], dict[str, Tensor]]], None] | None:
        """An ``on_state`` callback for render that writes the state when ``every_s`` seconds have passed."""
        if not self.every_s:
            return None
        path, clock = self.path(batch), checkpoint.Clock(every_s=self.every_s)

        def on_state(_steps: int, state: Callable[[], dict[str, Tensor]]) -> None:
            if clock.due():
                self.folder.mkdir(parents=True, exist_ok=True)
                checkpoint.save_tensors(path, state())

        return on_state

    def finished(self, batch: list[tuple[int, int]]) -> None:
        self.path(batch).unlink(missing_ok=True)
        if self.folder.is_dir() and not any(self.folder.iterdir()):
            self.folder.rmdir()
