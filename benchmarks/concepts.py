"""Cost of the concept labels inside ``analyze``, at 8,448 features, against the pass they ride on.

Per batch of pass 2, the labeller adds: the cells' colours, the features' and neurons' cell maxima and extents,
and the choice- or score-half counts. Once per layer: the choice (after the choice half) and the scores, baselines
and tests (after the score half). Baselines measured in the same process on the same batches: the model's
forward to the layer plus the SAE encode (what every pass pays per batch), and the rest of pass 2 (intervals).

Two image distributions: the shared photos (``--images``, skipped cleanly when absent) and synthetic images
(smooth random fields). Weights are random (``random:0``), labelled as untrained in the output.

    PYTHONPATH=src python benchmarks/concepts.py --images ../shared/data/imagenet-sample-1000 --batches 6
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
from common_data import result_arg, run_meta, write_result

from inception_sae.analysis import concepts as cn
from inception_sae.analysis.concept_records import records
from inception_sae.analysis.passes import pass2_batch
from inception_sae.data.labels import load_labels
from inception_sae.models.weights import load_model
from inception_sae.sae.model import SAEConfig, TopKSAE


def photo_batches(folder: Path, n: int, size: int):
    from inception_sae.data.images import ImageDataset, Preprocess

    ds = ImageDataset.from_path(folder, Preprocess(resize=round(size * 256 / 224), crop=size))
    out = []
    for s in range(0, min(len(ds), n)):
        x, _, _ = ds[s]
        out.append(x)
    return torch.stack(out)


def synthetic_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=g)
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)


class FakeCtx:
    """The slice of ``passes.Context`` that ``pass2_batch`` reads."""

    def __init__(self, info):
        self.info, self.train = info, None

    @property
    def hw(self):
        return self.info.size * self.info.size


def run(images: torch.Tensor, model, sae, layer: str, batch: int, m: int, state_factory) -> dict:
    info = model.layer_info(layer, images.shape[-1])
    ctx = FakeCtx(info)
    n = images.shape[0]
    state, n_classes = state_factory(n, info.channels)
    t_fwd = t_rest = t_con = 0.0
    for half in (0, 1):
        if half == 1:
            t0 = time.perf_counter()
            for cc in state.concepts.values():
                cc.choose()
            t_choose = time.perf_counter() - t0
        idx = torch.nonzero(state.split == half).view(-1)
        for s in range(0, len(idx), batch):
            i = idx[s : s + batch]
            x = images[i]
            t0 = time.perf_counter()
            with torch.no_grad():
                acts = model.capture(x, [layer])[layer]
                v = acts.permute(0, 2, 3, 1).reshape(-1, acts.shape[1])
                vals, ind = sae.encode(v)
            t1 = time.perf_counter()
            keep, state.concepts = state.concepts, {}
            pass2_batch(ctx, state, x, i, acts, vals, ind)  # intervals only
            t2 = time.perf_counter()
            state.concepts = keep
            state.timings["concepts_s"] = 0.0
            pass2_batch(ctx, state, x, i, acts, vals, ind)
            t3 = time.perf_counter()
            t_fwd += t1 - t0
            t_rest += t2 - t1
            t_con += (t3 - t2) - (t2 - t1)  # the same call with the labeller, minus the call without it
    t0 = time.perf_counter()
    for cc in state.concepts.values():
        records(cc, 0)
    t_results = time.perf_counter() - t0
    return {"images": n, "classes": n_classes, "features": m, "forward_encode_s": t_fwd, "intervals_s": t_rest,
            "concepts_per_batch_s": t_con, "choose_s": t_choose, "results_s": t_results,
            "per_batch_ratio": t_con / t_fwd,
            "one_off_s_at_8448": t_choose + t_results}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=Path, default=Path("../shared/data/imagenet-sample-1000"))
    ap.add_argument("--layer", default="mixed4d")
    ap.add_argument("--features", type=int, default=8448)
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--classes", type=int, default=1000, help="distinct classes the images are spread over")
    result_arg(ap, "concepts")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = load_model("random", seed=0)
    d = model.layer_info(args.layer, args.size).channels
    sae = TopKSAE(SAEConfig(d, args.features, k=32))
    names = load_labels()
    n = args.batches * args.batch_size

    def state_factory(n_img: int, channels: int):
        from inception_sae.analysis.examples import Family
        from inception_sae.analysis.passes import RunState

        fam = lambda k: Family.empty(k, 5, 10, 5, seed=0)  # noqa: E731
        classes = torch.arange(n_img) % args.classes + 1
        state = RunState(fam(args.features), fam(channels), torch.zeros(channels, dtype=torch.float64),
                         torch.zeros(1), classes, torch.ones(n_img, dtype=torch.bool))  # fmt: skip
        for f in (state.features, state.neurons):
            f.stats.vmax.fill_(3.0)
            f.start_pass2()
        sizes = {"features": args.features, "neurons": channels}
        state.concepts, state.split = cn.start(state.image_class, state.seen, sizes, names, seed=0)
        return state, args.classes

    out = {"machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
           "weights": "random:0 (UNTRAINED)", "layer": args.layer, "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                     time.gmtime())}  # fmt: skip
    dists = {"synthetic": synthetic_images(n, args.size)}
    if args.images.is_dir():
        dists["photos"] = photo_batches(args.images, n, args.size)
    else:
        out["photos"] = f"skipped: {args.images} is absent"
    for name, imgs in dists.items():
        out[name] = run(imgs, model, sae, args.layer, args.batch_size, args.features, state_factory)
    write_result(args.result, {"meta": run_meta(args=vars(args)), **out})


if __name__ == "__main__":
    main()
