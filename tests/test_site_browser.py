"""The site in a real browser (Playwright driving Debian's Chromium), from file:// and through `site serve`."""

from __future__ import annotations

import threading

import pytest
from site_fixture import make_sae, small_site_inputs

from inception_sae.site import ServeConfig, SiteConfig, build_site, make_server

pytestmark = pytest.mark.browser

ALL_LOADED = "[...document.images].every(i => i.complete)"
BROKEN = "[...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"


@pytest.fixture(scope="module")
def site(tmp_path_factory, model):
    """A two-layer site (mixed3a, mixed4d) served with the live box on (random model, 48-latent SAE)."""
    root = tmp_path_factory.mktemp("site_browser")
    inputs = small_site_inputs(root / "in", lower="mixed3a", n_lower=48)
    out = build_site(SiteConfig(inputs["analyses"], root / "site", inputs["featvis"], (inputs["circuits"],))).out
    sae = make_sae(root / "sae", "mixed3a", 256, 48, 6)
    server = make_server(ServeConfig(out, port=0, live=True, sae=sae), model=model)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"dir": out, "url": server.url, "root": root}
    server.shutdown()
    server.server_close()


def settle(page) -> None:
    """Wait for every image, then assert none is broken and nothing was logged as an error."""
    page.wait_for_function(ALL_LOADED)
    assert page.evaluate(BROKEN) == []
    assert page.errors == []


def open_feature_checks(page, layer: str, fid: int) -> None:
    page.wait_for_url(f"**#/{layer}/f/{fid}")
    page.wait_for_selector(f"#app[data-ready='#/{layer}/f/{fid}']")
    page.wait_for_function("!document.querySelector('#neuronex') || !document.querySelector('#neuronex.muted')")
    assert page.locator("h1").inner_text().strip()
    assert page.locator(".tile img").count() >= 10  # crops and heatmaps of examples and intervals
    settle(page)


def test_layer_page_filter_and_umap_click_from_file(page, site, tmp_path):
    page.goto((site["dir"] / "index.html").as_uri() + "#/mixed4d")
    page.wait_for_selector("#ftable")
    assert page.locator("#f-count").inner_text() == "50 shown"
    assert "UNTRAINED WEIGHTS" in page.locator("#banner").inner_text()
    assert page.locator("#fdr-counts li").count() == 4  # FDR counts per branch, for both shares
    assert "3 (norm share)" in page.locator("#fdr-status").inner_text()
    page.select_option("#f-branch", "none")
    shown = int(page.locator("#f-count").inner_text().split()[0])
    assert 0 < shown < 50
    assert set(page.locator("#ftable tbody .bchip").all_inner_texts()) == {"none"}
    page.select_option("#f-branch", "pool")
    shown = int(page.locator("#f-count").inner_text().split()[0])
    assert 0 < shown < 50
    assert set(page.locator("#ftable tbody .bchip").all_inner_texts()) == {"pool"}
    page.fill("#f-q", "dog")
    assert all("dog" in t for t in page.locator("#ftable tbody td:nth-child(3)").all_inner_texts())
    page.fill("#f-q", "")
    fid = int(page.locator("#ftable tbody tr.row").first.get_attribute("data-id"))
    xy = page.evaluate(f"SAE.debug.umapXY({fid})")
    box = page.locator("#umap").bounding_box()
    page.mouse.move(box["x"] + xy["x"], box["y"] + xy["y"])
    page.wait_for_selector("#tip img")
    assert f"#{fid}" in page.locator("#tip").inner_text()
    page.screenshot(path=str(tmp_path / "layer.png"), full_page=True)
    page.mouse.click(box["x"] + xy["x"], box["y"] + xy["y"])
    open_feature_checks(page, "mixed4d", fid)
    page.screenshot(path=str(tmp_path / "feature_file.png"), full_page=True)
    page.goto((site["dir"] / "index.html").as_uri() + "#/mixed4d/f/9999")
    assert "no feature 9999" in page.locator(".err").inner_text()
    assert page.errors == []


def test_table_row_circuit_link_neuron_and_class_over_http(page, site, tmp_path):
    page.goto(site["url"] + "#/mixed4d")
    page.wait_for_selector("#ftable")
    page.click("th[data-k=freq]")  # sort by frequency, then open the row of feature 7 from page 1
    page.locator("#ftable tr.row[data-id='7'] td:nth-child(3)").click()
    open_feature_checks(page, "mixed4d", 7)
    assert page.locator(".fv img").count() == 0  # odd ids have no featvis in the fixture
    classes = page.locator("#label-classes").inner_text()  # odd ids: no significant class in the fixture
    assert "q 0.4" in classes and "no class significant" in classes and "×" not in classes
    assert page.locator("#label-classes .lc.sig").count() == 0
    page.screenshot(path=str(tmp_path / "feature_http.png"), full_page=True)
    link = page.locator("#upstream a").first
    target = link.get_attribute("href")
    link.click()
    fid = int(target.rsplit("/", 1)[1])
    open_feature_checks(page, "mixed3a", fid)
    page.click("#nextf")
    open_feature_checks(page, "mixed3a", fid + 1)
    page.goto(site["url"] + "#/mixed4d/f/4")
    open_feature_checks(page, "mixed4d", 4)
    assert page.locator(".fv img").count() == 3  # main + two diverse variants
    sig = page.locator("#label-classes .lc.sig")  # even ids: the first class at q 3e-9, the second not
    assert sig.count() == 1 and "12 (60%) q 3.0e-9, ×30 the base rate" in sig.inner_text()
    assert "q 1" in page.locator("#label-classes .lc").nth(1).inner_text()
    page.locator("#neuronbox h2 a").click()
    page.wait_for_url("**#/mixed4d/n/*")
    page.wait_for_selector("#app[data-ready*='/n/']")
    settle(page)
    page.goto(site["url"] + "#/class/5")
    page.wait_for_selector("#app[data-ready*='/class/5'] #classfeatures li")
    settle(page)


