"""A tiny `inception-sae run` (mixed3b at 64 px, a 64-latent SAE) shared by the run, demo and bad-input tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

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
    layer_args = [a for layer in layers for a in ("--layer", layer)]
    return ["run", *layer_args, "--images", str(images), "--out", str(out), "--weights", "random",
            "--no-progress", *set_args(overrides)]  # fmt: skip


def env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess CLI: this tree's sources first."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), e.get("PYTHONPATH", "")])
    e.update(extra)
    return e


def cli(args: list[str], timeout: float = 600, **extra: str) -> subprocess.CompletedProcess:
    """``python -m inception_sae ARGS`` in a subprocess."""
    cmd = [sys.executable, "-m", "inception_sae", *args]
    return subprocess.run(cmd, env=env(**extra), capture_output=True, text=True, timeout=timeout)


def tiny_images(folder: Path, n: int = 12) -> Path:
    from inception_sae.data.synthetic import write_synthetic_images

    write_synthetic_images(folder, n, size=64, seed=0)
    return folder


def one_line_error(capsys, *needles: str) -> str:
    """Exactly one ``error:`` line and no traceback; other stderr lines are only run's stage lines or the warning."""
    text = capsys.readouterr().err
    assert "Traceback" not in text, text
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, lines
    others = [line for line in lines if line not in errors]
    assert all("▶" in x or "✓" in x or "UNTRAINED" in x or x.startswith("InceptionV1") for x in others), others
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]
