"""Benchmark: the training step of each SAE architecture (TopK, BatchTopK, Matryoshka) against the bare GEMM.

    PYTHONPATH=src python benchmarks/sae_architectures.py [--steps 12] [--device cuda] [--dtype bfloat16]

At d=528, m=8448, k=32, batch 4096 (as ``sae_train.py``), fp32 on the Numba CPU kernels (or on ``--device``; a
GPU's steps and GEMMs are timed to their completion), on two data sets:
``planted`` (``common_data.py``: 32 atoms per row, Exp(1) coefficients, post-ReLU) and ``varied`` (1 to 64
atoms per row and a log-normal row scale, sigma 1: the rows BatchTopK gives different budgets). Before every
step the encoder GEMM (4096, 528) x (528, 8448) is timed into a preallocated output (the floor the step's own
GEMM writes into); the step's ratio to it is taken per step and the median reported, so the shared machine's
drifts hit both sides alike; AuxK is kept out (no latent is dead within the run). Also: the codes' width w
(the most latents a row keeps: BatchTopK's (B, w) codes are padded) and the mean and largest L0 of the batch.
The steps timed are a run's first ones, where BatchTopK's busiest rows keep the most latents.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common_data import make_activations, run_meta, step_summary, timed_steps  # noqa: E402

from inception_sae.data.source import ArraySource  # noqa: E402
from inception_sae.sae.cpu_memory import keep_freed_memory  # noqa: E402
from inception_sae.sae.model import SAEConfig  # noqa: E402
from inception_sae.sae.train import TrainConfig, Trainer  # noqa: E402


def varied(n: int, d: int = 528, n_true: int = 8448, most: int = 64, seed: int = 1) -> np.ndarray:
    """(n, d) float32: 1..``most`` planted non-negative atoms per row (uniform), Exp(1) coefficients, a log-normal
    row scale (sigma 1), noise 0.05, ReLU."""
    rng = np.random.default_rng(seed)
    D = np.abs(rng.standard_normal((n_true, d))).astype(np.float32)
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    out = np.empty((n, d), np.float32)
    for s in range(0, n, 4096):
        m = min(4096, n - s)
        idx = rng.integers(0, n_true, (m, most))
        active = rng.integers(1, most + 1, (m, 1))
        coef = rng.exponential(1.0, (m, most)).astype(np.float32) * (np.arange(most)[None] < active)
        scale = np.exp(rng.standard_normal((m, 1))).astype(np.float32)
        x = scale * np.einsum("na,nad->nd", coef, D[idx]) + 0.05 * rng.standard_normal((m, d)).astype(np.float32)
        out[s : s + m] = np.maximum(x, 0)
    return out


def measure(train: np.ndarray, arch: str, args) -> dict:
    d = train.shape[1]
    # the dead window outlasts the run, so AuxK (the same for every architecture, and costly only while many
    # latents are dead, as in the first steps of a run) does not time in
    cfg = TrainConfig(samples=args.steps * args.batch, batch_size=args.batch, progress=False, device=args.device,
                      dtype=args.dtype,
                      warmup_steps=min(100, args.steps // 4), checkpoint_every=0, checkpoint_every_s=0,
                      dead_window=10 * args.steps * args.batch)  # fmt: skip
    sae_cfg = SAEConfig(d, args.latents, args.k, architecture=arch)
    t = Trainer(ArraySource(train, args.batch, seed=0), [sae_cfg], cfg, "unused")
    t.initialise()
    gemm_dtype = torch.bfloat16 if args.dtype in ("bfloat16", "bf16") else torch.float32  # the step's own GEMM's
    xg = torch.randn(args.batch, d, device=args.device, dtype=gemm_dtype)
    wg = torch.randn(d, args.latents, device=args.device, dtype=gemm_dtype)
    widths, l0, l0max = [], [], []
    sae = t.runs[0].sae
    forward = sae.forward

    def spy(*a, **kw):  # the codes of each training step, for their width and L0
        o = forward(*a, **kw)
        live = (o.codes.values > 0).sum(1)
        widths.append(o.codes.values.shape[1])
        l0.append(float(live.float().mean()))
        l0max.append(int(live.max()))
        return o

    sae.forward = spy  # type: ignore[method-assign]
    times = timed_steps(t, xg, wg)
    warm = slice(3, None)  # the first steps compile kernels and fault in buffers
    return {
        "architecture": arch,
        "prefixes": list(sae_cfg.prefixes),
        **step_summary(times, args.batch, warm),
        "width_median": statistics.median(widths[warm]),
        "l0_mean": statistics.mean(l0[warm]),
        "l0_max_median": statistics.median(l0max[warm]),
        "final_fvu": t.runs[0].stats.get("fvu"),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--latents", type=int, default=8448)
    p.add_argument("--rows", type=int, default=65536)
    p.add_argument("--data", default="planted,varied")
    p.add_argument("--archs", default="topk,batchtopk,matryoshka")
    p.add_argument("--device", default="cpu", help="torch device of the training step and the GEMM (cuda: a GPU)")
    p.add_argument("--dtype", default="float32", help="compute dtype of the encoder GEMM: float32 or bfloat16")
    p.add_argument("--acts", type=Path, default=Path("/tmp/inception_sae_bench_acts.npy"))
    p.add_argument("--out", type=Path, default=HERE / "results" / "sae_architectures.json")
    args = p.parse_args()
    keep_freed_memory()
    torch.manual_seed(0)
    rows = []
    for data in args.data.split(","):
        if data == "planted":
            X = np.load(make_activations(args.acts, 131072 + 16384))[: args.rows]
        else:
            X = varied(args.rows)
        for arch in args.archs.split(","):
            r = {"data": data, **measure(np.ascontiguousarray(X), arch, args)}
            rows.append(r)
            print(json.dumps(r), flush=True)
    meta = run_meta(args=vars(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, default=str))


if __name__ == "__main__":
    main()
