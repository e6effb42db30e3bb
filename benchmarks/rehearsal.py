"""Paper-scale rehearsal: the Bozoukov two-layer run (mixed4c + mixed4d, 16x = 8,192 / 8,448 latents, k = 32)
end to end, at an image count that finishes in about a quarter of an hour on a quiet CPU.

Per stage: wall seconds, peak resident memory during the stage (sampled every 0.2 s), and the files and bytes
the stage left in its output folder; then the totals. Random weights (``random:0``, UNTRAINED): this measures
the pipeline, not the science. Each change to the pipeline is measured against the last row of
``benchmarks/README.md``.

    PYTHONPATH=src python benchmarks/rehearsal.py --images ../shared/data/imagenet-sample-1000 --out /tmp/rehearsal
"""

from __future__ import annotations

import argparse
import json
import shutil
import threading
import time
from pathlib import Path

from common_data import result_arg, run_meta, write_result

from inception_sae.pipeline.config import build, read_file
from inception_sae.pipeline.run import StageView, run_pipeline
from inception_sae.site.build import folder_size

ROOT = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    """This process's resident memory now (Linux /proc), MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class MeasuringView(StageView):
    """The run's stage lines, plus each stage's peak RSS from a sampling thread."""

    def __init__(self) -> None:
        super().__init__(enabled=True)
        self.peak: dict[str, float] = {}
        self.current: str | None = None
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            if self.current is not None:
                self.peak[self.current] = max(self.peak.get(self.current, 0.0), rss_mb())

    def start(self, key: str) -> None:
        self.current = key
        self.peak[key] = rss_mb()
        super().start(key)

    def finish(self, key: str, seconds: float, note: str) -> None:
        self.peak[key] = max(self.peak.get(key, 0.0), rss_mb())
        self.current = None
        super().finish(key, seconds, note)

    def close(self) -> None:
        self._stop.set()


def tree(path: Path) -> tuple[int, int]:
    """(files, bytes) under a folder (or of one file)."""
    return (1, path.stat().st_size) if path.is_file() else folder_size(path)


def stage_path(out: Path, key: str) -> Path:
    """Where a stage's output lives in the run folder (``run``'s layout)."""
    kind, _, what = key.partition(" ")
    if kind in ("circuits", "compare"):
        return out / kind / what
    if kind == "site":
        return out / "site"
    sub = {"harvest": "store", "train": "sae", "eval": "eval.json", "analyze": "analysis", "featvis": "featvis"}
    return out / what / sub[kind]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=Path, default=ROOT.parent / "shared" / "data" / "imagenet-sample-1000")
    ap.add_argument("--out", type=Path, default=Path("/tmp/rehearsal"))
    ap.add_argument("--n", type=int, default=200, help="images harvested and analysed")
    ap.add_argument("--views", type=int, default=4, help="views per harvested image (the config has 78)")
    ap.add_argument("--samples", type=int, default=200_000, help="training samples per layer")
    ap.add_argument("--train-batch", type=int, default=4096, help="training batch (the config's 4,096)")
    result_arg(ap, "rehearsal")
    args = ap.parse_args()
    if not args.images.is_dir():
        print(json.dumps({"skipped": f"{args.images} is absent"}))
        return
    shutil.rmtree(args.out, ignore_errors=True)
    data = read_file(ROOT / "configs" / "bozoukov2025_mixed4.yaml")
    overrides = {
        "layers": ("mixed4c", "mixed4d"), "images": args.images, "out": args.out, "weights": "random",
        "harvest.views": args.views, "harvest.max_images": args.n, "harvest.workers": 1, "harvest.batch_size": 8,
        "harvest.shard_size": 1 << 16, "train.samples": args.samples, "train.checkpoint_every": 1000,
        "train.batch_size": args.train_batch,
        "eval.max_images": 64, "eval.max_vectors": 65536, "analyze.max_images": args.n, "analyze.batch_size": 32,
        "analyze.workers": 1, "featvis.features": "top:8", "featvis.batch_size": 8, "featvis.render.steps": 64,
        "circuits.max_images": 32,
    }  # fmt: skip
    cfg = build(data, overrides)
    view = MeasuringView()
    t0 = time.perf_counter()
    try:
        result = run_pipeline(cfg, progress=False, view=view)
    finally:
        view.close()
    total = time.perf_counter() - t0
    stages = []
    for s in result.stages:
        files, size = tree(stage_path(args.out, s.key))
        stages.append({"stage": s.key, "seconds": round(s.seconds, 1), "peak_rss_mb": round(view.peak.get(s.key, 0)),
                       "files": files, "mb": round(size / 1e6, 1), "note": s.note})  # fmt: skip
    files, size = tree(args.out)
    write_result(args.result, {
        "meta": run_meta(args=vars(args)), "weights": "random:0 (UNTRAINED)",
        "layers": ["mixed4c", "mixed4d"], "images": args.n, "views": args.views, "samples": args.samples,
        "stages": stages, "total_s": round(total, 1), "files": files, "mb": round(size / 1e6, 1),
    })  # fmt: skip


if __name__ == "__main__":
    main()
