"""Benchmark: TopK, BatchTopK and Matryoshka SAEs side by side on quality, on three data families.

    PYTHONPATH=src python benchmarks/sae_architectures_quality.py [--families hierarchy,zipf,nonneg] [--seeds 0,1]
        [--out benchmarks/results/sae_architectures_quality.json]

Families (each architecture trains on the same rows, in the same order, for the same samples):

- ``hierarchy``: ``planted_hierarchy`` (parents always fire with exactly one of their children, siblings
  exclusive, Zipf frequencies, plus Zipf background features): 6 parents x 4 children, 96 background features,
  d = 64, true L0 3.2; m = 256, k = 3, batch 256. Absorption is measured here (the panel's ``absorption``,
  mean over the parents).
- ``zipf`` and ``nonneg``: ``quality_data.py``'s families of ``sae_quality.py`` scaled down for a 2-core CPU
  (d = 128, 2,048 planted directions, 16 active per row); m = 2,048, k = 16, batch 1,024, 300 steps (307k
  samples: early in training, where TopK's faster start shows; hierarchy: 240k samples).

Per family and architecture, over two SAE seeds (initialisation; the data stream is the same):

- ``fvu``: held-out FVU of the inference codes (TopK: the k largest; BatchTopK/Matryoshka: the calibrated
  threshold), and ``l0`` their held-out mean L0: FVU at equal samples.
- ``fvu_at_k``: FVU at equal L0. For BatchTopK/Matryoshka the per-latent thresholds are scaled by one factor
  (bisection on 4,096 of the held-out rows) until the mean L0 is k; TopK's is its ``fvu``.
- ``dead``: share of latents that never fire on the held-out rows plus 32,768 more rows of the family.
- ``absorption`` (hierarchy only) and ``stability`` (``seed_stability`` of the two seeds: matched decoder cosine,
  share above 0.9, MCC, with the random baselines).
- ``step_s``: median training step (steps 4 on) in this process, and its ratio to TopK's; the step cost at the
  paper size (d = 528, m = 8,448, k = 32) against the bare GEMM is read from ``results/sae_architectures.json``
  (``sae_architectures.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common_data import run_meta  # noqa: E402
from quality_data import FAMILIES, Planted  # noqa: E402

from inception_sae.data.source import ArraySource  # noqa: E402
from inception_sae.data.synthetic import planted_hierarchy  # noqa: E402
from inception_sae.sae.cpu_memory import keep_freed_memory  # noqa: E402
from inception_sae.sae.metrics import fvu  # noqa: E402
from inception_sae.sae.model import SAEConfig, TopKSAE  # noqa: E402
from inception_sae.sae.quality.absorption import absorption  # noqa: E402
from inception_sae.sae.quality.stability import dense_codes, seed_stability  # noqa: E402
from inception_sae.sae.train import TrainConfig, Trainer  # noqa: E402

ARCHS = ("topk", "batchtopk", "matryoshka")
HELD, FIRE = 16_384, 32_768


class _Stream:
    """A BatchSource over a planted family: batch i is the family's stream i (``quality_data.Planted``)."""

    def __init__(self, spec: Planted, batch: int) -> None:
        self.spec, self.d, self.batch_size, self.pos = spec, spec.d, batch, 0
        self.D = torch.from_numpy(spec.dictionary())

    def next_batch(self) -> torch.Tensor:
        self.pos += 1
        return torch.from_numpy(self.spec._rows(self.pos - 1, self.batch_size, self.D))

    def rows(self, stream: int, n: int) -> np.ndarray:
        return self.spec._rows(stream, n, self.D)

    def state_dict(self) -> dict:
        return {"pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.pos = int(state["pos"])


def family(name: str) -> dict:
    """Training source factory, held-out rows, firing rows and the SAE shape of one family."""
    if name == "hierarchy":
        h = planted_hierarchy(120_000 + HELD + FIRE, d=64, parents=6, children=4, background=96, seed=0)
        train, held, fire = h.x[:120_000], h.x[120_000 : 120_000 + HELD], h.x[120_000 + HELD :]
        return {"source": lambda: ArraySource(train, 256, seed=0), "held": held, "fire": fire, "tree": h,
                "m": 256, "k": 3, "batch": 256, "samples": 240_000, "true_l0": h.true_l0}  # fmt: skip
    spec = dataclasses.replace(FAMILIES[name], d=128, n_true=2048, active=16)
    probe = _Stream(spec, 1024)
    return {"source": lambda: _Stream(spec, 1024), "held": probe.rows(10**9, HELD), "fire": probe.rows(10**9 + 1, FIRE),
            "tree": None, "m": 2048, "k": 16, "batch": 1024, "samples": 1024 * 300, "true_l0": 16}  # fmt: skip


def train_one(fam: dict, arch: str, seed: int, out: Path) -> tuple[TopKSAE, list[float]]:
    cfg = TrainConfig(samples=fam["samples"], batch_size=fam["batch"], progress=False, checkpoint_every=0,
                      checkpoint_every_s=0)  # fmt: skip
    held = fam["held"]
    t = Trainer(fam["source"](), [SAEConfig(held.shape[1], fam["m"], fam["k"], seed=seed, architecture=arch)], cfg, out)
    t.initialise()
    times = []
    while t.step < t.total_steps:
        tic = time.perf_counter()
        t.step_all()
        times.append(time.perf_counter() - tic)
    t.calibrate()
    (path,) = t.save_saes()
    return TopKSAE.load(path), times


@torch.no_grad()
def recon(sae: TopKSAE, x: torch.Tensor) -> tuple[float, float]:
    """(mean L0, FVU) of the inference codes."""
    vals, idx = sae.encode(x)
    return float((vals > 0).sum(1).float().mean()), fvu(sae.decode(vals, idx), x)


@torch.no_grad()
def fvu_at_l0(sae: TopKSAE, x: torch.Tensor, k: int) -> tuple[float, float]:
    """(scale, FVU on ``x``) with the thresholds scaled by one factor so the mean L0 is ``k``: bisection on the log
    scale, on the first 4,096 rows of ``x``."""
    assert sae.threshold is not None
    base = sae.threshold.clone()
    lo, hi = -2.0, 2.0  # log2 of the factor: a higher threshold keeps fewer latents
    try:
        for _ in range(20):
            mid = (lo + hi) / 2
            sae.threshold.copy_(base * 2**mid)
            l0, _ = recon(sae, x[:4096])
            lo, hi = (mid, hi) if l0 > k else (lo, mid)
        sae.threshold.copy_(base * 2 ** ((lo + hi) / 2))
        return 2 ** ((lo + hi) / 2), recon(sae, x)[1]
    finally:
        sae.threshold.copy_(base)


def dead_share(sae: TopKSAE, rows: np.ndarray) -> float:
    fired = torch.zeros(sae.d_sae, dtype=torch.bool)
    for s in range(0, len(rows), 8192):
        fired |= (dense_codes(sae, torch.from_numpy(rows[s : s + 8192])) > 0).any(0)
    return 1.0 - float(fired.float().mean())


def mean_absorption(sae: TopKSAE, h, held: np.ndarray) -> dict:
    codes = dense_codes(sae, torch.from_numpy(held)).numpy()
    parent, child = h.parent[120_000 : 120_000 + HELD], h.child[120_000 : 120_000 + HELD]
    per = []
    for p in range(h.n_parents):
        own = parent == p
        per.append(absorption(codes, own, np.where(own, child - len(h.child_parent) // h.n_parents * p, -1), f"p{p}"))
    return {"rate": float(np.mean([a.absorbed["rate"] for a in per])),
            "per_parent": [round(a.absorbed["rate"], 4) for a in per],
            "parent_f1": float(np.mean([a.parent_f1 for a in per]))}  # fmt: skip


def measure(name: str, seeds: list[int], work: Path) -> list[dict]:
    fam = family(name)
    x = torch.from_numpy(fam["held"])
    rows, step_topk = [], None
    for arch in ARCHS:
        saes, runs = [], []
        for seed in seeds:
            sae, times = train_one(fam, arch, seed, work / f"{name}_{arch}_{seed}")
            l0, f = recon(sae, x)
            run = {"seed": seed, "l0": l0, "fvu": f, "step_s": statistics.median(times[3:])}
            run["threshold_scale"], run["fvu_at_k"] = fvu_at_l0(sae, x, fam["k"]) if sae.cfg.uses_threshold else (1, f)
            run["dead"] = dead_share(sae, np.concatenate([fam["held"], fam["fire"]]))
            if fam["tree"] is not None:
                run["absorption"] = mean_absorption(sae, fam["tree"], fam["held"])
            saes.append(sae)
            runs.append(run)
            print(json.dumps({"family": name, "architecture": arch, **run}), flush=True)
        stab = seed_stability(saes[0], saes[1], fam["held"]) if len(saes) > 1 else None
        step = statistics.mean(r["step_s"] for r in runs)
        step_topk = step if arch == "topk" else step_topk
        mean = {key: statistics.mean(r[key] for r in runs) for key in ("l0", "fvu", "fvu_at_k", "dead")}
        if fam["tree"] is not None:
            mean["absorption"] = statistics.mean(r["absorption"]["rate"] for r in runs)
        rows.append({"family": name, "architecture": arch, "m": fam["m"], "k": fam["k"], "batch": fam["batch"],
                     "samples": fam["samples"], "true_l0": fam["true_l0"], **mean, "step_s": step,
                     "step_over_topk": step / step_topk if step_topk else None, "stability": stab,
                     "runs": runs})  # fmt: skip
    return rows


def paper_size_steps() -> list[dict]:
    """The step against the bare GEMM at d = 528, m = 8,448 (``sae_architectures.py``'s last run)."""
    path = HERE / "results" / "sae_architectures.json"
    if not path.is_file():
        return []
    saved = json.loads(path.read_text())
    return [{"data": r["data"], "architecture": r["architecture"], "step_over_gemm_prealloc":
             r["step_over_gemm_prealloc"], "date": saved["meta"]["date"]} for r in saved["rows"]]  # fmt: skip


def table(rows: list[dict], paper: list[dict]) -> str:
    ratio = {(r["data"], r["architecture"]): r["step_over_gemm_prealloc"] for r in paper}
    out = [
        "| family | architecture | FVU (equal samples) | held-out L0 (k) | FVU at L0 = k | dead | absorption "
        "| matched dec. cos / >0.9 / MCC | step / TopK's | step / GEMM (d=528) |",
        "|---|---|" + "---:|" * 8,
    ]
    for r in rows:
        s = r["stability"]
        stab = "-" if s is None else f"{s['mean_cosine']['mean']:.3f} / {s['above_0.9']['rate']:.2f} / " \
            f"{s['mcc']['mean']:.3f}"  # fmt: skip
        absorb = f"{r['absorption']:.3f}" if "absorption" in r else "-"
        gemm = ratio.get(("varied", r["architecture"]))
        out.append(f"| {r['family']} | {r['architecture']} | {r['fvu']:.4f} | {r['l0']:.2f} ({r['k']}) | "
                   f"{r['fvu_at_k']:.4f} | {r['dead']:.1%} | {absorb} | {stab} | {r['step_over_topk']:.2f}x | "
                   f"{'-' if gemm is None else f'{gemm:.2f}x'} |")  # fmt: skip
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--families", default="hierarchy,zipf,nonneg")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=HERE / "results" / "sae_architectures_quality.json")
    args = p.parse_args()
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    tic = time.time()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as work:
        for name in args.families.split(","):
            rows += measure(name, seeds, Path(work))
    paper = paper_size_steps()
    meta = run_meta(command=" ".join(sys.argv), wall_s=time.time() - tic)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows, "paper_size_steps": paper}, indent=2, default=str))
    print(table(rows, paper))


if __name__ == "__main__":
    main()
