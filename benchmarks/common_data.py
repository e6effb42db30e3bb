"""Benchmark activations shared by our trainer and the peers: one .npy, generated once, seeded.

Synthetic post-ReLU-like vectors at mixed4d's width: a planted non-negative dictionary
(n_true unit directions in the positive orthant, Exp(1) coefficients, ``active`` per
vector) plus noise, then ReLU. No trained inception5h weights are reachable offline here,
and all trainers see exactly the same rows, which is what the comparison needs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np


def make_activations(path: Path, n: int, d: int = 528, n_true: int = 8448, active: int = 32, seed: int = 0) -> Path:
    """Write (n, d) float32 to ``path`` (skipped if it already exists with that shape)."""
    if path.is_file():
        arr = np.load(path, mmap_mode="r")
        if arr.shape == (n, d):
            return path
    rng = np.random.default_rng(seed)
    D = np.abs(rng.standard_normal((n_true, d))).astype(np.float32)
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    for s in range(0, n, 8192):
        m = min(8192, n - s)
        idx = rng.integers(0, n_true, (m, active))
        coef = rng.exponential(1.0, (m, active)).astype(np.float32)
        x = np.einsum("na,nad->nd", coef, D[idx]) + 0.05 * rng.standard_normal((m, d)).astype(np.float32)
        out[s : s + m] = np.maximum(x, 0)
    out.flush()
    return path


def fvu(x: np.ndarray, x_hat: np.ndarray) -> float:
    """sum ||x - x_hat||^2 / sum ||x - mean_d(x)||^2 (per-dimension mean), in float64."""
    x, x_hat = x.astype(np.float64), x_hat.astype(np.float64)
    return float(((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


def timed_steps(trainer, x, w, fresh: bool = False) -> dict[str, list[float]]:
    """Train ``trainer`` to its end, timing every step and, just before it, the bare GEMM ``x @ w`` into a
    preallocated output (``gemm_prealloc``: the strict floor the step's own GEMM writes into) and, with ``fresh``,
    as plain ``x @ w`` (``gemm``: a new output each time). Seconds per step, in step order."""
    import torch

    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)  # a GPU's work is timed when it is done

    def timed(fn) -> float:
        sync()
        tic = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - tic

    out = x @ w
    times: dict[str, list[float]] = {"step": [], "gemm_prealloc": [], "gemm": []}
    while trainer.step < trainer.total_steps:
        if fresh:
            times["gemm"].append(timed(lambda: x @ w))
        times["gemm_prealloc"].append(timed(lambda: torch.mm(x, w, out=out)))
        times["step"].append(timed(trainer.step_all))
    return times


def step_summary(times: dict[str, list[float]], batch: int, warm: slice) -> dict:
    """Medians over the ``warm`` steps: step time, samples/s, the GEMM floors, and the step's ratio to each floor
    taken against the GEMM just before it (the machine's drifts hit both sides of every ratio alike)."""
    import statistics

    step = statistics.median(times["step"][warm])
    out = {"step_s": step, "samples_per_s": batch / step}
    for name in ("gemm", "gemm_prealloc"):
        if times[name]:
            out[f"{name}_s"] = statistics.median(times[name][warm])
            ratios = [a / b for a, b in zip(times["step"][warm], times[name][warm], strict=True)]
            out[f"step_over_{name}"] = statistics.median(ratios)
    return out


def run_meta(**extra) -> dict:
    """What every benchmark result file records about its run: date, commit, machine, threads, load, torch."""
    import torch

    here = Path(__file__).resolve().parent
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=here).stdout
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit.strip(),
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()),
        "torch": torch.__version__,
        **extra,
    }


#: Where each benchmark writes its result file by default: ``results/<script>.json``.
RESULTS = Path(__file__).resolve().parent / "results"


def result_arg(ap: argparse.ArgumentParser, script: str) -> None:
    """The ``--result`` option of a benchmark: its result file (default ``results/<script>.json``; ``-``: print)."""
    ap.add_argument("--result", default=str(RESULTS / f"{script}.json"), help="result JSON file ('-': print only)")


def write_result(path: str, data: dict) -> None:
    """Print a benchmark's result JSON and write it to ``path`` (unless ``-``)."""
    text = json.dumps(data, indent=1, default=str)
    print(text)
    if path != "-":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")
