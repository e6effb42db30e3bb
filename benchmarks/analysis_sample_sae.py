"""Train the SAE used for the analysis run on the shared 1000-image sample (random weights, mixed4d).

Captures every mixed4d position of the images once (the harvest branch's store is
not merged here), then trains with the sae branch's Python API on an ArraySource.
Usage: python benchmarks/analysis_sample_sae.py IMAGES OUT [--expansion 4] [--samples 1000000]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from inception_sae import load_model
from inception_sae.data.images import ImageDataset, iter_batches
from inception_sae.data.source import ArraySource
from inception_sae.sae.model import SAEConfig
from inception_sae.sae.train import TrainConfig, train


def capture(model, images: str, layer: str, batch: int = 32) -> np.ndarray:
    ds = ImageDataset.from_path(images)
    chunks = []
    for x, _ in iter_batches(ds, batch):
        with torch.no_grad():
            a = model.capture(x, [layer])[layer]  # (B, C, H, W)
        chunks.append(a.permute(0, 2, 3, 1).reshape(-1, a.shape[1]).numpy())
    return np.concatenate(chunks)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("images")
    p.add_argument("out")
    p.add_argument("--layer", default="mixed4d")
    p.add_argument("--expansion", type=float, default=4)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--samples", type=int, default=1_000_000)
    a = p.parse_args()
    model = load_model("random", seed=0)
    t0 = time.perf_counter()
    vectors = capture(model, a.images, a.layer)
    t1 = time.perf_counter()
    print(f"captured {vectors.shape} in {t1 - t0:.1f} s")
    sae_cfg = SAEConfig.from_expansion(vectors.shape[1], a.expansion, k=a.k)
    cfg = TrainConfig(samples=a.samples, batch_size=4096, progress=False, log_every=50)
    res = train(ArraySource(vectors, 4096), [sae_cfg], cfg, a.out, meta={"layer": a.layer, "model": model.identity})
    print(f"trained in {time.perf_counter() - t1:.1f} s -> {res.paths}")
    print(json.dumps(res.summaries, indent=1))


if __name__ == "__main__":
    main()
