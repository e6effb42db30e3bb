"""One pass for every layer: five layers (mixed4a-4e) harvested in one pass against one layer and five passes.

Each variant is a full ``harvest_layers`` call into fresh stores (decode in one worker, forward, top-norm
selection, shards written), on the same images, timed in the same process, in alternating order. Two image
distributions: the shared photos (skipped cleanly when absent) and smooth synthetic images. Random weights
(``random:0``, UNTRAINED).

    PYTHONPATH=src python benchmarks/harvest_layers.py --images ../shared/data/imagenet-sample-1000 --n 64
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common_data import result_arg, run_meta, write_result
from PIL import Image

from inception_sae.data.harvest import HarvestConfig, harvest_layers

LAYERS = ("mixed4a", "mixed4b", "mixed4c", "mixed4d", "mixed4e")


def synthetic(folder: Path, n: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        small = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((300, 260), Image.BILINEAR).save(folder / f"img{i:04d}.jpg", quality=90)
    return folder


def timed(images: Path, layers: tuple[str, ...], root: Path, n: int, passes: str) -> float:
    shutil.rmtree(root, ignore_errors=True)
    cfgs = [HarvestConfig(images=images, layer=x, out=root / x, weights="random", max_images=n, workers=1,
                          progress=False, per_image=10) for x in layers]  # fmt: skip
    t0 = time.perf_counter()
    if passes == "one":
        harvest_layers(cfgs)
    else:
        for c in cfgs:
            harvest_layers([c])
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=Path, default=Path("../shared/data/imagenet-sample-1000"))
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    result_arg(ap, "harvest_layers")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="harvest_layers_"))
    dists = {"synthetic": synthetic(tmp / "synthetic", args.n)}
    out: dict = {"machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
                 "weights": "random:0 (UNTRAINED)", "images": args.n, "layers": list(LAYERS),
                 "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}  # fmt: skip
    if args.images.is_dir():
        dists["photos"] = args.images
    else:
        out["photos"] = f"skipped: {args.images} is absent"
    variants = {"one layer (mixed4a)": (LAYERS[:1], "one"), "one layer (mixed4e)": (LAYERS[-1:], "one"),
                "five layers, one pass": (LAYERS, "one"), "five layers, five passes": (LAYERS, "five")}  # fmt: skip
    for name, folder in dists.items():
        times: dict[str, list[float]] = {v: [] for v in variants}
        for r in range(args.repeats):
            for v in variants if r % 2 == 0 else reversed(list(variants)):
                layers, passes = variants[v]
                times[v].append(timed(folder, layers, tmp / "stores", args.n, passes))
        best = {v: min(t) for v, t in times.items()}
        five = best["five layers, one pass"]
        out[name] = {"seconds": best, "one_pass_vs_mixed4e": five / best["one layer (mixed4e)"],
                     "one_pass_vs_mixed4a": five / best["one layer (mixed4a)"],
                     "one_pass_vs_five_passes": five / best["five layers, five passes"]}  # fmt: skip
    shutil.rmtree(tmp, ignore_errors=True)
    write_result(args.result, {"meta": run_meta(args=vars(args)), **out})


if __name__ == "__main__":
    main()
