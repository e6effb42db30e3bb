"""The layer page's quality panel: the eval report's ``quality`` reaches the site data, and the page shows it."""

import json

import pytest
from factories.quality import labelled_store, save_sae
from factories.site import dump, make_analysis, read_js

from inception_sae.analysis.metrics import headline_metrics
from inception_sae.sae.model import TopKSAE
from inception_sae.sae.quality.panel import quality_section
from inception_sae.site import SiteConfig, build_site


@pytest.fixture(scope="module")
def quality_site(tmp_path_factory):
    """A one-layer site whose summary metrics come from a real quality section (labelled planted store)."""
    root = tmp_path_factory.mktemp("quality_site")
    store, D = labelled_store(root)
    a, b = save_sae(root / "a", D, 2), save_sae(root / "b", D, 2, noise=0.2, seed=1)
    k4 = save_sae(root / "k4", D, 4, seed=4)
    k1 = save_sae(root / "k1", D, 1, seed=5)
    q = quality_section(TopKSAE.load(a), a, store, (0, len(store)), (b, k4, k1))
    folder = make_analysis(root / "analysis", "mixed3a", 6)
    summary = json.loads((folder / "summary.json").read_text())
    summary["metrics"] = headline_metrics(summary, {}, {"quality": q})
    dump(folder / "summary.json", summary)
    return build_site(SiteConfig(analyses=(folder,), out=root / "site")).out, q


def test_site_data_holds_the_quality_panel(quality_site):
    out, q = quality_site
    _, index = read_js(out / "data/mixed3a/index.js")
    panel = index["headline"]["quality"]
    dog = next(p for p in panel["absorption"]["parents"] if p["concept"] == "dog")
    assert dog["absorbed"]["n"] > 100 and len(dog["absorbed"]["interval"]) == 2
    assert panel == json.loads(json.dumps(q))  # the whole section, unchanged
    assert panel["stability"]["siblings"][0]["mean_cosine"]["mean"] > 0.95
    assert panel["l0"]["sweep"] == 3 and panel["probing"]["concepts"][0]["concept"] == "dog"


@pytest.mark.browser
def test_layer_page_shows_the_quality_panel(quality_site, page):
    out, _ = quality_site
    page.goto((out / "index.html").as_uri() + "#/mixed3a")
    page.wait_for_selector("#quality")
    text = page.locator("#quality").inner_text()
    assert "dog" in page.locator("#q-absorption").inner_text()
    assert page.locator("#q-probing tr").count() >= 2 and page.locator("#q-stability tr").count() == 2
    assert "does not fall" in page.locator("#q-l0").inner_text()  # this sweep gives no advice, and says why
    assert "95%" in text and page.errors == []
