"""Analysis at the papers' SAE width: one 8,448-latent SAE (mixed4d x16) analysed over 200 and over 1,000 images,
then its dashboard built; per step: wall seconds, peak resident memory, files and bytes.

The SAE comes from the two-layer rehearsal (``rehearsal.py`` leaves ``<out>/mixed4d/sae``). Random weights
(UNTRAINED): this measures the pipeline's cost, not the science. What the table is for: the per-feature work
(drawing the pictures, derive, labels) must stay a fraction of the image passes, and the files a few per feature.
Pass 3 is a third pass over the images that have a shown example (at 1,000 images, nearly all of them) plus the
drawing; ``pass3_drawing`` is the drawing and encoding alone.

    PYTHONPATH=src python benchmarks/analysis_scale.py --sae /tmp/rehearsal/mixed4d/sae --n 200 --n 1000
"""

from __future__ import annotations

import argparse
import json
import shutil
import threading
import time
from pathlib import Path

from common_data import result_arg, run_meta, write_result
from rehearsal import ROOT, rss_mb, tree

from inception_sae.analysis.config import AnalyzeConfig
from inception_sae.analysis.run import analyze
from inception_sae.site import SiteConfig, build_site


class Peak:
    """Peak resident memory of this process while the ``with`` block runs (sampled every 0.2 s)."""

    def __enter__(self) -> Peak:
        self.mb, self._stop = rss_mb(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.mb = max(self.mb, rss_mb())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.mb = max(self.mb, rss_mb())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sae", type=Path, default=Path("/tmp/rehearsal/mixed4d/sae"))
    ap.add_argument("--images", type=Path, default=ROOT.parent / "shared" / "data" / "imagenet-sample-1000")
    ap.add_argument("--out", type=Path, default=Path("/tmp/analysis_scale"))
    ap.add_argument("--n", type=int, action="append", help="images analysed (repeat; default 200 and 1000)")
    result_arg(ap, "analysis_scale")
    args = ap.parse_args()
    if not args.images.is_dir() or not (args.sae / "cfg.json").is_file():
        print(json.dumps({"skipped": f"{args.images} or {args.sae} is absent (run rehearsal.py first)"}))
        return
    runs = []
    for n in args.n or [200, 1000]:
        out = args.out / str(n)
        shutil.rmtree(out, ignore_errors=True)
        cfg = AnalyzeConfig(
            sae=args.sae,
            images=args.images,
            out=out / "analysis",
            max_images=n,
            weights="random",
            batch_size=32,
            workers=1,
            resume=False,
        )
        t0 = time.perf_counter()
        with Peak() as peak:
            analyze(cfg, progress=False)
        wall = time.perf_counter() - t0
        timings = json.loads((out / "analysis" / "summary.json").read_text())["timings_s"]
        files, size = tree(out / "analysis")
        t1 = time.perf_counter()
        with Peak() as site_peak:
            site = build_site(SiteConfig(analyses=[out / "analysis"], out=out / "site"))
        site_wall = time.perf_counter() - t1
        runs.append({
            "images": n, "features": site.features, "analyze_s": round(wall, 1),
            "steps_s": {k.removesuffix("_s"): round(v, 1) for k, v in timings.items()},
            "drawing_share": round(timings.get("pass3_drawing_s", 0) / wall, 3), "analyze_peak_rss_mb": round(peak.mb),
            "analysis_files": files, "analysis_mb": round(size / 1e6, 1), "site_s": round(site_wall, 1),
            "site_peak_rss_mb": round(site_peak.mb), "site_files": site.files, "site_mb": round(site.bytes / 1e6, 1),
            "files_per_feature": round((files + site.files) / site.features, 2),
        })  # fmt: skip
        print(json.dumps(runs[-1]), flush=True)
    write_result(args.result, {"meta": run_meta(args=vars(args)), "weights": "random:0 (UNTRAINED)",
                               "sae": str(args.sae), "runs": runs})  # fmt: skip


if __name__ == "__main__":
    main()
