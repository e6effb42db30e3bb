"""The hot path of ``compare``: the code cross-product ``a.T @ b`` accumulated per batch of images.

``cross_add`` (k x k non-zero pairs per position, index-added) against the dense GEMM, in the same
process, on two code distributions: (1) TopK codes with uniform feature use (k of m per position),
(2) codes with Zipf-like feature use, average-pooled 2x2 as when a 28x28 layer meets a 14x14 one
(about 4k non-zeros per position, a few features in most positions). Prints one JSON line.

    PYTHONPATH=src python benchmarks/compare_cross.py [--m 8448] [--k 32] [--images 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from common_data import result_arg, run_meta, write_result

from inception_sae.compare.match import cross_add


def uniform_codes(n: int, m: int, k: int, g) -> torch.Tensor:
    z = torch.zeros(n, m)
    z.scatter_(1, torch.rand(n, m, generator=g).topk(k, dim=1).indices, torch.rand(n, k, generator=g))
    return z


def zipf_pooled_codes(images: int, side: int, m: int, k: int, g) -> torch.Tensor:
    n = images * (2 * side) ** 2
    w = 1.0 / torch.arange(1, m + 1).float()  # feature i used with weight 1/i
    idx = torch.multinomial(w.expand(n, m), k, generator=g)
    z = torch.zeros(n, m).scatter_(1, idx, torch.rand(n, k, generator=g))
    z = z.view(images, 2 * side, 2 * side, m).permute(0, 3, 1, 2)
    return F.avg_pool2d(z, 2).permute(0, 2, 3, 1).reshape(-1, m)


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--m", type=int, default=8448)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    result_arg(ap, "compare_cross")
    a = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    cases = {
        "uniform_topk_14x14": [uniform_codes(a.images * 196, a.m, a.k, g) for _ in range(2)],
        "zipf_pooled_28to14": [zipf_pooled_codes(a.images, 14, a.m, a.k, g) for _ in range(2)],
    }
    out: dict = {"meta": run_meta(args=vars(a)), "m": a.m, "k": a.k, "images": a.images}
    for name, (x, y) in cases.items():
        acc = torch.zeros(a.m, a.m, dtype=torch.float64)
        sparse = best_of(lambda x=x, y=y, acc=acc: cross_add(acc, x, y), a.repeats)
        dense = best_of(lambda x=x, y=y, acc=acc: acc.add_((x.T @ y).double()), a.repeats)
        check = torch.zeros_like(acc)
        cross_add(check, x, y)
        err = float((check - (x.T.double() @ y.double())).abs().max())
        nnz = float((x != 0).sum(1).float().mean())
        out[name] = {"nnz_per_row": round(nnz, 1), "cross_add_s": round(sparse, 3), "dense_gemm_s": round(dense, 3),
                     "speedup": round(dense / sparse, 2), "max_abs_diff": err}  # fmt: skip
    write_result(a.result, out)


if __name__ == "__main__":
    main()
