"""Take the screenshots of README.md and docs/site.md from a built site with Playwright + Debian's Chromium.

    python docs/screenshots.py SITE LAYER FEATURE [--out docs]

Writes ``site_layer.png`` and ``site_feature.png`` (top of each page, 1280 px wide,
palette-quantised to stay small).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def shoot(page, url: str, ready: str, path: Path, height: int) -> None:
    page.goto(url)
    page.wait_for_selector(ready)
    page.wait_for_function("[...document.images].every(i => i.complete)")
    page.wait_for_timeout(300)
    page.screenshot(path=str(path), full_page=True, clip={"x": 0, "y": 0, "width": 1280, "height": height})
    Image.open(path).convert("RGB").quantize(colors=192, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("site", type=Path)
    ap.add_argument("layer")
    ap.add_argument("feature", type=int)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent)
    a = ap.parse_args()
    base = (a.site / "index.html").resolve().as_uri()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = b.new_page(viewport={"width": 1280, "height": 900})
        shoot(page, f"{base}#/{a.layer}", "#ftable", a.out / "site_layer.png", 1500)
        shoot(page, f"{base}#/{a.layer}/f/{a.feature}", f"#app[data-ready='#/{a.layer}/f/{a.feature}']",
              a.out / "site_feature.png", 1700)  # fmt: skip
        b.close()


if __name__ == "__main__":
    main()
