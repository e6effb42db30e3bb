"""Cost of the branch test (both shares: per-row statistic, empirical null, BH) at m = 8,448 features of mixed4d.

Two decoder distributions (the cost should not depend on them; the earlier permutation test's did):
- ``null``: every row without branch preference (dense/sparse x positive/signed x light/heavy tails);
- ``specialised``: the same with a share of rows given a 5x5 bump (half their positive norm).
Baseline, in the same process: one batch of analysis pass 1 (model forward of 32 images at 224 to mixed4d
+ TopK SAE encode of their 6,272 positions at m = 8,448), so the null's cost reads as "images of analysis".

    PYTHONPATH=src python benchmarks/branch_null.py [--m 8448] [--specialised 0.1]
"""

from __future__ import annotations

import argparse
import time

import torch
from common_data import result_arg, run_meta, write_result

from inception_sae.analysis import branches as br
from inception_sae.models.layers import layer_info


def rows(m: int, g: torch.Generator, d: int) -> torch.Tensor:
    out = []
    for k in range(8):
        dense, pos, heavy = k & 1, k & 2, k & 4
        y = torch.randn(m // 8 + 1, d, generator=g)
        if heavy:
            y = y / torch.rand(y.shape, generator=g).clamp_min(1e-3) ** 0.7
        if pos:
            y = y.abs()
        if not dense:
            y = y * (torch.rand(y.shape, generator=g) < 0.05)
        out.append(y)
    return torch.cat(out)[torch.randperm(8 * (m // 8 + 1), generator=g)[:m]]


def plant(W: torch.Tensor, share: float, g: torch.Generator, a: int, b: int) -> None:
    n = int(share * len(W))
    base = torch.randn(n, W.shape[1], generator=g).abs()
    rest = base.pow(2).sum(1) - base[:, a:b].pow(2).sum(1)
    bump = torch.rand(n, b - a, generator=g) + 0.5
    base[:, a:b] = bump / bump.norm(dim=1, keepdim=True) * (rest / 3).sqrt().unsqueeze(1)
    W[:n] = base


def baseline(m: int, d: int) -> float:
    """Seconds for one pass-1 batch: forward of 32 images to mixed4d + TopK encode at m."""
    from inception_sae.models.weights import load_model

    model = load_model("random", seed=0)
    x = torch.rand(32, 3, 224, 224)
    W_enc = torch.randn(d, m) / d**0.5
    with torch.no_grad():
        t = time.perf_counter()
        a = model.capture(x, ["mixed4d"])["mixed4d"]
        v = a.permute(0, 2, 3, 1).reshape(-1, d)
        (v @ W_enc).topk(32, dim=1)
        return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--m", type=int, default=8448)
    ap.add_argument("--specialised", type=float, default=0.1)
    result_arg(ap, "branch_null")
    args = ap.parse_args()
    info = layer_info("mixed4d")
    slices, names, d = [b.slice for b in info.branches], [b.name for b in info.branches], info.channels
    g = torch.Generator().manual_seed(0)
    scale = torch.rand(d, generator=g) * 2 + 0.1
    base_s = baseline(args.m, d)
    out = {"meta": run_meta(args=vars(args)), "m": args.m, "d": d, "baseline_pass1_batch32_s": round(base_s, 3)}
    for name, share in (("null", 0.0), ("specialised", args.specialised)):
        W = rows(args.m, g, d)
        plant(W, share, g, *info.branch("5x5").slice)
        t = time.perf_counter()
        st = br.branch_stats(W * scale, slices, names, scale)
        s = time.perf_counter() - t
        out[name] = {"planted_share": share, "seconds": round(s, 3), "pass1_images_equiv": round(32 * s / base_s, 2),
                     "fdr_1pct": sum(st.fdr_counts().values()),
                     "fdr_1pct_norm": sum(st.fdr_counts("norm").values())}  # fmt: skip
    write_result(args.result, out)


if __name__ == "__main__":
    main()
