"""Benchmark diagnostic: what are the latents that never fire on held-out rows at the end of a run?

    PYTHONPATH=src python benchmarks/dead_latents.py --family signed [--steps 400] [--set key=value ...]

Trains our SAE on one planted family of ``quality_data.py`` (the rows ``sae_quality.py`` uses, d=528,
m=8,448, k=32, batch 4096), recording the step at which each latent last fired in training and the
trainer's own dead count (no firing in the last ``dead_window`` samples). At the end it encodes the
147,456 held-out rows (the FVU rows and the firing rows) and, for the latents that never enter a row's
top k there, reports:

- their largest pre-activation over those rows, against the k-th largest pre-activation of each row
  (positive but below it: they lose the top-k competition; <= 0: ReLU has closed them, and AuxK's
  gradient cannot reach them);
- the largest cosine of their decoder row to any other latent's (a duplicate of a live latent?) and to
  any true planted direction (a half-learned feature?);
- their encoder norm and bias against the live latents';
- with ``resample_every`` set, when resampling restarted latents, and how many of the dead and of the
  live latents it ever restarted.

Writes one JSON (``--out``) and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from quality_data import Family  # noqa: E402
from sae_quality import _overrides, _Stream  # noqa: E402

from inception_sae.sae import train as train_module  # noqa: E402
from inception_sae.sae.model import SAEConfig  # noqa: E402
from inception_sae.sae.resample import resample_dead  # noqa: E402
from inception_sae.sae.train import TrainConfig, Trainer  # noqa: E402
from inception_sae.sae.view import SAETensors  # noqa: E402

QUANTILES = torch.tensor([0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0])


def _q(v: torch.Tensor) -> list[float]:
    return [round(float(x), 4) for x in torch.quantile(v.float(), QUANTILES)] if v.numel() else []


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--family", default="signed", help="a planted family: nonneg, signed or zipf")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--latents", type=int, default=8448)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--set", action="append", default=[], help="our TrainConfig override, key=value (JSON value)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=HERE / "results" / "dead_latents.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    fam = Family(args.family, args.batch)
    if fam.true is None:
        raise SystemExit(f"{args.family}: a planted family is needed (nonneg, signed, zipf)")
    src = _Stream(fam)
    cfg = TrainConfig(samples=args.steps * args.batch, batch_size=args.batch, progress=False, **_overrides(args.set))
    t = Trainer(src, [SAEConfig(fam.d, args.latents, args.k)], cfg, "unused")
    t.initialise()
    run, sae = t.runs[0], t.runs[0].sae
    last_fired = torch.full((args.latents,), -1)
    last_resampled, resampled_by_step = torch.full((args.latents,), -1), []

    def tracked(sae_, opt, dead, *rest, **kw):  # which latents resampling restarts, and when
        n = resample_dead(sae_, opt, dead, *rest, **kw)
        if n:
            last_resampled[dead.cpu()] = t.step + 1
            resampled_by_step.append([t.step + 1, n])
        return n

    train_module.resample_dead = tracked
    in_window = []
    tic = time.perf_counter()
    while t.step < t.total_steps:
        t.step_all()
        last_fired[run.since_fired == 0] = t.step
        if t.step % 20 == 0 or t.step == t.total_steps:
            in_window.append([t.step, round(run.stats["dead_fraction"], 5)])
    train_s = time.perf_counter() - tic

    rows = np.concatenate([fam.held(16384), fam.fire_rows(131072)])
    fired = torch.zeros(args.latents, dtype=torch.bool)
    max_pre = torch.full((args.latents,), -torch.inf)
    kth = []
    with torch.no_grad():
        enc, b_enc = sae.enc.detach(), sae.b_enc.detach()
        view = SAETensors(enc.t(), sae.W_dec.detach(), b_enc, sae.b_dec.detach(), args.k, None)  # trainer units
        for s in range(0, len(rows), 4096):
            pre = view.preacts(torch.from_numpy(rows[s : s + 4096]) * t.scale)
            vals, idx = pre.topk(args.k, dim=1)
            fired[idx[vals > 0]] = True
            max_pre = torch.maximum(max_pre, pre.max(0).values)
            kth.append(vals[:, -1])
        dead = (~fired).nonzero().squeeze(1)
        dec = torch.nn.functional.normalize(sae.W_dec.detach(), dim=1)
        cos_other = dec[dead] @ dec.t()
        cos_other[torch.arange(len(dead)), dead] = -1.0
        cos_true = dec[dead] @ torch.from_numpy(fam.true).t()
        report = {
            "family": args.family,
            "steps": args.steps,
            "samples": args.steps * args.batch,
            "overrides": _overrides(args.set),
            "train_s": round(train_s, 1),
            "rows": len(rows),
            "latents": args.latents,
            "dead_on_rows": len(dead),
            "dead_fraction": len(dead) / args.latents,
            "dead_in_window_by_step": in_window,
            "kth_preact_quantiles": _q(torch.cat(kth)),
            "dead_max_preact_quantiles": _q(max_pre[dead]),
            "dead_with_max_preact_le_0": int((max_pre[dead] <= 0).sum()),
            "dead_last_fired_step_quantiles": _q(last_fired[dead]),
            "resampled_by_step": resampled_by_step,
            "dead_ever_resampled": int((last_resampled[dead] >= 0).sum()),
            "live_ever_resampled": int((last_resampled[fired] >= 0).sum()),
            "dead_max_cos_other_latent_quantiles": _q(cos_other.max(1).values) if len(dead) else [],
            "dead_max_cos_true_quantiles": _q(cos_true.max(1).values) if len(dead) else [],
            "dead_enc_norm_quantiles": _q(enc[dead].norm(dim=1)),
            "live_enc_norm_quantiles": _q(enc[fired].norm(dim=1)),
            "dead_b_enc_quantiles": _q(b_enc[dead]),
            "live_b_enc_quantiles": _q(b_enc[fired]),
            "quantiles": [round(float(q), 2) for q in QUANTILES],
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    for key, value in report.items():
        if key != "dead_in_window_by_step":
            print(f"{key}: {value}")
    print("dead in window (step, share):", in_window)


if __name__ == "__main__":
    main()
