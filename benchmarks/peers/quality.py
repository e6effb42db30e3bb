"""One peer on one family of the SAE quality benchmark; prints one JSON line (the curve).

Runs inside benchmarks/.peers-venv (see setup.sh), called by benchmarks/sae_quality.py:
    python quality.py {sparsify,overcomplete,saelens} FAMILY --steps N --eval-steps 25,100,400
The rows of every step come from benchmarks/quality_data.py, as for our trainer; only the
step itself is timed (the rows are generated before it).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from peers import RUNNERS
from quality_data import Curve, Family, train_time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("peer", choices=sorted(RUNNERS))
    p.add_argument("family")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--eval-steps", default="100,400")
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--latents", type=int, default=8448)
    p.add_argument("--held", type=int, default=16384)
    p.add_argument("--fire-rows", type=int, default=131072)
    p.add_argument("--real-dir", type=Path, default=None)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    fam = Family(a.family, a.batch, a.real_dir)
    lr = 2e-4 / math.sqrt(a.latents / 2**14)
    step, recon, dec_rows = RUNNERS[a.peer](fam.d, a.latents, a.k, lr)
    curve = Curve(fam, [int(s) for s in a.eval_steps.split(",")], a.held, a.fire_rows)

    def recon_np(x):
        x_hat, idx, vals = recon(torch.from_numpy(x))
        return x_hat.float().numpy(), idx.numpy(), vals.float().numpy()

    times = []
    for s in range(a.steps):
        x = torch.from_numpy(fam.batch_rows(s))
        tic = time.perf_counter()
        step(x)
        times.append(time.perf_counter() - tic)
        curve.maybe(s + 1, train_time(times), recon_np, lambda: dec_rows().float().numpy())
    med = float(np.median(times[3:]))
    print(json.dumps({"trainer": a.peer, "step_s": med, "samples_per_s": a.batch / med, "points": curve.points}))


if __name__ == "__main__":
    main()
