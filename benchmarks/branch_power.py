"""Power and false calls of the branch test next to its baselines, on three distributions of rows.

Distributions (rows generated outside every method's model; see ``tests/branch_truth.py``):
- ``photos``: the random network's mixed4d activations on 60 shared photos (skipped when absent);
- ``synthetic``: the same on 60 of the package's synthetic images;
- ``dictionary``: centred atoms at mixed4d's width with channel scales over two orders of magnitude (the
  end-to-end test's dictionary, before training).
Methods (each labels a row's dominant branch at BH q <= 0.01 over rows x branches):
- ``test``: the tool's test (floored channel-RMS units, standardised L1 mass, empirical location);
- ``plain_rms``: the same statistic in each channel's own RMS units (no floor: what the earlier null used);
- ``raw``: the same statistic in raw decoder units;
- ``share_only``: the raw positive-part share against the layer's median and MAD per branch (no per-row model).

    PYTHONPATH=src python benchmarks/branch_power.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from common_data import result_arg, run_meta, write_result  # noqa: E402
from factories.branch_truth import (  # noqa: E402
    FAMILIES,
    NAMES,
    SLICES,
    D,
    Generator,
    activations,
    atom_activations,
    atom_dictionary,
)

from inception_sae.analysis import branch_null as bn  # noqa: E402
from inception_sae.models.weights import load_model  # noqa: E402

PHOTOS = ROOT.parent / "shared" / "data" / "imagenet-sample-1000"


def labels(method: str, W: torch.Tensor, rms: torch.Tensor) -> np.ndarray:
    """(n,) dominant branch index (-1: none) of the positive-part share under ``method``."""
    if method == "share_only":
        from inception_sae.analysis.branches import branch_shares

        S = branch_shares(W, SLICES)["pos"].double()
        med = S.median(0).values
        mad = 1.4826 * (S - med).abs().median(0).values.clamp_min(1e-12)
        z = (S - med) / mad
        p = bn.normal_sf(z)
        return bn.dominant_index(p, bn.benjamini_hochberg(p), z).numpy()
    if method == "test":
        scale, live = bn.data_units(rms, D)
    elif method == "plain_rms":
        live = rms > 0
        scale = rms.clamp_min(float(rms[live].min()))
    else:
        scale, live = bn.data_units(None, D)
    return bn.branch_test(W, SLICES, scale, live, "pos").dominant.numpy()


def score(dom: np.ndarray, tags: np.ndarray) -> dict:
    out = {f"planted {b}": float((dom[tags == f"planted {b}"] == NAMES.index(b)).mean()) for b in ("5x5", "1x1")}
    plain = ~np.char.startswith(tags.astype(str), "planted")
    out["no preference called"] = float((dom[plain] >= 0).mean())
    out["worst family"] = max(float((dom[tags == f] >= 0).mean()) for f in set(tags[plain].tolist()))
    return {k: round(v, 3) for k, v in out.items()}


def dictionary_rows(seed: int):
    g = torch.Generator().manual_seed(seed)
    W, tags, scale = atom_dictionary(atoms=1200, planted=150, g=g)
    rms = atom_activations(W, scale, 20_000, active=6.0, g=g).pow(2).mean(0).sqrt()
    W = W + torch.randn(W.shape, generator=g) * 0.05 / D**0.5  # leak, dead channels included
    tags = np.array([f"planted {t}" if t != "none" else "atoms" for t in tags])
    return W, tags, rms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    result_arg(ap, "branch_power")
    args = ap.parse_args()
    model = load_model("random", seed=0)
    tmp = Path(tempfile.mkdtemp())
    sources = {"synthetic": tmp / "none"}
    if PHOTOS.is_dir():
        sources = {"photos": PHOTOS, **sources}
    acts = {name: activations(model, path, 60, tmp / name) for name, path in sources.items()}
    results: dict = {}
    for seed in range(args.seeds):
        pops = {}
        for name, A in acts.items():
            gen = Generator(A, seed)
            W, tags = gen.population(per_family=300, planted=150)
            pops[name] = (W, np.array(tags), gen.rms)
        pops["dictionary"] = dictionary_rows(seed)
        for name, (W, tags, rms) in pops.items():
            for method in ("test", "plain_rms", "raw", "share_only"):
                results.setdefault(name, {}).setdefault(method, []).append(score(labels(method, W, rms), tags))
    table = {
        name: {method: {k: [min(r[k] for r in runs), max(r[k] for r in runs)] for k in runs[0]}
               for method, runs in by.items()}
        for name, by in results.items()
    }  # fmt: skip
    write_result(args.result, {"meta": run_meta(args=vars(args)), "seeds": args.seeds, "families": list(FAMILIES),
                               "ranges": table})  # fmt: skip


if __name__ == "__main__":
    main()
