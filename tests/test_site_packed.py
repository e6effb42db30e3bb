"""A real analysis's packed pictures in the site: data URIs in each unit's file, thumbnails as sprite tiles,
a few files per feature instead of ~17."""

from __future__ import annotations

import base64
import io
import json
import os

import numpy as np
import pytest
import torch
from analysis_helpers import unit_rows, write_sae
from conftest import write_images
from PIL import Image
from site_fixture import read_js

from inception_sae.analysis.config import AnalyzeConfig
from inception_sae.analysis.render import read_packed
from inception_sae.analysis.run import analyze
from inception_sae.site import SiteConfig, build_site
from inception_sae.site.pictures import GRID, TILE

M = 40


@pytest.fixture(scope="module")
def packed(model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("packed")
    write_images(tmp / "imgs", 8, size=(40, 36), seed=3)
    sae = write_sae(tmp / "sae", unit_rows(torch.randn(M, 256, generator=torch.Generator().manual_seed(1))), "mixed3a")
    cfg = AnalyzeConfig(sae, tmp / "imgs", tmp / "analysis", input_size=32, batch_size=4, n_top=4, render_top=3,
                        render_intervals=1, umap=False, logit_effect=False)  # fmt: skip
    analyze(cfg, model=model, progress=False)
    site = build_site(SiteConfig(analyses=[tmp / "analysis"], out=tmp / "site"))
    return tmp / "analysis", site


def test_a_few_files_per_feature(packed):
    analysis, site = packed
    assert sorted(p.name for p in (analysis / "images").iterdir()) == ["examples.pack"]
    layer_files = [p for p in (site.out / "a" / "mixed3a").rglob("*") if p.is_file()]
    assert all(p.parent.name in ("figures", "thumbs") for p in layer_files)
    units = M + 256
    data_files = sum(1 for p in (site.out / "data" / "mixed3a").rglob("*.js"))
    assert data_files <= units + 3  # one per feature and neuron, the layer index, classes
    assert len(layer_files) + data_files < 2 * units  # was ~17 image files per unit


def shown_feature(analysis) -> int:
    """The first feature with a rendered example (random features may never fire on 8 images)."""
    for f in range(M):
        if any(e.get("crop") for e in json.loads((analysis / "features" / f"{f}.json").read_text())["top_examples"]):
            return f
    raise AssertionError("no feature has a rendered example")


def test_unit_files_carry_their_pictures_as_data_uris(packed):
    analysis, site = packed
    f = shown_feature(analysis)
    _, d = read_js(site.out / "data" / "mixed3a" / "f" / f"{f}.js")
    src = json.loads((analysis / "features" / f"{f}.json").read_text())
    shown = [(a, b) for a, b in zip(d["top_examples"], src["top_examples"], strict=True) if b.get("crop")]
    assert shown
    for site_ex, ex in shown:
        for key in ("crop", "heatmap"):
            head, data = site_ex[key].split(",", 1)
            assert head == "data:image/jpeg;base64" and base64.b64decode(data) == read_packed(analysis, ex[key])


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
