"""Comparisons on the site: a page per pair, each feature's best matches linked, in a real browser."""

from __future__ import annotations

import json

import pytest
import torch
from factories import make_images, make_sae, unit_rows
from factories.compare import PlantedModel
from factories.site import small_site_inputs

from inception_sae.compare import CompareConfig
from inception_sae.compare.run import run as compare_saes
from inception_sae.site import SiteConfig, build_site


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare_site")
    inputs = small_site_inputs(root / "in", lower="mixed4c", n_lower=30)
    # Cross-layer: mixed4c (30 features) vs mixed4d (50), with planted shared activation patterns.
    pm = PlantedModel(K=15, S=8, layers=("mixed4c", "mixed4d"))
    g = torch.Generator().manual_seed(9)
    a = make_sae(root / "s4c", W_dec=pm.D["mixed4c"], layer="mixed4c", k=15)
    W = torch.cat([pm.D["mixed4d"], unit_rows(torch.randn(20, 528, generator=g))])
    b = make_sae(root / "s4d", W_dec=W, layer="mixed4d", k=15)
    make_images(root / "imgs", 16)
    compare_saes(
        CompareConfig(sae_a=a, sae_b=b, out=root / "c_layers", images=root / "imgs", max_images=16, batch_size=8),
        model=pm,
    )
    # Same layer: mixed4d vs its rows permuted.
    W = unit_rows(torch.randn(50, 528, generator=g))
    perm = torch.randperm(50, generator=g)
    make_sae(root / "s4d_bis", W_dec=W[perm], layer="mixed4d")
    compare_saes(
        CompareConfig(
            sae_a=make_sae(root / "s4d_a", W_dec=W, layer="mixed4d"), sae_b=root / "s4d_bis", out=root / "c_seeds"
        )
    )
    cfg = SiteConfig(analyses=inputs["analyses"], out=root / "site", compares=(root / "c_layers", root / "c_seeds"))
    out = build_site(cfg).out
    return {"out": out, "perm": perm.tolist(), "S": pm.S}


def test_feature_data_carries_its_matches(built):
    text = (built["out"] / "data" / "mixed4c" / "f" / "3.js").read_text()
    d = json.loads(text[text.index(",") + 1 : text.rindex(")")])
    (m,) = d["matches"]
    assert m["other_layer"] == "mixed4d" and m["corr"][0] == 3 and m["above_null"] and m["linked"]
    text = (built["out"] / "data" / "mixed4d" / "f" / "7.js").read_text()
    d = json.loads(text[text.index(",") + 1 : text.rindex(")")])
    same = [m for m in d["matches"] if m["same_layer"]]
    assert same[0]["cos"][0] == built["perm"].index(7) and same[0]["cos"][1] == pytest.approx(1, abs=1e-3)
    assert not same[0]["linked"]  # the other seed's features have no pages on this site


@pytest.mark.browser
def test_comparison_pages_and_feature_matches_in_the_browser(browser, built):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((built["out"] / "index.html").as_uri() + "#/mixed4c/f/3")
    page.wait_for_selector("#matchbox")
    page.locator("#matchbox a[href='#/mixed4d/f/3']").click()
    page.wait_for_selector("#app[data-ready='#/mixed4d/f/3']")
    page.locator("#matchbox a[href='#/compare/0']").first.click()
    page.wait_for_selector("#app[data-ready='#/compare/0'] #branchpairs")
    assert "Activation correlation" in page.inner_text("#app")
    page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    page.goto((built["out"] / "index.html").as_uri() + "#/compare/1")
    page.wait_for_selector("#app[data-ready='#/compare/1'] .pairs")
    assert "UNTRAINED WEIGHTS (random:" in page.inner_text("#banner")  # opened directly: its own data say so
    assert page.locator(".pairs tr").count() == 51  # header + every feature's best match
    page.goto((built["out"] / "index.html").as_uri() + "#/mixed4d")
    page.wait_for_selector(".compare-link")
    assert page.locator(".compare-link").count() == 2
    assert errors == []
    page.close()
