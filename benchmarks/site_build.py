"""Benchmark ``site build`` on a generated analysis folder of N features (default 8,448 = 528 x 16, mixed4d).

    python benchmarks/site_build.py [--features 8448] [--work /tmp/site_bench]

Writes the fake analysis (tests/factories/site.py: realistic JSON sizes, 5 top + 10 interval
heatmaps per feature as hard links, 1,000 class entries, featvis for every feature) once,
then times the build and reports files, bytes and seconds.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from common_data import result_arg, run_meta, write_result
from factories.site import make_analysis, make_featvis

from inception_sae.site import SiteConfig, build_site


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", type=int, default=8448)
    ap.add_argument("--work", type=Path, default=Path("/tmp/site_bench"))
    result_arg(ap, "site_build")
    args = ap.parse_args()
    a, fv = args.work / f"analysis_{args.features}", args.work / f"featvis_{args.features}"
    if not (a / "summary.json").is_file():
        t0 = time.perf_counter()
        shutil.rmtree(a, ignore_errors=True)
        make_analysis(a, "mixed4d", args.features, n_neurons=528, packed=True)  # the layout analyze writes
        make_featvis(fv, "mixed4d", range(args.features), diversity=0)
        print(f"fixture written in {time.perf_counter() - t0:.1f} s")
    out = args.work / f"site_{args.features}"
    result = build_site(SiteConfig(analyses=(a,), out=out, featvis=fv))
    index = out / "data" / "mixed4d" / "index.js"
    index_mb = round(index.stat().st_size / 1e6, 2)
    write_result(args.result, {"meta": run_meta(args=vars(args)), "features": result.features,
                               "seconds": round(result.seconds, 1), "files": result.files,
                               "mb": round(result.bytes / 1e6, 1), "layer_index_mb": index_mb})  # fmt: skip


if __name__ == "__main__":
    main()
