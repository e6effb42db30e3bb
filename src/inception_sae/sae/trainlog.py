"""Training logs: JSONL (always), TensorBoard (when installed), and a rich progress bar."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..fsio import atomic_write_text


class TrainLogger:
    """Writes ``train_log.jsonl`` every ``log_every`` steps and drives the progress bar."""

    def __init__(self, out: Path, total: int, enabled: bool = True, progress: bool = True, start: int = 0) -> None:
        from rich.console import Console

        self.enabled, self.total = enabled, total
        self.samples = 0
        self.window_time = 0.0
        self.nonfinite_reported = 0
        self.data_logged = False
        self.file = self.tb = self.bar = None
        self.console = Console(stderr=True, soft_wrap=True, quiet=not enabled)
        if not enabled:
            return
        out.mkdir(parents=True, exist_ok=True)
        log = out / "train_log.jsonl"
        if start:
            drop_steps_after(log, start)  # the steps after the checkpoint are trained (and logged) again
            self.console.print(f"resumed from step {start:,} of {total:,} ({out / 'checkpoint'})", highlight=False)
        self.file = open(log, "a")  # noqa: SIM115 (closed in close())
        self.tb = _tensorboard(out / "tb")
        if progress:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(), transient=False, console=self.console,
            )  # fmt: skip
            self.bar.start()
            self.task = self.bar.add_task("train", total=total, completed=start, info="")

    def _report_nonfinite(self, trainer: Any, final: bool = False) -> None:
        """Say on the console when rows with NaN/inf are skipped: at the first one, and the total at the end."""
        n = int(getattr(trainer, "nonfinite", 0))
        if n > self.nonfinite_reported and (final or not self.nonfinite_reported):
            when = "in all" if final else f"by step {trainer.step:,}; training goes on without them"
            self.console.print(
                f"[yellow]warning[/]: skipped {n:,} input rows holding NaN/inf {when} "
                "(counted as nonfinite_skipped in train_summary.json)",
                highlight=False,
            )
            self.nonfinite_reported = n

    def step(self, trainer: Any, seconds: float) -> None:
        """Record one finished step of ``trainer`` that took ``seconds``."""
        if not self.enabled or self.file is None:  # the file is open when enabled
            return
        self.trainer = trainer
        self._report_nonfinite(trainer)
        self.samples += trainer.cfg.batch_size
        self.window_time += seconds
        if not self.data_logged:  # what the batches mix and which store rows training never reads, once a run
            data = {k: trainer.meta[k] for k in ("batch_mixing", "store") if k in trainer.meta}
            held = getattr(trainer.source, "held_out", None)
            self.file.write(json.dumps({"data": {**data, "held_out_rows": list(held) if held else None}}) + "\n")
            self.data_logged = True
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
        if getattr(self, "trainer", None) is not None:
            self._report_nonfinite(self.trainer, final=True)
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()


def drop_steps_after(log: Path, step: int) -> None:
    """Rewrite ``log`` (JSONL) without the records of steps after ``step``, atomically."""
    if not log.is_file():
        return
    keep = []
    for line in log.read_text().splitlines(keepends=True):
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a kill
        if not isinstance(record, dict) or int(record.get("step", 0)) <= step:
            keep.append(line if line.endswith("\n") else line + "\n")
    atomic_write_text(log, "".join(keep))


def _tensorboard(path: Path):
    """A SummaryWriter if tensorboard is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(path))
