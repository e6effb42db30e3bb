"""Training logs: JSONL (always), TensorBoard (when installed), and a rich progress bar."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


class TrainLogger:
    """Writes ``train_log.jsonl`` every ``log_every`` steps and drives the progress bar."""

    def __init__(self, out: Path, total: int, enabled: bool = True, progress: bool = True, start: int = 0) -> None:
        self.enabled, self.total = enabled, total
        self.samples = 0
        self.window_time = 0.0
        self.file = self.tb = self.bar = None
        if not enabled:
            return
        out.mkdir(parents=True, exist_ok=True)
        self.file = open(out / "train_log.jsonl", "a")  # noqa: SIM115 (closed in close())
        self.tb = _tensorboard(out / "tb")
        if progress:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(), transient=False,
            )  # fmt: skip
            self.bar.start()
            self.task = self.bar.add_task("train", total=total, completed=start, info="")

    def step(self, trainer: Any, seconds: float) -> None:
        """Record one finished step of ``trainer`` that took ``seconds``."""
        if not self.enabled:
            return
        self.samples += trainer.cfg.batch_size
        self.window_time += seconds
        last = trainer.step == trainer.total_steps
        if trainer.step % trainer.cfg.log_every == 0 or last:
            rate = self.samples / max(self.window_time, 1e-9)
            record = {
                "step": trainer.step,
                "samples": trainer.step * trainer.cfg.batch_size,
                "samples_per_s": rate,
                "lr_factor": trainer._lr(trainer.step - 1, 1.0),
                "time": time.time(),
                "saes": {r.name: r.stats for r in trainer.runs},
            }
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
            if self.tb is not None:
                for r in trainer.runs:
                    for key, value in r.stats.items():
                        self.tb.add_scalar(f"{r.name}/{key}", value, record["samples"])
                self.tb.add_scalar("samples_per_s", rate, record["samples"])
            self.samples, self.window_time = 0, 0.0
            if self.bar is not None:
                first = trainer.runs[0].stats
                info = f"FVU {first['fvu']:.3f} L0 {first['l0']:.1f} dead {first['dead_fraction']:.1%} {rate:,.0f}/s"
                self.bar.update(self.task, info=info)
        if self.bar is not None:
            self.bar.update(self.task, completed=trainer.step)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()


def _tensorboard(path: Path):
    """A SummaryWriter if tensorboard is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(path))
