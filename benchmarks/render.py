"""Pass 3's pictures: heatmaps drawn per image in one array operation and crops shared per clipped RF box,
against drawing each picture on its own (the previous code, kept here as the baseline), in the same process.

Per image: the heatmaps of F features (sparse maps as an SAE's codes give them) and the crops of their
argmax positions, at mixed4d's geometry (14 x 14 units, 224 px input). Two image distributions: the shared
photos and seeded noise. The ratio is baseline time / new time; the pictures are checked equal within JPEG noise.

    PYTHONPATH=src python benchmarks/render.py [--images ../shared/data/imagenet-sample-1000] [--n 24] [--F 100]
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np
import torch
from common_data import result_arg, run_meta, write_result
from PIL import Image

from inception_sae.analysis.render import (
    THUMB,
    crop_image,
    heat_colours,
    heatmaps,
    jpeg,
    thumb_base,
    to_uint8,
    upsample_matrix,
)
from inception_sae.data.images import ImageDataset, Preprocess
from inception_sae.models.layers import spatial_layer_info

ROOT = Path(__file__).resolve().parents[1]


def old_to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def old_thumb_base(image: torch.Tensor) -> np.ndarray:
    small = torch.nn.functional.interpolate(image[None].float(), size=(THUMB, THUMB), mode="area")[0]
    return small.permute(1, 2, 0).numpy()


def old_crop(image: np.ndarray, box, buf) -> None:
    top, left, bottom, right = box
    img = Image.fromarray(np.ascontiguousarray(image[top:bottom, left:right]))
    img.thumbnail((THUMB, THUMB))
    img.save(buf, format="JPEG", quality=85)


def old_heatmap(base: np.ndarray, amap: torch.Tensor, vmax: float, buf, info) -> None:
    a = np.clip(amap.float().numpy() / max(vmax, 1e-12), 0, 1)
    A = upsample_matrix(a.shape[0], base.shape[0], (float(info.offset), int(info.jump), int(info.input_size)))
    up = A @ a @ A.T
    out = np.clip(base * 0.45 + 0.75 * heat_colours(up) * np.sqrt(up)[..., None], 0, 1)
    Image.fromarray((out * 255).astype(np.uint8)).save(buf, format="JPEG", quality=85)


def images(kind: str, folder: Path, n: int) -> list[torch.Tensor]:
    if kind == "noise":
        g = torch.Generator().manual_seed(0)
        return [torch.rand(3, 224, 224, generator=g) for _ in range(n)]
    ds = ImageDataset.from_path(folder, Preprocess(resize=256, crop=224))
    return [ds[i][0] for i in range(n)]


def sparse_maps(F: int, W: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """F maps with a few firing units each (as an SAE feature fires) and their maxima."""
    maps = torch.zeros(F, W * W)
    for f in range(F):
        at = torch.randint(0, W * W, (int(torch.randint(1, 12, (1,), generator=g)),), generator=g)
        maps[f, at] = torch.rand(len(at), generator=g) * 3
    maps = maps.view(F, W, W)
    return maps, maps.amax((1, 2)) * 1.2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=Path, default=ROOT.parent / "shared" / "data" / "imagenet-sample-1000")
    ap.add_argument("--n", type=int, default=24, help="images per distribution")
    ap.add_argument("--F", type=int, default=100, help="heatmaps per image")
    result_arg(ap, "render")
    args = ap.parse_args()
    info = spatial_layer_info("mixed4d")
    W = info.size
    rows = []
    kinds = ["photos", "noise"] if args.images.is_dir() else ["noise"]
    for kind in kinds:
        g = torch.Generator().manual_seed(1)
        xs = images(kind, args.images, args.n)
        work = []
        for x in xs:
            maps, vmax = sparse_maps(args.F, W, g)
            pos = maps.flatten(1).argmax(1).tolist()
            work.append((x, maps, vmax, pos))
        t0 = time.perf_counter()
        old_pics = 0
        for x, maps, vmax, pos in work:
            base, pixels = old_thumb_base(x), old_to_uint8(x)
            for f in range(args.F):
                old_heatmap(base, maps[f], float(vmax[f]), io.BytesIO(), info)
            for p in sorted(set(pos)):
                old_crop(pixels, info.rf_box(*divmod(p, W)), io.BytesIO())
                old_pics += 1
        t_old = time.perf_counter() - t0
        t0 = time.perf_counter()
        new_pics, worst = 0, 0.0
        for x, maps, vmax, pos in work:
            pixels = to_uint8(x)
            base = thumb_base(pixels)
            pics = heatmaps(base, maps, vmax, info)
            [jpeg(p) for p in pics]
            boxes = {info.rf_box(*divmod(p, W)) for p in pos}
            for box in boxes:
                jpeg(crop_image(pixels, box))
            new_pics += len(boxes)
        t_new = time.perf_counter() - t0
        for x, maps, vmax, _pos in work[:2]:  # same pictures, within JPEG noise
            base = old_thumb_base(x)
            buf = io.BytesIO()
            old_heatmap(base, maps[0], float(vmax[0]), buf, info)
            a = np.asarray(Image.open(buf), dtype=float)
            new = heatmaps(thumb_base(to_uint8(x)), maps[:1], vmax[:1], info)[0]
            b = np.asarray(Image.open(io.BytesIO(jpeg(new))), dtype=float)
            worst = max(worst, float(np.abs(a - b).mean()))
        rows.append({
            "images": kind, "n": args.n, "heatmaps_per_image": args.F, "crops_old": old_pics, "crops_new": new_pics,
            "baseline_ms_per_image": round(1e3 * t_old / args.n, 1), "new_ms_per_image": round(1e3 * t_new / args.n, 1),
            "ratio": round(t_old / t_new, 2), "mean_abs_pixel_difference": round(worst, 2),
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    write_result(args.result, {"meta": run_meta(args=vars(args)), "rows": rows})


if __name__ == "__main__":
    main()
