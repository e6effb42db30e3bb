"""Benchmark: TopK SAE training quality against peers, on several data families.

    python benchmarks/sae_quality.py [--families nonneg,signed,zipf,mixed4d] [--steps 400]
        [--eval-steps 25,50,100,200,400] [--peers sparsify,overcomplete,saelens] [--set key=value ...]

d=528, m=8,448 (16x), k=32, batch 4096 by default. Every trainer reads the same rows at every step
(``quality_data.py`` makes them from the seed and the step) and is evaluated by the same code on
the same held-out rows at the same points: FVU, dead share (latents that never fire on the held-out
rows: the FVU rows plus, on planted data, 131,072 more, so that a rare latent is not counted dead),
share of the true planted directions with a decoder row at cosine >= 0.9, and the training time so
far (the steps alone, rows excluded). Peers run in benchmarks/.peers-venv (setup.sh), each
with its own recipe. ``--set`` overrides our ``TrainConfig`` fields (the one-change-at-a-time search).
Writes a JSON of all curves and a PNG of FVU against samples and against training time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from quality_data import FAMILIES, Curve, Family, train_time  # noqa: E402

from inception_sae.sae.cpu_memory import keep_freed_memory  # noqa: E402
from inception_sae.sae.model import SAEConfig  # noqa: E402
from inception_sae.sae.train import TrainConfig, Trainer  # noqa: E402


class _Stream:
    """A BatchSource over a family; the step's rows are made before the timed step (:meth:`prepare`)."""

    def __init__(self, fam: Family) -> None:
        self.fam, self.d, self.batch_size, self.pos, self.ready = fam, fam.d, fam.batch, 0, None

    def prepare(self) -> None:
        self.ready = torch.from_numpy(self.fam.batch_rows(self.pos))

    def next_batch(self) -> torch.Tensor:
        x = self.ready if self.ready is not None else torch.from_numpy(self.fam.batch_rows(self.pos))
        self.ready, self.pos = None, self.pos + 1
        return x

    def state_dict(self) -> dict:
        return {"pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.pos, self.ready = int(state["pos"]), None


def _overrides(pairs: list[str]) -> dict:
    types = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    out = {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        if key not in types:
            raise SystemExit(f"unknown TrainConfig field {key!r}")
        out[key] = value if "str" in str(types[key]) and "None" not in value else json.loads(value)
    return out


def ours(fam: Family, args, overrides: dict) -> dict:
    src = _Stream(fam)
    cfg = TrainConfig(samples=args.steps * args.batch, batch_size=args.batch, progress=False, **overrides)
    t = Trainer(src, [SAEConfig(fam.d, args.latents, args.k)], cfg, "unused")
    t.initialise()
    sae, curve = t.runs[0].sae, Curve(fam, args.eval_points, args.held, args.fire_rows)

    @torch.no_grad()
    def recon(x):
        vals, idx = sae.encode(torch.from_numpy(x) * t.scale)
        return (sae.decode(vals, idx) / t.scale).numpy(), idx.numpy(), vals.numpy()

    times, stop = [], min(t.total_steps, args.stop_at or t.total_steps)
    while t.step < stop:
        src.prepare()
        tic = time.perf_counter()
        t.step_all()
        times.append(time.perf_counter() - tic)
        point = curve.maybe(t.step, train_time(times), recon, lambda: sae.W_dec.detach().numpy())
        if point is not None:  # the trainer's own count: no firing in the last dead_window samples
            point["dead_in_window"] = t.runs[0].stats["dead_fraction"]
    step = float(np.median(times[3:]))
    return {"trainer": "inception-sae", "step_s": step, "samples_per_s": args.batch / step, "points": curve.points}


def peer(name: str, fam: str, args) -> dict:
    python = HERE / ".peers-venv" / "bin" / "python"
    if not python.exists():
        return {"trainer": name, "error": "benchmarks/.peers-venv missing: run benchmarks/peers/setup.sh"}
    steps = min(args.steps, args.peer_steps.get(name, args.steps))
    evals = ",".join(str(s) for s in args.eval_points if s <= steps)
    cmd = [str(python), str(HERE / "peers" / "quality.py"), name, fam, "--steps", str(steps), "--eval-steps", evals]
    cmd += ["--batch", str(args.batch), "--k", str(args.k), "--latents", str(args.latents), "--held", str(args.held)]
    cmd += ["--fire-rows", str(args.fire_rows)]
    cmd += ["--real-dir", str(args.real_dir), "--threads", str(args.threads)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        return {"trainer": name, "error": (res.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def harvest_mixed4d(images: Path, out: Path, per_image: int) -> Path | None:
    """Top-norm mixed4d vectors of the seeded random network: train.npy (first 900 images), held.npy (the rest)."""
    if (out / "train.npy").is_file() and (out / "held.npy").is_file():
        return out
    if not images.is_dir():
        return None
    from inception_sae.data.harvest import HarvestConfig, harvest
    from inception_sae.data.images import list_images
    from inception_sae.data.store import ActivationStore

    paths = sorted(images / p for p in list_images(images))  # list_images gives paths relative to the folder
    cut = len(paths) * 9 // 10
    out.mkdir(parents=True, exist_ok=True)
    for part, chosen in (("train", paths[:cut]), ("held", paths[cut:])):
        lst = out / f"{part}.txt"
        lst.write_text("".join(f"{os.path.relpath(p, out)}\n" for p in chosen))  # a list's paths are relative to it
        cfg = HarvestConfig(
            images=lst, layer="mixed4d", out=out / f"store_{part}", per_image=per_image, weights="random", workers=1
        )
        cfg = dataclasses.replace(cfg, dtype="float32", progress=False)
        harvest(cfg)
        np.save(out / f"{part}.npy", np.asarray(ActivationStore.open(out / f"store_{part}").vectors[:], np.float32))
    return out


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    fams = list(results)
    fig, axes = plt.subplots(2, len(fams), figsize=(4.2 * len(fams), 7), squeeze=False)
    for j, fam in enumerate(fams):
        for row in results[fam]:
            pts = row.get("points") or []
            if not pts:
                continue
            fv = [p["fvu"] for p in pts]
            axes[0][j].plot([p["samples"] / 1e6 for p in pts], fv, "o-", label=row["trainer"])
            axes[1][j].plot([p["train_s"] for p in pts], fv, "o-", label=row["trainer"])
        axes[0][j].set(title=fam, xlabel="samples (M)", ylabel="held-out FVU", xscale="log", yscale="log")
        axes[1][j].set(xlabel="training time (s)", ylabel="held-out FVU", xscale="log", yscale="log")
        axes[0][j].legend(fontsize=7)
        for ax in (axes[0][j], axes[1][j]):  # plain numbers at 1-2-5 steps, no crowded 10^x minor labels
            for axis in (ax.xaxis, ax.yaxis):
                axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
                axis.set_major_formatter(ScalarFormatter())
                axis.set_minor_formatter(NullFormatter())
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _at_time(points: list[dict], t: float) -> float | None:
    """FVU of a curve at training time ``t`` (log-log interpolation; None outside the measured range)."""
    ts, fv = [p["train_s"] for p in points], [p["fvu"] for p in points]
    if not points or t < ts[0] or t > ts[-1]:
        return None
    return float(np.exp(np.interp(np.log(t), np.log(ts), np.log(fv))))


def tables(results: dict) -> str:
    """Markdown, one table per family: FVU at each point (ratio to sparsify), at equal time, dead, recovered."""
    lines = []
    for fam, rows in results.items():
        rows = [r for r in rows if r.get("points")]
        ref = next((r for r in rows if r["trainer"] == "sparsify"), None)
        ref_at = {p["step"]: p["fvu"] for p in ref["points"]} if ref else {}
        steps = sorted({p["step"] for r in rows for p in r["points"]})
        head = [f"FVU @{s * rows[0]['points'][0]['samples'] // rows[0]['points'][0]['step'] / 1e6:g}M" for s in steps]
        lines += [f"#### {fam}", "", "| trainer | samples/s | " + " | ".join(head) + " | FVU at ours' final time "]
        lines[-1] += "| dead (final) | recovered cos>=0.9 (final) |"
        lines.append("|---" * (len(head) + 5) + "|")
        ours_t = next((r for r in rows if r["trainer"] == "inception-sae"), rows[0])["points"][-1]["train_s"]
        for r in rows:
            at = {p["step"]: p for p in r["points"]}
            cells = []
            for s in steps:
                if s not in at:
                    cells.append("-")
                    continue
                ratio = f" ({at[s]['fvu'] / ref_at[s]:.2f}x)" if s in ref_at and r is not ref else ""
                cells.append(f"{at[s]['fvu']:.4f}{ratio}")
            last = r["points"][-1]
            eq = _at_time(r["points"], ours_t)
            rec = "-" if last["recovered_090"] is None else f"{last['recovered_090']:.3f}"
            row = f"| {r['trainer']} | {r['samples_per_s']:,.0f} | " + " | ".join(cells)
            row += f" | {'-' if eq is None else f'{eq:.4f}'} | {last['dead_fraction']:.3f} | {rec} |"
            lines.append(row)
        lines.append("")
    return "\n".join(lines)


def flat_runs(meta: dict, via: tuple[str, ...] = ()) -> list[dict]:
    """The runs behind a result file's meta: itself, or for a merged file every run it holds, however deep."""
    if not meta.get("merged"):
        return [{**meta, "via": list(via)} if via else meta]
    inner = (*via, meta["file"]) if "file" in meta else via
    return [run for m in meta["runs"] for run in flat_runs(m, inner)]


def merge(paths: list[Path], out: Path) -> None:
    """One JSON, PNG and tables from several runs (e.g. a slow peer run apart); a later file's row replaces
    an earlier one of the same family and trainer. ``meta.runs`` is the flat list of the runs behind it: a merged
    file's own runs are listed, not nested, each with ``via``, the merged files it came through."""
    results: dict[str, dict[str, dict]] = {}
    metas: list[dict] = []
    for path in paths:
        saved = json.loads(path.read_text())
        metas += flat_runs({"file": path.name, **saved["meta"]})
        for fam, rows in saved["results"].items():
            for row in rows:
                results.setdefault(fam, {})[row["trainer"]] = row
    order = ["inception-sae", "sparsify", "sparsify-adam", "overcomplete", "saelens"]
    rank = {t: i for i, t in enumerate(order)}
    merged = {f: sorted(rows.values(), key=lambda r: rank.get(r["trainer"], len(order))) for f, rows in results.items()}
    out.write_text(json.dumps({"meta": {"merged": True, "runs": metas}, "results": merged}, indent=2, default=str))
    plot(merged, out.with_suffix(".png"))
    print(tables(merged))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--families", default=",".join([*FAMILIES, "mixed4d"]))
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--stop-at", type=int, default=0, help="end ours after this step of a --steps run (its start)")
    p.add_argument("--eval-steps", default="25,50,100,200,400")
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--latents", type=int, default=8448)
    p.add_argument("--held", type=int, default=16384, help="held-out rows for FVU (and firing)")
    p.add_argument(
        "--fire-rows", type=int, default=131072, help="more held-out rows that only count firing (planted families)"
    )
    p.add_argument("--peers", default="sparsify,overcomplete,saelens", help="comma list; empty for ours alone")
    p.add_argument(
        "--peer-steps", default="overcomplete=25,saelens=50", help="cap a slow peer's run: name=steps,... (CPU time)"
    )
    p.add_argument("--images", type=Path, default=HERE.parent.parent / "shared" / "data" / "imagenet-sample-1000")
    p.add_argument("--per-image", type=int, default=100, help="top-norm mixed4d positions per image (of 196)")
    p.add_argument("--real-dir", type=Path, default=Path("/tmp/inception_sae_quality_mixed4d"))
    p.add_argument("--set", action="append", default=[], help="our TrainConfig override, key=value (JSON value)")
    p.add_argument("--threads", type=int, default=2, help="torch threads per trainer (FVU does not depend on it)")
    p.add_argument("--out", type=Path, default=HERE / "results" / "sae_quality.json")
    p.add_argument("--tables", type=Path, help="print the markdown tables of a saved JSON and exit")
    p.add_argument("--no-ours", action="store_true", help="peers only (merge with a run of ours by --merge)")
    p.add_argument(
        "--merge", type=Path, nargs="+", help="combine saved JSONs (later files win per family and trainer) into --out"
    )
    args = p.parse_args()
    keep_freed_memory()  # as the command line does: the allocator setting CPU training is measured with
    if args.tables:
        print(tables(json.loads(args.tables.read_text())["results"]))
        return
    if args.merge:
        merge(args.merge, args.out)
        return
    args.eval_points = sorted(int(s) for s in args.eval_steps.split(",") if int(s) <= args.steps)
    overrides = _overrides(args.set)
    args.peer_steps = {k: int(v) for k, v in (kv.split("=") for kv in filter(None, args.peer_steps.split(",")))}
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    results = {}
    for fam_name in args.families.split(","):
        if fam_name == "mixed4d" and harvest_mixed4d(args.images, args.real_dir, args.per_image) is None:
            print(json.dumps({"family": fam_name, "skipped": f"no images at {args.images}"}), flush=True)
            continue
        fam = Family(fam_name, args.batch, args.real_dir)
        rows = [] if args.no_ours else [ours(fam, args, overrides)]
        if rows:
            print(json.dumps({"family": fam_name, **rows[-1]}), flush=True)
        for name in filter(None, args.peers.split(",")):
            rows.append(peer(name, fam_name, args))
            print(json.dumps({"family": fam_name, **rows[-1]}), flush=True)
        results[fam_name] = rows
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "command": " ".join(sys.argv),
        "overrides": overrides,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2, default=str))
    if results:
        plot(results, args.out.with_suffix(".png"))
        print(tables(results))


if __name__ == "__main__":
    main()
