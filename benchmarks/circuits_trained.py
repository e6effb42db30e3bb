"""Circuits on SAEs trained by the sae branch: methods vs measured ablation (rank correlation figure).

Captures mixed4b and mixed4c vectors from real photos with the random-weight
model (the trained inception5h weights cannot be downloaded here), trains one
small TopK SAE per layer with the project's trainer, and runs the circuits
stage with images. Prints the validation numbers; the figure is
``<out>/circuits/agreement.png``.

    python benchmarks/circuits_trained.py --images ../shared/data/imagenet-sample-1000 --out runs/circ_bench
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common_data import result_arg, run_meta, write_result

from inception_sae import load_model
from inception_sae.circuits.config import CircuitsConfig
from inception_sae.circuits.run import run as run_circuits
from inception_sae.data.images import ImageDataset, Preprocess, iter_batches
from inception_sae.data.source import ArraySource
from inception_sae.sae.model import SAEConfig
from inception_sae.sae.train import TrainConfig, train


def capture(model, images: Path, layers: list[str], n: int, size: int, batch: int = 16) -> dict[str, torch.Tensor]:
    """(N, d) vectors of every position of ``n`` images per layer."""
    ds = ImageDataset.from_path(images, Preprocess(round(size * 256 / 224), size))
    ds.files = ds.files[:n]
    out: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    with torch.no_grad():
        for x, _ in iter_batches(ds, batch):
            for name, a in model.capture(x, layers).items():
                out[name].append(a.permute(0, 2, 3, 1).reshape(-1, a.shape[1]))
    return {k: torch.cat(v) for k, v in out.items()}


def train_pair(model, images: Path, out: Path, n: int, size: int, m: int, k: int, samples: int) -> list[Path]:
    """Train one SAE on each of mixed4b and mixed4c; returns their folders."""
    vectors = capture(model, images, ["mixed4b", "mixed4c"], n, size)
    folders = []
    for layer, v in vectors.items():
        cfg = TrainConfig(samples=samples, batch_size=256, progress=False, init_samples=min(4096, len(v)))
        res = train(ArraySource(v.numpy(), 256), [SAEConfig(v.shape[1], m, k)], cfg, out / layer,
                    meta={"layer": layer, "model": model.identity})  # fmt: skip
        folders.append(res.paths[0])
        print(layer, len(v), "vectors", json.dumps(res.summaries, default=str)[:300])
    return folders


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--train-images", type=int, default=200)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--latents", type=int, default=512)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--samples", type=int, default=200_000)
    p.add_argument("--compare-features", type=int, default=16)
    p.add_argument("--max-images", type=int, default=64)
    result_arg(p, "circuits_trained")
    a = p.parse_args()
    t0 = time.time()
    model = load_model("random", seed=0)
    up, down = train_pair(model, a.images, a.out, a.train_images, a.size, a.latents, a.k, a.samples)
    print(f"trained in {time.time() - t0:.1f} s")
    cfg = CircuitsConfig(upstream=up, downstream=down, out=a.out / "circuits", images=a.images, max_images=a.max_images,
                         input_size=a.size, compare_features=a.compare_features, weights="random")  # fmt: skip
    v = run_circuits(cfg, model).validation
    keys = ("pairs", "spearman_vs_ablation", "verdicts", "branch_consistency")
    signs = v["sign_disagreements_encoder_expanded_vs_ablation"]["count"]
    plain = json.loads(json.dumps({k: v.get(k) for k in keys}, default=float))
    write_result(a.result, {"meta": run_meta(args=vars(a)), **plain, "sign_disagreements": signs})
    print(f"total {time.time() - t0:.1f} s; figure {a.out / 'circuits' / 'agreement.png'}")


if __name__ == "__main__":
    main()
