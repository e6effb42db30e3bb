"""Benchmark training reads from an activation store: ``StoreSource`` batches in GB/s of stored bytes.

Writes a synthetic fp16 store (``--vectors`` x ``--d``, shards of 65,536 rows),
then, in one process and alternating to even out load from other processes,
times ``--steps`` batches of ``--batch`` through ``StoreSource`` at each chunk
geometry given by ``--geometry CHUNK_ROWSxWINDOW_CHUNKS`` (the first is the
baseline of the printed ratios), and sorted random-row gathers from the memory
map. Two data distributions: Gaussian vectors and sparse ReLU-like vectors
(70% zeros), which compress nothing here but change the fp16 -> fp32 work.
For each geometry it also reports how many distinct images a batch spans when
each image owns ``--rows-per-image`` consecutive rows (as after a harvest).

``--baseline-reader FILE`` loads another version of ``data/reader.py`` (e.g.
``git show REV:src/inception_sae/data/reader.py > /tmp/reader_old.py``) beside
this one and times both at their own defaults, alternating: the before/after ratio.

Usage::

    PYTHONPATH=src python benchmarks/store_reads.py --geometry 4096x16 --geometry 128x512
    PYTHONPATH=src python benchmarks/store_reads.py --baseline-reader /tmp/reader_old.py
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

from inception_sae import ActivationStore
from inception_sae.data.reader import StoreSource


def make_store(path: Path, n: int, d: int, kind: str, rows_per_image: int) -> ActivationStore:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d), dtype=np.float32)
    if kind == "relu":
        x = np.maximum(x - 0.5, 0)
    ids = np.arange(n) // rows_per_image
    return ActivationStore.write(path, x.astype(np.float16), "mixed4d", image_ids=ids, shard_size=1 << 16)


def time_source(store, batch: int, steps: int, chunk_rows: int, window_chunks: int) -> float:
    src = StoreSource(store, batch, seed=0, chunk_rows=chunk_rows, window_chunks=window_chunks)
    src.next_batch()
    t0 = time.perf_counter()
    for _ in range(steps):
        src.next_batch()
    return time.perf_counter() - t0


def load_reader(path: Path):
    """``StoreSource`` of another version of ``data/reader.py`` (its relative imports resolve in this package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("inception_sae.data.reader_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.StoreSource


def time_defaults(store, batch: int, steps: int, cls) -> float:
    src = cls(store, batch, seed=0)
    src.next_batch()
    t0 = time.perf_counter()
    for _ in range(steps):
        src.next_batch()
    return time.perf_counter() - t0


def time_random_rows(store, batch: int, steps: int) -> float:
    rng = np.random.default_rng(1)
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = np.sort(rng.choice(len(store), batch, replace=False))
        torch.from_numpy(store.vectors[idx].astype(np.float32))
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vectors", type=int, default=400_000)
    p.add_argument("--d", type=int, default=528)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rows-per-image", type=int, default=780, help="views x per_image (780: 78 views x 10)")
    p.add_argument("--geometry", action="append", default=None, help="CHUNK_ROWSxWINDOW_CHUNKS (repeatable)")
    p.add_argument("--baseline-reader", type=Path, default=None, help="another reader.py: before/after at defaults")
    args = p.parse_args()
    geoms = [tuple(map(int, g.split("x"))) for g in (args.geometry or ["4096x16", "128x512"])]
    gb = args.steps * args.batch * args.d * 2 / 1e9
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("gaussian", "relu"):
            store = make_store(Path(tmp) / kind, args.vectors, args.d, kind, args.rows_per_image)
            secs = {g: [] for g in geoms}
            rand = []
            for _ in range(args.repeats):  # alternate, so load from other processes hits every geometry alike
                for g in geoms:
                    secs[g].append(time_source(store, args.batch, args.steps, *g))
                rand.append(time_random_rows(store, args.batch, args.steps))
            base = min(secs[geoms[0]])
            row = {f"{c}x{w}": {"gb_s": round(gb / min(s), 3), "vs_first": round(base / min(s), 3)}
                   for (c, w), s in secs.items()}  # fmt: skip
            row["random_rows_gb_s"] = round(gb / min(rand), 3)
            results[kind] = row
            if args.baseline_reader is not None:
                base_cls, ab = load_reader(args.baseline_reader), {"baseline": [], "this": []}
                for _ in range(args.repeats):
                    ab["baseline"].append(time_defaults(store, args.batch, args.steps, base_cls))
                    ab["this"].append(time_defaults(store, args.batch, args.steps, StoreSource))
                med = {k: float(np.median(v)) for k, v in ab.items()}
                row["defaults_vs_baseline"] = {"baseline_gb_s": round(gb / med["baseline"], 3),
                                               "this_gb_s": round(gb / med["this"], 3),
                                               "ratio_median": round(med["baseline"] / med["this"], 3)}  # fmt: skip
            for c, w in geoms:
                src = StoreSource(store, args.batch, seed=0, chunk_rows=c, window_chunks=w)
                if hasattr(src, "mixing"):  # older readers cannot say
                    row[f"{c}x{w}"]["images_per_batch"] = src.mixing(batches=8)["images_per_batch"]
    print(json.dumps({
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "load_avg": round(os.getloadavg()[0], 1), "vectors": args.vectors, "d": args.d, "batch": args.batch,
        "steps": args.steps, "rows_per_image": args.rows_per_image, "results": results,
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