def shown_values(page, box: str) -> list[str]:
    return page.locator(f"{box} .tile .v").all_inner_texts()


def formatted(page, examples: list[dict]) -> list[str]:
    """The values of the examples with image files, as the page writes them."""
    values = [e["value"] for e in examples if e.get("crop") or e.get("heatmap")]
    return page.evaluate("xs => xs.map((x) => SAE.fmt(x, 3))", values)


def test_feature_page_toggles_trained_and_every_position_examples(page, site, tmp_path):
    page.goto((site["dir"] / "index.html").as_uri() + "#/mixed4d/f/4")
    open_feature_checks(page, "mixed4d", 4)
    d = page.evaluate("SAE.cached('mixed4d/f/4')")
    t = d["training_examples"]
    # trained positions first: the training family's top examples and intervals
    assert page.locator("#ex-dist button.on").inner_text() == "trained positions"
    assert shown_values(page, "#topex") == formatted(page, t["top_examples"])
    assert shown_values(page, "#ivex") == formatted(page, t["intervals"])
    assert page.locator("#iv-dist").inner_text() == "(trained positions)"
    assert f"{t['counts']['images']} images fire at one" in page.locator("#ex-note").inner_text()
    page.screenshot(path=str(tmp_path / "trained.png"), full_page=True)
    # every position: the other family, its examples at a trained position marked and counted
    page.click("#ex-dist button[data-dist=every]")
    assert page.locator("#ex-dist button.on").inner_text() == "every position"
    assert shown_values(page, "#topex") == formatted(page, d["top_examples"])
    assert shown_values(page, "#ivex") == formatted(page, d["intervals"])
    assert page.locator("#iv-dist").inner_text() == "(every position)"
    rendered = [e for e in d["top_examples"] if e.get("crop")]
    assert page.locator("#topex .tile.at-train").count() == sum(e["at_training_position"] for e in rendered) > 0
    at = sum(e["at_training_position"] for e in d["top_examples"])
    assert page.locator("#at-train-count").inner_text() == f"{at} of {len(d['top_examples'])}"
    settle(page)
    page.click("#ex-dist button[data-dist=trained]")
    assert shown_values(page, "#topex") == formatted(page, t["top_examples"])
    settle(page)


def test_a_feature_that_never_fires_at_trained_positions_says_so(page, site):
    from site_fixture import NEVER_TRAINED

    page.goto(site["url"] + f"#/mixed4d/f/{NEVER_TRAINED}")
    page.wait_for_selector(f"#app[data-ready='#/mixed4d/f/{NEVER_TRAINED}']")
    assert "never fires at a trained position" in page.locator("#no-trained").inner_text()
    assert page.locator("#topex .tile").count() == 0 and page.locator("#ivex .tile").count() == 0
    page.click("#ex-dist button[data-dist=every]")
    assert page.locator("#topex .tile").count() > 0 and page.locator("#topex .tile.at-train").count() == 0
    settle(page)
    page.goto(site["url"] + "#/mixed3a/f/4")  # a layer whose harvest rule is unknown: every position, no toggle
    page.wait_for_selector("#app[data-ready='#/mixed3a/f/4']")
    assert page.locator("#ex-dist").count() == 0 and page.locator("#iv-dist").inner_text() == ""
    assert page.locator("#topex .tile").count() > 0
    settle(page)


def test_live_box_returns_features(page, site, tmp_path):
    from PIL import Image

    img = tmp_path / "mine.png"
    Image.new("RGB", (90, 70), (30, 160, 90)).save(img)
    page.goto(site["url"] + "#/mixed3a")
    page.wait_for_selector("#live-open")
    page.click("#live-open")
    page.wait_for_selector("#live-file")
    page.set_input_files("#live-file", str(img))
    page.click("#live-go")
    page.wait_for_selector(".live-feature", timeout=60_000)
    assert page.locator(".live-feature").count() > 0
    assert page.locator(".live-feature a").first.get_attribute("href").startswith("#/mixed3a/f/")
    settle(page)
    page.screenshot(path=str(tmp_path / "live.png"), full_page=True)
