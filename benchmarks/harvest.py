"""Benchmark the harvest hot path and store reads.

0. Decode: images/s of decode + resize + crop on one core.
1. Bare forward: images/s of ``model.capture`` to the layer on one decoded
   batch (decode excluded), measured before and after the harvest to average
   out load from other processes.
2. Full harvest of ``--n`` images (decode in workers, forward, selection,
   fp16 shards written on a thread) into a fresh store: images/s and the ratio
   to the bare forward.
3. Store reads: shuffled batches of ``--read-batch`` from a synthetic store of
   ``--read-vectors`` vectors (StoreSource: chunked windows), in GB/s of stored
   bytes, and plain random-row gathers from the memory map for comparison.

Usage::

    python benchmarks/harvest.py --images ../shared/data/imagenet-sample-1000 --n 200
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from inception_sae import ActivationStore, load_model
from inception_sae.data.harvest import HarvestConfig, harvest
from inception_sae.data.images import ImageDataset, Preprocess
from inception_sae.data.reader import StoreSource

DEFAULT_IMAGES = Path(__file__).parents[1] / ".." / "shared" / "data" / "imagenet-sample-1000"


def bare_forward(model, images: Path, layer: str, batch: int, repeats: int) -> float:
    """Images/s of the forward pass alone on one pre-decoded batch."""
    ds = ImageDataset.from_folder(images, Preprocess())
    x = torch.stack([ds[i][0] for i in range(batch)])  # (B, 3, 224, 224), decoded once
    with torch.inference_mode():
        model.capture(x, [layer])  # warm-up
        t0 = time.perf_counter()
        for _ in range(repeats):
            model.capture(x, [layer])
    return batch * repeats / (time.perf_counter() - t0)


def decode_rate(images: Path, n: int) -> float:
    """Images/s of decode + resize + crop on one core (what the DataLoader workers do)."""
    ds = ImageDataset.from_folder(images, Preprocess())
    t0 = time.perf_counter()
    for i in range(n):
        ds[i]
    return n / (time.perf_counter() - t0)


def full_harvest(images: Path, out: Path, args) -> tuple[float, int]:
    cfg = HarvestConfig(
        images=images, layer=args.layer, out=out, max_images=args.n, batch_size=args.batch_size,
        workers=args.workers, per_image=10, progress=False, weights="random",
    )  # fmt: skip
    result = harvest(cfg)
    return result.images_per_s, result.vectors


def read_throughput(tmp: Path, n: int, d: int, batch: int, steps: int) -> dict[str, float]:
    """GB/s of shuffled batch reads (chunked windows) and of random-row gathers."""
    rng = np.random.default_rng(0)
    store = ActivationStore.write(tmp / "read", rng.standard_normal((n, d), dtype=np.float32).astype(np.float16),
                                  "mixed4d", shard_size=1 << 16)  # fmt: skip
    gb = batch * d * 2 / 1e9
    src = StoreSource(store, batch, seed=0)
    src.next_batch()
    t0 = time.perf_counter()
    for _ in range(steps):
        src.next_batch()
    chunked = steps * gb / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = np.sort(rng.choice(n, batch, replace=False))
        torch.from_numpy(store.vectors[idx].astype(np.float32))
    random_rows = steps * gb / (time.perf_counter() - t0)
    return {"chunked_gb_s": chunked, "random_rows_gb_s": random_rows, "store_gb": n * d * 2 / 1e9}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--layer", default="mixed4d")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--read-vectors", type=int, default=200_000)
    p.add_argument("--read-batch", type=int, default=4096)
    p.add_argument("--read-steps", type=int, default=100)
    args = p.parse_args()
    if not args.images.is_dir():
        raise SystemExit(f"image folder {args.images} not found")
    model = load_model("random", seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        decode = decode_rate(args.images, min(args.n, 100))
        before = bare_forward(model, args.images, args.layer, args.batch_size, args.repeats)
        rate, vectors = full_harvest(args.images, Path(tmp) / "store", args)
        after = bare_forward(model, args.images, args.layer, args.batch_size, args.repeats)
        reads = read_throughput(Path(tmp), args.read_vectors, 528, args.read_batch, args.read_steps)
    bare = (before + after) / 2
    print(json.dumps({
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "torch_threads": torch.get_num_threads(), "layer": args.layer, "images": args.n, "vectors": vectors,
        "bare_forward_img_s": [round(before, 2), round(after, 2)], "harvest_img_s": round(rate, 2),
        "decode_img_s_1core": round(decode, 1),
        "ratio": round(rate / bare, 3), **{k: round(v, 3) for k, v in reads.items()},
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
