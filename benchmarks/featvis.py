"""Benchmark feature visualisation: batched vs one-at-a-time, a whole-layer projection, SAE objectives.

    python benchmarks/featvis.py throughput [--layer mixed4d --steps 8 --batch 16 --single 4]
    python benchmarks/featvis.py objectives [--features 8 --steps 96]

``throughput`` renders ``batch`` different SAE features in one batch and
``single`` features one at a time with the same steps and canvas (128 px,
upsampled to 224), reports features per minute at 512 steps, counts the FLOPs
of one optimisation step (forward to the layer + backward to the image) with
torch's FlopCounterMode, and projects a whole layer (8,448 features at mixed4d,
an SAE with 16x expansion) on a GPU at an assumed sustained throughput.

``objectives`` trains a small TopK SAE on mixed3a activations of a random
network (images: 1/f noise) and renders its features with the encoder
pre-activation and with the decoder direction, then scores every image under
both, plus whether the feature wins the SAE's TopK at the centre.

Weights are random (seeded): this machine has no copy of inception5h.pth.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from common_data import result_arg, run_meta, write_result

from inception_sae.featvis.objectives import sae_decoder, sae_encoder
from inception_sae.featvis.param import ImageParam, ParamConfig
from inception_sae.featvis.render import RenderConfig, render, save_png
from inception_sae.models import load_model
from inception_sae.models.layers import layer_info
from inception_sae.sae.view import SAETensors

#: Assumed sustained GPU throughput for the projection (FLOP/s): H100 SXM peak is
#: ~67 TFLOP/s FP32 and ~495 TFLOP/s dense TF32; we assume 25 TFLOP/s FP32 sustained
#: (small 14x14 convs, batch 64, backward to the image) as a deliberately cautious figure.
GPU_FLOPS = 25e12
LUCID_STEPS = 512


def random_sae(layer: str, d_sae: int, seed: int = 0) -> SAETensors:
    """A hand-made random SAE (unit-norm decoder rows, encoder = decoder^T)."""
    d_in = layer_info(layer).channels
    g = torch.Generator().manual_seed(seed)
    w_dec = torch.nn.functional.normalize(torch.randn(d_sae, d_in, generator=g), dim=1)
    return SAETensors(w_dec.T.contiguous(), w_dec, torch.zeros(d_sae), torch.zeros(d_in), min(32, d_sae), layer,
                      {"model": "random:0"})  # fmt: skip


def step_flops(model, layer: str, size: int, model_size: int) -> float:
    """FLOPs of one optimisation step for one image: param -> transforms -> layer -> backward."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = RenderConfig(steps=1, param=ParamConfig(size=size), model_size=model_size)
    sae = random_sae(layer, 64)
    with FlopCounterMode(display=False) as counter:
        render(model, sae_encoder(sae, 0), [0], cfg)
    return float(counter.get_total_flops())


def throughput(args: argparse.Namespace) -> dict:
    model = load_model("random", seed=0)
    sae = random_sae(args.layer, args.d_sae)
    cfg = RenderConfig(steps=args.steps, param=ParamConfig(size=args.size), model_size=args.model_size)
    render(model, sae_encoder(sae, 0), [0], RenderConfig(steps=1, param=cfg.param, model_size=cfg.model_size))
    t = time.perf_counter()
    render(model, sae_encoder(sae, list(range(args.batch))), list(range(args.batch)), cfg)
    batched = (time.perf_counter() - t) / (args.batch * args.steps)  # s per image-step
    t = time.perf_counter()
    for f in range(args.single):
        render(model, sae_encoder(sae, f), [f], cfg)
    single = (time.perf_counter() - t) / (args.single * args.steps)
    flops = step_flops(model, args.layer, args.size, args.model_size)
    gpu_s = flops * LUCID_STEPS / GPU_FLOPS
    return {
        "layer": args.layer,
        "d_sae": args.d_sae,
        "canvas": f"{args.size}->{args.model_size}",
        "steps_measured": args.steps,
        "batch": args.batch,
        "cpu_s_per_image_step": {"batched": batched, "single": single},
        "cpu_features_per_min_at_512": {"batched": 60 / (batched * 512), "single": 60 / (single * 512)},
        "speedup": single / batched,
        "gflops_per_image_step": flops / 1e9,
        "gpu_assumed_tflops": GPU_FLOPS / 1e12,
        "gpu_projected_s_per_feature": gpu_s,
        "gpu_projected_layer_hours": gpu_s * args.d_sae / 3600,
        "cpu_batched_layer_hours": batched * 512 * args.d_sae / 3600,
    }


