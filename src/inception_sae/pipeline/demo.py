"""``inception-sae demo``: the whole pipeline at small scale, online or ``--offline``.

Online: the real inception5h weights (``load_model()``: cached, downloaded
once) and a 500-image subset of Imagenette (160 px; downloaded once, sha256
recorded on first success and checked after). Offline: no network at all:
seeded random weights and procedurally drawn images; everything it writes
says UNTRAINED (the site title and banner, eval.json, the analysis summary).
The settings are :data:`DEMO` (mirrored by ``configs/demo.yaml``).
"""

from __future__ import annotations

import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from ..data.images import Preprocess
from ..errors import UserError
from ..fsio import atomic_write_json
from .config import build
from .run import RunResult, run_pipeline

IMAGENETTE_URL = "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz"
IMAGENETTE_ENV = "INCEPTION_SAE_IMAGENETTE_URL"
ARCHIVE = "imagenette2-160.tgz"

#: The demo's run config: mixed4a at 128 px, a 512-latent k=8 SAE on ~100k samples, 8 features visualised.
DEMO: dict = {
    "layers": ["mixed4a"],
    "harvest": {"sampling": "all", "crop": 128, "resize": 146, "batch_size": 16, "workers": 0},
    "train": {"samples": 102400, "batch_size": 1024, "warmup_steps": 10, "checkpoint_every": 20, "log_every": 5,
              "init_samples": 4096},
    "sae": {"k": 8, "latents": 512},
    "eval": {"max_vectors": 8192, "max_images": 32},
    "analyze": {"input_size": 128, "batch_size": 16, "logit_effect": False, "umap": True,
                "render_top": 3, "checkpoint_every_s": 60.0},
    "featvis": {"features": "top:8", "batch_size": 8,
                "render": {"steps": 32, "model_size": 128, "param": {"size": 96}}},
    "circuits": {"max_images": 16, "input_size": 128, "compare_features": 4, "candidates": 16, "permutations": 200},
    "site": {},
}  # fmt: skip


@dataclass(frozen=True)
class DemoSettings:
    """What ``demo`` was asked for; None means the demo default."""

    out: Path  #: demo folder: ``images/`` and the run (``site/`` inside)
    offline: bool = False  #: random weights + synthetic images, no network
    images: int | None = None  #: number of images (default 140 offline, 500 online)
    size: int | None = None  #: side of the synthetic images and of the model's input crop (default 128)
    samples: int | None = None  #: SAE training length in vectors
    features: int | None = None  #: features visualised
    steps: int | None = None  #: featvis steps
    layer: str | None = None  #: layer (default mixed4a)
    overrides: dict = field(default_factory=dict)  #: run-config overrides, ``section.key`` -> value
    progress: bool = True


def demo_config(opts: DemoSettings, images: Path):
    """The RunConfig of the demo (DEMO with the options on top)."""
    overrides = {
        "images": images, "out": opts.out / "run", "weights": "random" if opts.offline else None, "seed": 0,
        "train.samples": opts.samples, "featvis.features": f"top:{opts.features}" if opts.features else None,
        "layers": [opts.layer] if opts.layer else None,
    }  # fmt: skip
    if opts.size:  # the model sees the images at their own size (resize short side by 256/224, centre crop)
        overrides.update({"harvest.crop": opts.size, "harvest.resize": Preprocess.for_crop(opts.size).resize,
                          "analyze.input_size": opts.size, "circuits.input_size": opts.size})  # fmt: skip
    overrides.update(opts.overrides)
    data = json.loads(json.dumps(DEMO))
    if opts.steps is not None:
        data["featvis"]["render"]["steps"] = opts.steps
    if opts.offline:
        data["site"]["title"] = "inception-sae OFFLINE DEMO (UNTRAINED random weights, synthetic images)"
    return build(data, overrides)


def run_demo(opts: DemoSettings) -> RunResult:
    """Prepare the images (and weights) and run the demo pipeline."""
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    if opts.offline:
        from ..data.synthetic import write_synthetic_images

        images = out / "images"
        write_synthetic_images(images, opts.images or 140, size=opts.size or 128, seed=0)
    else:
        from ..models.weights import load_model

        load_model(None)  # download (once) and check the weights before anything else
        images = imagenette_subset(out / "images", opts.images or 500)
    result = run_pipeline(demo_config(opts, images), progress=opts.progress)
    note = "UNTRAINED random weights and synthetic images: features describe a random network"
    info = {"offline": opts.offline, "untrained_weights": opts.offline, "images": str(images),
            "note": note if opts.offline else "inception5h weights, Imagenette subset"}  # fmt: skip
    atomic_write_json(out / "DEMO.json", info)
    return result


# -- Imagenette ---------------------------------------------------------------------------
def fetch_archive(url: str, dest: Path) -> Path:
    """Download ``url`` to ``dest`` once; record its sha256 on first success and check it afterwards."""
    from ..download import fetch, verify_recorded

    if dest.is_file():
        verify_recorded(dest)
        return dest

    def check(tmp: Path) -> None:
        try:
            with tarfile.open(tmp, "r:gz"):
                pass  # a readable archive, not an error page
        except (tarfile.TarError, OSError) as e:
            raise UserError(f"{url} did not give a .tgz archive ({e})") from None

    return fetch(url, dest, check=check, remedy="Use `inception-sae demo --offline` without network.")


def imagenette_subset(folder: Path, n: int) -> Path:
    """``n`` Imagenette validation images (an equal share per class) as ``folder/<wnid>/<file>``."""
    from ..models.weights import cache_dir

    if folder.is_dir() and len(list(folder.rglob("*.JPEG"))) >= n:
        return folder
    archive = fetch_archive(os.environ.get(IMAGENETTE_ENV, IMAGENETTE_URL), cache_dir() / ARCHIVE)
    per_class: dict[str, int] = {}
    with tarfile.open(archive, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.isfile() and "/val/" in m.name and m.name.endswith(".JPEG")]
        classes = sorted({m.name.split("/")[-2] for m in members})
        if not classes:
            raise UserError(f"{archive} holds no val/<wnid>/*.JPEG images")
        quota = -(-n // len(classes))
        for m in sorted(members, key=lambda m: m.name):
            wnid = m.name.split("/")[-2]
            if per_class.get(wnid, 0) >= quota or sum(per_class.values()) >= n:
                continue
            per_class[wnid] = per_class.get(wnid, 0) + 1
            target = folder / wnid / Path(m.name).name
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(m)
            assert src is not None
            target.write_bytes(src.read())
    return folder
