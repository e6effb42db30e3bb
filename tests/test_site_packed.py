"""A real analysis's packed pictures in the site: each shown picture copied out of the pack once, byte for byte;
thumbnails as sprite tiles."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import torch
from factories import make_images, make_sae, unit_rows
from factories.site import read_js
from PIL import Image

from inception_sae.analysis.config import AnalyzeConfig
from inception_sae.analysis.render import read_packed
from inception_sae.analysis.run import analyze
from inception_sae.site import SiteConfig, build_site
from inception_sae.site.pictures import GRID, TILE

M = 40


@pytest.fixture(scope="module")
def packed(model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("packed")
    make_images(tmp / "imgs", 8, size=(40, 36), seed=3)
    sae = make_sae(
        tmp / "sae", W_dec=unit_rows(torch.randn(M, 256, generator=torch.Generator().manual_seed(1))), layer="mixed3a"
    )
    cfg = AnalyzeConfig(sae, tmp / "imgs", tmp / "analysis", input_size=32, batch_size=4, n_top=4, render_top=3,
                        render_intervals=1, umap=False, logit_effect=False)  # fmt: skip
    analyze(cfg, model=model, progress=False)
    site = build_site(SiteConfig(analyses=[tmp / "analysis"], out=tmp / "site"))
    return tmp / "analysis", site


def test_one_pack_in_the_analysis_and_each_picture_once_in_the_site(packed):
    analysis, site = packed
    assert sorted(p.name for p in (analysis / "images").iterdir()) == ["examples.pack"]
    layer_files = [p for p in (site.out / "a" / "mixed3a").rglob("*") if p.is_file()]
    assert {p.parent.name for p in layer_files} <= {"figures", "thumbs", "images"}
    pictures = [p for p in layer_files if p.parent.name == "images"]
    shown = set()
    for kind in ("features", "neurons"):
        for f in (analysis / kind).glob("*.json"):
            d = json.loads(f.read_text())
            groups = [d, d.get("training_examples") or {}]
            shown |= {e[k] for g in groups for key in ("top_examples", "intervals") for e in g.get(key) or []
                      for k in ("crop", "heatmap") if e.get(k)}  # fmt: skip
    assert len(pictures) == len(shown)  # one file per distinct picture, however many units show it
    assert sum(p.stat().st_size for p in pictures) <= (analysis / "images" / "examples.pack").stat().st_size


def shown_feature(analysis) -> int:
    """The first feature with a rendered example (random features may never fire on 8 images)."""
    for f in range(M):
        if any(e.get("crop") for e in json.loads((analysis / "features" / f"{f}.json").read_text())["top_examples"]):
            return f
    raise AssertionError("no feature has a rendered example")


def test_unit_files_point_at_byte_copies_of_their_pictures(packed):
    analysis, site = packed
    f = shown_feature(analysis)
    _, d = read_js(site.out / "data" / "mixed3a" / "f" / f"{f}.js")
    src = json.loads((analysis / "features" / f"{f}.json").read_text())
    shown = [(a, b) for a, b in zip(d["top_examples"], src["top_examples"], strict=True) if b.get("crop")]
    assert shown
    for site_ex, ex in shown:
        for key in ("crop", "heatmap"):
            assert site_ex[key].startswith("a/mixed3a/images/")
            assert (site.out / site_ex[key]).read_bytes() == read_packed(analysis, ex[key])


def test_thumbnails_are_tiles_of_the_sprite_sheets(packed):
    analysis, site = packed
    _, index = read_js(site.out / "data" / "mixed3a" / "index.js")
    f = shown_feature(analysis)
    thumb = index["cols"]["thumb"][f]
    assert thumb == f"sprite:a/mixed3a/thumbs/0.jpg#{f},0,{GRID},{GRID}"
    sheet = np.asarray(Image.open(site.out / "a" / "mixed3a" / "thumbs" / "0.jpg").convert("RGB"), dtype=float)
    tile = sheet[0:TILE, f * TILE : (f + 1) * TILE]
    src = json.loads((analysis / "features" / f"{f}.json").read_text())["top_examples"][0]["crop"]
    from PIL import ImageOps

    want = np.asarray(ImageOps.fit(Image.open(io.BytesIO(read_packed(analysis, src))).convert("RGB"), (TILE, TILE)),
                      dtype=float)  # fmt: skip
    assert np.abs(tile - want).mean() < 12  # the same picture, through one more JPEG round
    assert os.path.getsize(site.out / "a" / "mixed3a" / "thumbs" / "0.jpg") > 1000