def train_small_sae(model, layer: str, d_sae: int, k: int, seed: int = 0) -> SAETensors:
    """A TopK SAE trained briefly on ``layer`` activations of 1/f-noise images (random net)."""
    with torch.no_grad():
        imgs = ImageParam(range(256), ParamConfig(size=64))
        imgs.params.mul_(60)  # 1/f noise with visible structure
        acts = model.capture(imgs(), [layer])[layer]  # (N, d, h, w)
    v = acts.permute(0, 2, 3, 1).reshape(-1, acts.shape[1])  # (N*h*w, d)
    g = torch.Generator().manual_seed(seed)
    w_dec = torch.nn.functional.normalize(torch.randn(d_sae, v.shape[1], generator=g), dim=1)
    params = {
        "W_enc": w_dec.T.clone().requires_grad_(),
        "W_dec": w_dec.clone().requires_grad_(),
        "b_enc": torch.zeros(d_sae, requires_grad=True),
        "b_dec": v.mean(0).clone().requires_grad_(),
    }
    opt = torch.optim.Adam(params.values(), lr=2e-3)
    for _ in range(400):
        batch = v[torch.randint(len(v), (1024,), generator=g)]
        pre = (batch - params["b_dec"]) @ params["W_enc"] + params["b_enc"]
        val, idx = pre.topk(k, dim=1)
        z = torch.zeros_like(pre).scatter(1, idx, val.relu())
        loss = ((z @ params["W_dec"] + params["b_dec"] - batch) ** 2).sum(1).mean() / batch.var(0).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"small SAE: {d_sae} latents, k={k}, FVU {loss.item():.3f} on {len(v)} vectors")
    t = {key: p.detach() for key, p in params.items()}
    return SAETensors(t["W_enc"], t["W_dec"], t["b_enc"], t["b_dec"], k, layer, {"model": "random:0", "k": k})


def objectives(args: argparse.Namespace) -> dict:
    model = load_model("random", seed=0)
    sae = train_small_sae(model, "mixed3a", 1024, 16)
    # the most frequently firing-capable features: largest encoder norms are not special; take the first N
    feats = list(range(args.features))
    cfg = RenderConfig(steps=args.steps, param=ParamConfig(size=args.size), model_size=args.model_size)
    out, rows = Path(args.out), {}
    for name, make in (("encoder", sae_encoder), ("decoder", sae_decoder)):
        res = render(model, make(sae, feats), [1000 + f for f in feats], cfg)
        x = torch.from_numpy(res.images).permute(0, 3, 1, 2)
        x = torch.nn.functional.interpolate(x, size=args.model_size, mode="bilinear", align_corners=False)
        with torch.no_grad():
            a = model.capture(x, ["mixed3a"])["mixed3a"]
            enc = sae_encoder(sae, feats)({"mixed3a": a}).numpy()
            dec = sae_decoder(sae, feats)({"mixed3a": a}).numpy()
            c = a[:, :, a.shape[2] // 2, a.shape[3] // 2]  # (B, d)
            pre = (c - sae.b_dec) @ sae.W_enc + sae.b_enc  # (B, d_sae)
            kth = pre.topk(16, dim=1).values[:, -1]
            wins = (pre[torch.arange(len(feats)), feats] >= kth).numpy()
        contrast = res.images.std(axis=(1, 2, 3))
        rows[name] = {
            "encoder_preact": float(enc.mean()),
            "decoder_score": float(dec.mean()),
            "topk_win_rate": float(wins.mean()),
            "pixel_std": float(contrast.mean()),
        }
        for i, f in enumerate(feats):
            save_png(res.images[i], out / name / f"{f}.png")
    montage(out, feats)
    return {"steps": args.steps, "canvas": f"{args.size}->{args.model_size}", "features": feats, "results": rows}


def montage(out: Path, feats: list[int], side: int = 128) -> Path:
    """One PNG: encoder images on top, decoder images below, for looking at."""
    from PIL import Image

    rows = [
        np.concatenate([np.array(Image.open(out / name / f"{f}.png").resize((side, side))) for f in feats], axis=1)
        for name in ("encoder", "decoder")
    ]
    return save_png(np.concatenate(rows, axis=0), out / "montage.png")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--layer", default="mixed4d")
    t.add_argument("--d-sae", type=int, default=8448)
    t.add_argument("--steps", type=int, default=8)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--single", type=int, default=4)
    t.add_argument("--size", type=int, default=128)
    t.add_argument("--model-size", type=int, default=224)
    o = sub.add_parser("objectives")
    o.add_argument("--features", type=int, default=8)
    o.add_argument("--steps", type=int, default=96)
    o.add_argument("--size", type=int, default=64)
    o.add_argument("--model-size", type=int, default=112)
    o.add_argument("--out", default="runs/bench_featvis_objectives")
    result_arg(p, "featvis")
    args = p.parse_args()
    torch.manual_seed(0)
    result = throughput(args) if args.cmd == "throughput" else objectives(args)
    plain = json.loads(json.dumps(result, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o)))
    write_result(args.result, {"meta": run_meta(args=vars(args)), **plain})


if __name__ == "__main__":
    main()
