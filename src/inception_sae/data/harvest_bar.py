"""The harvest's progress bar: images/s and vectors written, on stderr, rank 0 only."""

from __future__ import annotations

import time


class HarvestBar:
    """Rich progress with images/s and vectors written; silent when disabled."""

    def __init__(self, total: int, done: int, vectors: int, enabled: bool, title: str = "harvest") -> None:
        self.enabled, self.vectors = enabled, vectors
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn(title),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} img/s  {task.fields[vectors]:,} vectors"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self.task = self.progress.add_task("harvest", total=total, completed=done, rate="-", vectors=vectors)
            self.t0, self.seen = time.perf_counter(), 0

    def __enter__(self) -> HarvestBar:
        if self.enabled:
            self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.progress.stop()

    def advance(self, images: int, vectors: int) -> None:
        if not self.enabled:
            return
        self.seen += images
        self.vectors += vectors
        rate = self.seen / max(time.perf_counter() - self.t0, 1e-9)
        self.progress.update(self.task, advance=images, rate=f"{rate:.1f}", vectors=self.vectors)
