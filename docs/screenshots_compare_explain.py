"""Screenshots (docs/compare.md, docs/explain.md) of the comparison page, a feature's matches, an ``explain`` report.

    python docs/screenshots_compare_explain.py --site SITE --pair 0 --feature mixed4b/12 \
        --explain runs/explain/explain.html [--live URL] [--image IMG] [--out docs]

Writes ``site_compare.png``, ``site_matches.png``, ``explain_report.png`` and, with ``--live``
(a running ``site serve --live`` of a mixed5b SAE) and ``--image``, ``site_live_explain.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def small(path: Path) -> None:
    Image.open(path).convert("RGB").quantize(colors=192, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def settle(page) -> None:
    page.wait_for_function("[...document.images].every(i => i.complete)")
    page.wait_for_timeout(300)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--site", type=Path, required=True)
    ap.add_argument("--pair", type=int, default=0)
    ap.add_argument("--feature", required=True, help="layer/id of a feature page with matches")
    ap.add_argument("--explain", type=Path, required=True, help="explain.html written by `inception-sae explain`")
    ap.add_argument("--live", help="URL of `site serve --live` with a mixed5b SAE")
    ap.add_argument("--image", type=Path, help="image to upload to the live box")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent)
    a = ap.parse_args()
    base = (a.site / "index.html").resolve().as_uri()
    layer, fid = a.feature.split("/")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = b.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{base}#/compare/{a.pair}")
        page.wait_for_selector(f"#app[data-ready='#/compare/{a.pair}']")
        settle(page)
        out = a.out / "site_compare.png"
        page.screenshot(path=str(out), full_page=True, clip={"x": 0, "y": 0, "width": 1280, "height": 1500})
        small(out)
        page.goto(f"{base}#/{layer}/f/{fid}")
        page.wait_for_selector("#matchbox")
        settle(page)
        out = a.out / "site_matches.png"
        page.locator("#matchbox").screenshot(path=str(out))
        small(out)
        page.goto(a.explain.resolve().as_uri())
        settle(page)
        out = a.out / "explain_report.png"
        page.screenshot(path=str(out), full_page=True, clip={"x": 0, "y": 0, "width": 1280, "height": 1250})
        small(out)
        if a.live and a.image:
            page.goto(a.live.rstrip("/") + "/#/live")
            page.wait_for_selector("#live-file")
            page.set_input_files("#live-file", str(a.image))
            page.click("#live-go")
            page.wait_for_selector("#explain-go", timeout=120_000)
            page.click("#explain-go")
            page.wait_for_selector(".explain-class", timeout=300_000)
            settle(page)
            box = page.locator("#live-explain").bounding_box()
            out = a.out / "site_live_explain.png"
            clip = {"x": 0, "y": box["y"] - 8, "width": 1280, "height": min(box["height"] + 16, 1150)}
            page.screenshot(path=str(out), full_page=True, clip=clip)
            small(out)
        b.close()


if __name__ == "__main__":
    main()
