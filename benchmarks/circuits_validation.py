"""Circuit validation at its defaults: each method vs measured ablation next to its baselines, interval widths.

Two TopK SAEs (mixed4c, mixed4d; m = 1,024, k = 32) trained with the package's trainer on the 10 top-norm
positions of ``--images`` photos of the seeded random network, then the circuits stage (``circuits.run.run``)
with its default ``compare_features``, ``sites`` and ``candidates`` on ``--max-images`` photos at 224. Prints each
method's median per-feature Spearman with its bootstrap interval, the baselines, the verdicts and the stage's time.

    PYTHONPATH=src python benchmarks/circuits_validation.py [--images 200] [--max-images 64]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from common_data import result_arg, run_meta, write_result

from inception_sae.circuits.config import CircuitsConfig
from inception_sae.circuits.run import run as run_circuits
from inception_sae.data.images import ImageDataset, Preprocess, iter_batches
from inception_sae.data.source import ArraySource
from inception_sae.models.weights import load_model
from inception_sae.sae.model import SAEConfig
from inception_sae.sae.train import TrainConfig, train

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample-1000"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200, help="photos whose top-norm vectors train the SAEs")
    ap.add_argument("--max-images", type=int, default=64, help="photos circuits scans for sites")
    ap.add_argument("--latents", type=int, default=1024)
    ap.add_argument("--samples", type=int, default=300_000)
    result_arg(ap, "circuits_validation")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    model = load_model("random", seed=0)
    ds = ImageDataset.from_path(PHOTOS, Preprocess(256, 224))
    idx = list(range(0, len(ds), max(len(ds) // args.images, 1)))[: args.images]
    rows: dict[str, list[torch.Tensor]] = {"mixed4c": [], "mixed4d": []}
    with torch.no_grad():
        for x, _ in iter_batches(ds, 20, indices=idx):
            acts = model.capture(x, list(rows))
            for layer, a in acts.items():
                v = a.permute(0, 2, 3, 1).reshape(a.shape[0], -1, a.shape[1])
                top = v.norm(dim=2).topk(10, dim=1).indices
                rows[layer].append(torch.gather(v, 1, top.unsqueeze(2).expand(-1, -1, v.shape[2])).flatten(0, 1))
    folders = []
    t0 = time.perf_counter()
    for layer, chunks in rows.items():
        X = torch.cat(chunks).numpy()
        cfg = TrainConfig(samples=args.samples, batch_size=1024, progress=False)
        meta = {"layer": layer, "model": model.identity}
        folders += train(ArraySource(X, 1024, seed=0), [SAEConfig(X.shape[1], args.latents, 32)], cfg,
                         tmp / layer, meta).paths  # fmt: skip
    train_s = time.perf_counter() - t0
    cfg = CircuitsConfig(
        upstream=folders[0],
        downstream=folders[1],
        out=tmp / "circ",
        images=PHOTOS,
        max_images=args.max_images,
        input_size=224,
        weights="random",
    )
    t0 = time.perf_counter()
    v = run_circuits(cfg, model).validation
    circ_s = time.perf_counter() - t0
    table = {name: {"median": row["median"], "ci95": row["ci95"], "features": row["features"],
                    "shuffled": row["shuffled"]["median"], "beats_activation": row.get("beats_activation_baseline")}
             for name, row in v["validation"].items()}  # fmt: skip
    write_result(args.result, {"meta": run_meta(args=vars(args)),
                               "defaults": {"compare_features": cfg.compare_features, "sites": cfg.sites,
                                            "candidates": cfg.candidates, "max_images": cfg.max_images},
                               "train_s": round(train_s, 1), "circuits_s": round(circ_s, 1), "pairs": v["pairs"],
                               "methods": table, "verdicts": v["verdicts"], "recipe": v.get("recipe")})  # fmt: skip


if __name__ == "__main__":
    main()
