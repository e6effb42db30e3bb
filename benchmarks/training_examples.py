"""What the training-position examples cost: ``analyze`` with and without them, same process, same images.

An SAE of m = 4 x 528 = 2,112 unit-norm random directions at mixed4d (k = 32, zero biases: the streaming
cost does not depend on what the features detect, only on m, k and the images), whose ``cfg.json`` names a
store harvested top-norm, 10 positions per image, so the rule is known. Runs alternate (without, with,
without, with, ...) to spread the machine's load over both; each prints its pass timings, state bytes,
image files written, CPU seconds and the process's peak RSS so far. Then passes 1 and 2 run again on batches
captured once (no model), to measure the streaming work alone. The last line is a JSON summary.

Usage: PYTHONPATH=src python benchmarks/training_examples.py [--images DIR] [--n 100] [--reps 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from inception_sae import load_model
from inception_sae.analysis.config import AnalyzeConfig
from inception_sae.analysis.run import analyze

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PASSES = ("pass1_s", "pass2_s", "pass3_s")


def write_sae(folder: Path, store: Path, m: int = 2112, d: int = 528, k: int = 32) -> Path:
    """A random TopK SAE folder whose cfg.json names a top-norm store (the harvest rule the analysis replays)."""
    store.mkdir(parents=True, exist_ok=True)
    recipe = {"sampling": "top-norm", "per_image": 10, "seed": 0, "preprocess": {"resize": 256, "crop": 224}}
    (store / "manifest.json").write_text(json.dumps(recipe))
    W = torch.nn.functional.normalize(torch.randn(m, d, generator=torch.Generator().manual_seed(0)), dim=1)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"W_enc": W.T.contiguous(), "W_dec": W, "b_enc": torch.zeros(m), "b_dec": torch.zeros(d)},
              str(folder / "sae_weights.safetensors"))  # fmt: skip
    cfg = {"d_in": d, "d_sae": m, "k": k, "architecture": "topk", "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": True, "normalize_activations": "none", "layer": "mixed4d", "model": "random:0",
           "tie": "init", "store": str(store)}  # fmt: skip
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return folder


def generated_images(folder: Path, n: int) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from factories import make_images

    make_images(folder, n, size=(256, 256), seed=0)
    return folder


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def trained_share(out: Path, m: int) -> dict:
    """Share of every-position top / interval examples whose argmax is a training position."""
    top = iv = n_top = n_iv = 0
    for f in range(m):
        d = json.loads((out / "features" / f"{f}.json").read_text())
        top += sum(e["at_training_position"] for e in d["top_examples"])
        iv += sum(e["at_training_position"] for e in d["intervals"])
        n_top, n_iv = n_top + len(d["top_examples"]), n_iv + len(d["intervals"])
    return {"top": top / max(n_top, 1), "intervals": iv / max(n_iv, 1)}


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def streaming_only(model, configs: dict[str, AnalyzeConfig], reps: int) -> dict:
    """CPU seconds of passes 1 and 2 without the model: their batches (activations, codes) are captured once.

    This isolates what the training-position family adds (a second top-N and interval reservoirs, the flags)
    from the forward pass, which is the same in both runs, and is far less sensitive to other users' load than
    wall time.
    """
    from inception_sae.analysis import passes
    from inception_sae.analysis import run as arun
    from inception_sae.data.labels import load_labels

    cfg = configs["with"]
    ctx, _ = arun.build_context(cfg, model, progress=False)
    ctx.indices = [i for i in ctx.indices if i < len(ctx.dataset)]
    t0 = cpu_s()
    cached = [(None, *rest) for _x, *rest in passes.batches(ctx, ctx.indices, "capture")]
    forward = cpu_s() - t0  # decode + model to the layer + SAE encode, once
    names, m = load_labels(cfg.labels), ctx.sae.W_dec.shape[0]
    real, out = passes.batches, {"forward_and_encode_cpu_s": forward}
    passes.batches = lambda *_a: iter(cached)
    try:
        for _ in range(reps):
            for name, c in configs.items():
                state = arun.new_state(ctx, c, m, len(ctx.dataset))
                t0 = cpu_s()
                passes.pass1(ctx, state, predict=False)
                t1 = cpu_s()
                arun.assign_labels(state, names)
                t2 = cpu_s()
                passes.pass2(ctx, state)
                t3 = cpu_s()
                out.setdefault(name, []).append({"pass1_cpu_s": t1 - t0, "pass2_cpu_s": t3 - t2})
    finally:
        passes.batches = real
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=Path, default=SHARED / "imagenet-sample-1000")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    root = a.out or Path(tempfile.mkdtemp(prefix="train_examples_bench_"))
    images = a.images if a.images.is_dir() else generated_images(root / "images", a.n)
    sae = write_sae(root / "sae", root / "store")
    labels = SHARED / "inception5h_labels.tsv"
    model = load_model("random", seed=0)
    runs: dict[str, list[dict]] = {"without": [], "with": []}

    def config(out: Path, n: int, with_examples: bool) -> AnalyzeConfig:
        return AnalyzeConfig(sae=sae, images=images, out=out, max_images=n, weights="random", batch_size=a.batch_size,
                             labels=labels if labels.is_file() else None, umap=False, logit_effect=False,
                             resume=False, training_examples=with_examples)  # fmt: skip

    analyze(config(root / "warmup", min(a.n, 8), True), model=model, progress=False)  # threads, caches: not timed
    for rep in range(a.reps):
        for name in ("without", "with"):
            out = root / f"{name}{rep}"
            cfg = config(out, a.n, name == "with")
            t0, c0 = time.perf_counter(), cpu_s()
            s = analyze(cfg, model=model, progress=False).summary
            row = {"wall_s": time.perf_counter() - t0, "cpu_s": cpu_s() - c0,
                   **{k: v for k, v in s["timings_s"].items() if k != "total"},
                   "state_bytes": s["state_bytes"], "image_files": s["counts"]["image_files"],
                   "peak_rss_mb_so_far": peak_rss_mb()}  # fmt: skip
            if name == "with":
                row["at_training_position"] = trained_share(out, s["counts"]["features"])
            runs[name].append(row)
            print(name, rep, json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}),
                  flush=True)  # fmt: skip
    stream = streaming_only(model, {n: config(root / "stream", a.n, n == "with") for n in ("without", "with")},
                            a.reps)  # fmt: skip
    print("streaming only", json.dumps(stream), flush=True)
    stream_med = {n: {k: statistics.median(r[k] for r in stream[n]) for k in ("pass1_cpu_s", "pass2_cpu_s")}
                  for n in ("without", "with")}  # fmt: skip
    med = {name: {k: statistics.median(r[k] for r in rows) for k in ("wall_s", "cpu_s", *PASSES)}
           for name, rows in runs.items()}  # fmt: skip
    print(json.dumps({"images": a.n, "features": 2112, "medians": med,
                      "ratio_wall": med["with"]["wall_s"] / med["without"]["wall_s"],
                      "ratio_cpu": med["with"]["cpu_s"] / med["without"]["cpu_s"],
                      "streaming_cpu_s": stream_med, "forward_and_encode_cpu_s": stream["forward_and_encode_cpu_s"],
                      "ratio_per_pass": {k: med["with"][k] / med["without"][k] for k in PASSES},
                      "state_bytes": {n: rows[0]["state_bytes"] for n, rows in runs.items()},
                      "image_files": {n: rows[0]["image_files"] for n, rows in runs.items()},
                      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "root": str(root)}))  # fmt: skip


if __name__ == "__main__":
    main()
