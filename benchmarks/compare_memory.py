"""Peak memory of ``compare``'s correlation accumulator at paper scale, float32 vs float64 null cross-moments.

Each variant runs in its own process (peak RSS is per process): the accumulator for ``--m`` x ``--m`` features
(8 null shuffles), ``--batches`` batches of 16 images x 196 positions of TopK codes (k = 32; side B = side A plus
noise codes), then the true correlations and every shuffle's best null match per feature, which is all the
null test reads. Reported: each variant's peak RSS and seconds, and the largest difference between the two
variants' null maxima and true correlations. Two code distributions: uniform and Zipf feature frequencies.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common_data import result_arg, run_meta, write_result  # noqa: E402


def child(m: int, batches: int, dist: str, dtype: str, out: str) -> None:
    import torch

    from inception_sae.compare.match import CorrelationAccumulator

    g = torch.Generator().manual_seed(0)
    weights = torch.ones(m) if dist == "uniform" else 1.0 / torch.arange(1, m + 1)

    def codes(B: int = 16, P: int = 196, k: int = 32) -> torch.Tensor:
        z = torch.zeros(B * P, m)
        idx = torch.multinomial(weights.expand(B * P, m), k, generator=g)
        z.scatter_(1, idx, torch.rand(B * P, k, generator=g))
        return z.view(B, P, m)

    t = time.perf_counter()
    acc = CorrelationAccumulator(m, m, null_dtype=getattr(torch, dtype))
    for _ in range(batches):
        za = codes()
        acc.add(za, za + 0.1 * codes())
    r = acc.correlation()
    best_a, best_b = acc.null_best()
    seconds = time.perf_counter() - t
    torch.save({"best_a": best_a, "best_b": best_b, "r_diag": r.diagonal().clone()}, out)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KB -> GB
    print(json.dumps({"peak_rss_gb": round(peak, 2), "seconds": round(seconds, 1)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--m", type=int, default=8448)
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--child", nargs=3, metavar=("DIST", "DTYPE", "OUT"), help=argparse.SUPPRESS)
    result_arg(ap, "compare_memory")
    args = ap.parse_args()
    if args.child:
        child(args.m, args.batches, *args.child)
        return
    import torch

    out: dict = {"meta": run_meta(args=vars(args))}
    for dist in ("uniform", "zipf"):
        runs = {}
        for dtype in ("float64", "float32"):
            path = f"/tmp/compare_memory_{dist}_{dtype}.pt"
            cmd = [sys.executable, __file__, "--m", str(args.m), "--batches", str(args.batches), "--child", dist,
                   dtype, path]  # fmt: skip
            runs[dtype] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            runs[dtype]["tensors"] = torch.load(path)
            Path(path).unlink()
        a, b = runs["float64"].pop("tensors"), runs["float32"].pop("tensors")
        null_diff = max(float((a[k] - b[k]).abs().max()) for k in ("best_a", "best_b"))
        ratio = runs["float32"]["peak_rss_gb"] / runs["float64"]["peak_rss_gb"]
        out[dist] = {**runs, "max_abs_diff_null_best": null_diff, "peak_ratio": round(ratio, 2),
                     "max_abs_diff_true_r": float((a["r_diag"] - b["r_diag"]).abs().max())}  # fmt: skip
    write_result(args.result, out)


if __name__ == "__main__":
    main()
