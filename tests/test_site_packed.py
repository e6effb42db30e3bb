"""A real analysis's packed pictures in the site: one sprite sheet per unit holding the pictures its page shows;
thumbnails as tiles of shared sheets."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import torch
from factories import make_images, make_sae, unit_rows
from factories.analysis import quick_analysis
from factories.site import read_js
from PIL import Image, ImageOps

from inception_sae.analysis.render import read_packed
from inception_sae.analysis.run import analyze
from inception_sae.site import SiteConfig, build_site
from inception_sae.site.pictures import GRID, SHEET_TILE, TILE

M = 40


@pytest.fixture(scope="module")
def packed(model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("packed")
    make_images(tmp / "imgs", 8, size=(40, 36), seed=3)
    sae = make_sae(
        tmp / "sae", W_dec=unit_rows(torch.randn(M, 256, generator=torch.Generator().manual_seed(1))), layer="mixed3a"
    )
    cfg = quick_analysis(sae, tmp / "imgs", tmp / "analysis", n_top=4, render_top=3, render_intervals=1)
    analyze(cfg, model=model, progress=False)
    site = build_site(SiteConfig(analyses=[tmp / "analysis"], out=tmp / "site"))
    return tmp / "analysis", site


def shown_pictures(analysis, kind: str, unit: int) -> list[str]:
    """The distinct pack references a unit's page shows, in page order."""
    d = json.loads((analysis / kind / f"{unit}.json").read_text())
    groups = [d, d.get("training_examples") or {}]
    refs = [e[k] for g in groups for key in ("top_examples", "intervals") for e in g.get(key) or []
            for k in ("crop", "heatmap") if e.get(k)]  # fmt: skip
    return list(dict.fromkeys(refs))


def test_one_pack_in_the_analysis_and_one_sheet_per_unit_in_the_site(packed):
    analysis, site = packed
    assert sorted(p.name for p in (analysis / "images").iterdir()) == ["examples.pack"]
    layer_files = [p for p in (site.out / "a" / "mixed3a").rglob("*") if p.is_file()]
    assert {p.parent.name for p in layer_files} <= {"figures", "thumbs", "sheets"}
    sheets = {p.name for p in layer_files if p.parent.name == "sheets"}
    want = {f"{k[0]}{p.stem}.jpg" for k in ("features", "neurons") for p in (analysis / k).glob("*.json")
            if shown_pictures(analysis, k, int(p.stem))}  # fmt: skip
    assert sheets == want and len(sheets) > 10  # one file per unit that shows pictures, none for the others


def shown_feature(analysis) -> int:
    """The first feature with a rendered example (random features may never fire on 8 images)."""
    for f in range(M):
        if any(e.get("crop") for e in json.loads((analysis / "features" / f"{f}.json").read_text())["top_examples"]):
            return f
    raise AssertionError("no feature has a rendered example")


def tile_of(site_out, address: str) -> np.ndarray:
    """The pixels a ``sprite:<sheet>#<col>,<row>,<cols>,<rows>`` address shows, cut from its sheet."""
    path, where = address.removeprefix("sprite:").split("#")
    col, row, cols, rows = map(int, where.split(","))
    sheet = np.asarray(Image.open(site_out / path).convert("RGB"), dtype=float)
    assert sheet.shape[:2] == (rows * SHEET_TILE, cols * SHEET_TILE)
    return sheet[row * SHEET_TILE : (row + 1) * SHEET_TILE, col * SHEET_TILE : (col + 1) * SHEET_TILE]


def test_unit_files_point_at_their_pictures_in_the_units_sheet(packed):
    analysis, site = packed
    f = shown_feature(analysis)
    _, d = read_js(site.out / "data" / "mixed3a" / "f" / f"{f}.js")
    src = json.loads((analysis / "features" / f"{f}.json").read_text())
    shown = [(a, b) for a, b in zip(d["top_examples"], src["top_examples"], strict=True) if b.get("crop")]
    assert shown
    refs = shown_pictures(analysis, "features", f)
    seen = set()
    for site_ex, ex in shown:
        for key in ("crop", "heatmap"):
            assert site_ex[key].startswith(f"sprite:a/mixed3a/sheets/f{f}.jpg#")
            seen.add(site_ex[key])
            want = ImageOps.fit(Image.open(io.BytesIO(read_packed(analysis, ex[key]))).convert("RGB"),
                                (SHEET_TILE, SHEET_TILE))  # fmt: skip
            assert np.abs(tile_of(site.out, site_ex[key]) - np.asarray(want, dtype=float)).mean() < 10
    assert len(seen) == len({r for a, b in shown for r in (b["crop"], b["heatmap"])})  # one tile per picture
    assert len(refs) >= len(seen)


def test_thumbnails_are_tiles_of_the_sprite_sheets(packed):
    analysis, site = packed
    _, index = read_js(site.out / "data" / "mixed3a" / "index.js")
    f = shown_feature(analysis)
    thumb = index["cols"]["thumb"][f]
    assert thumb == f"sprite:a/mixed3a/thumbs/0.jpg#{f},0,{GRID},{GRID}"
    sheet = np.asarray(Image.open(site.out / "a" / "mixed3a" / "thumbs" / "0.jpg").convert("RGB"), dtype=float)
    tile = sheet[0:TILE, f * TILE : (f + 1) * TILE]
    src = json.loads((analysis / "features" / f"{f}.json").read_text())["top_examples"][0]["crop"]
    want = np.asarray(ImageOps.fit(Image.open(io.BytesIO(read_packed(analysis, src))).convert("RGB"), (TILE, TILE)),
                      dtype=float)  # fmt: skip
    assert np.abs(tile - want).mean() < 12  # the same picture, through one more JPEG round
    assert os.path.getsize(site.out / "a" / "mixed3a" / "thumbs" / "0.jpg") > 1000
