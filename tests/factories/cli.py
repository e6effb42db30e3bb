"""Running the ``inception-sae`` command in tests, and the tiny ``run`` settings shared by the run tests.

:func:`run_cli` runs it in this process (typer's ``CliRunner`` isolation around the entry point
``inception_sae.cli.main``, which turns a ``UserError`` into one ``error:`` line and exit code 2);
:func:`run_cli_process` runs ``python -m inception_sae`` in a child process, for the tests that need one (a
process to kill, a fresh interpreter, an environment of its own).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: `--set` overrides that make every stage take seconds on a loaded 2-core CPU.
TINY = {
    "harvest.sampling": "all", "harvest.crop": 64, "harvest.resize": 73, "harvest.workers": 0,
    "harvest.batch_size": 8, "harvest.shard_size": 256,
    "train.samples": 4096, "train.batch_size": 256, "train.init_samples": 512, "train.warmup_steps": 2,
    "train.log_every": 1, "train.checkpoint_every": 2,
    "sae.latents": 64, "sae.k": 4,
    "eval.max_images": 4, "eval.batch_size": 4,
    "analyze.input_size": 64, "analyze.batch_size": 8, "analyze.logit_effect": False,
    "analyze.umap": False, "analyze.render_top": 2, "analyze.n_top": 4, "analyze.per_interval": 2,
    "featvis.features": "top:2", "featvis.render.steps": 2, "featvis.render.model_size": 64,
    "featvis.render.param.size": 32,
    "circuits.max_images": 4, "circuits.input_size": 64, "circuits.compare_features": 2, "circuits.candidates": 4,
    "circuits.permutations": 20, "circuits.sites": 2,
}  # fmt: skip


def set_args(overrides: dict | None = None) -> list[str]:
    """``--set key=value`` arguments for TINY (with ``overrides`` on top)."""
    items = {**TINY, **(overrides or {})}
    out: list[str] = []
    for k, v in items.items():
        out += ["--set", f"{k}={str(v).lower() if isinstance(v, bool) else v}"]
    return out


def run_args(images: Path, out: Path, layers=("mixed3b",), overrides: dict | None = None) -> list[str]:
    """``run`` on ``images`` into ``out`` with the TINY settings (random weights, no progress bars)."""
    layer_args = [a for layer in layers for a in ("--layer", layer)]
    return ["run", *layer_args, "--images", str(images), "--out", str(out), "--weights", "random",
            "--no-progress", *set_args(overrides)]  # fmt: skip


@dataclass(frozen=True)
class CliResult:
    """What a command did: its exit code and what it printed."""

    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: object, env: dict[str, str] | None = None) -> CliResult:
    """``inception-sae ARGS`` in this process; ``env`` is set for the call's duration."""
    from typer.testing import CliRunner

    from inception_sae.cli import main

    runner = CliRunner()
    with runner.isolation(env=env) as (out, err, _mixed):
        code = main([str(a) for a in args])
        sys.stdout.flush()
        sys.stderr.flush()
        stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    return CliResult(code, stdout, stderr)


def process_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: this tree's sources and ``tests`` (for the factories) first."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO / "tests"), e.get("PYTHONPATH", "")])
    e.update(extra)
    return e


def cli_command(*args: object) -> list[str]:
    """The argv of ``python -m inception_sae ARGS``, for a test that starts (and kills) the process itself."""
    return [sys.executable, "-m", "inception_sae", *map(str, args)]


def run_cli_process(*args: object, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    """``python -m inception_sae ARGS`` in a child process (with ``env`` added to its environment), to the end."""
    return subprocess.run(cli_command(*args), env=process_env(**env), capture_output=True, text=True, timeout=timeout)


def one_line_error(result: CliResult, *needles: str) -> str:
    """Exactly one ``error:`` line, holding every needle, and no traceback in what ``result`` printed; other lines
    are only run's stage lines or the untrained-weights warning. Returns the error line."""
    text = result.stderr
    assert "Traceback" not in text, text
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, lines
    others = [line for line in lines if line not in errors]
    assert all("▶" in x or "✓" in x or "UNTRAINED" in x or x.startswith("InceptionV1") for x in others), others
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]
