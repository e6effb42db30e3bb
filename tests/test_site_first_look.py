"""The site's first impression in a real browser: a layer without class data, the header search, headings,
paths, p-values at the permutation floor and branch colours."""

from __future__ import annotations

import json

import pytest
from factories.site import make_analysis

from inception_sae.analysis.embedding import BRANCH_COLOURS
from inception_sae.analysis.run import NO_LOGIT_EFFECT
from inception_sae.site import SiteConfig, build_site

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """One layer analysed without logit effects (no classes.json), its SAE recorded under an absolute path."""
    root = tmp_path_factory.mktemp("first_look")
    a = make_analysis(root / "a", "mixed4d", 50)
    (a / "classes.json").unlink()
    summary = json.loads((a / "summary.json").read_text())
    summary.update(logit_effect=NO_LOGIT_EFFECT)
    summary["sae"]["path"] = "/home/someone/runs/r1/mixed4d/sae"
    (a / "summary.json").write_text(json.dumps(summary))
    return build_site(SiteConfig(analyses=(a,), out=root / "site")).out


def test_classes_view_without_logit_effects_says_why(page, site):
    page.goto((site / "index.html").as_uri() + "#/mixed4d/classes")
    page.wait_for_selector("#app[data-ready='#/mixed4d/classes']")
    text = page.locator("#no-classes").inner_text()
    assert "logit effects" in text and "switched off for this analysis" in text
    assert "--no-logit-effect" not in page.locator("#app").inner_text()
    page.goto((site / "index.html").as_uri() + "#/mixed4d/class/3")
    page.wait_for_selector("#app[data-ready='#/mixed4d/class/3']")
    assert page.locator("#no-classes").count() == 1
    assert page.errors == []  # no missing data file was requested


def test_header_search_finds_labels_and_ids(page, site):
    page.goto((site / "index.html").as_uri() + "#/mixed4d")
    page.wait_for_selector("#ftable")
    page.fill("#jump-id", "dog")
    page.press("#jump-id", "Enter")
    page.wait_for_function("document.querySelector('#f-q') && document.querySelector('#f-q').value === 'dog'")
    assert page.url.endswith("#/mixed4d")
    labels = page.locator("#ftable tbody td:nth-child(3)").all_inner_texts()
    assert labels and all("dog" in t for t in labels)
    assert "is not on this site" not in page.locator("#app").inner_text()
    page.fill("#jump-id", "12")
    page.press("#jump-id", "Enter")
    page.wait_for_selector("#app[data-ready='#/mixed4d/f/12']")
    assert page.errors == []


def test_headings_paths_pvalues_and_colours(page, site):
    page.goto((site / "index.html").as_uri() + "#/mixed4d")
    page.wait_for_selector("#ftable")
    header = page.locator("#app p.muted.small").first.inner_text()
    assert "mixed4d/sae" in header and "/home/someone" not in header
    assert page.evaluate("SAE.pval(0)") == "< 1e-300" and page.evaluate("SAE.pval(0.25)") == "0.25"
    assert page.evaluate("SAE.pval(0.0049)") == "0.0049" and page.evaluate("SAE.pval(0.00012)") == "1.2e-4"
    colours = page.evaluate("SAE.load('mixed4d/index').then(i => i.branches.map(b => [b, SAE.branchColour(i, b)]))")
    assert colours and all(BRANCH_COLOURS[b] == c for b, c in colours)  # the UMAP PNG's colours
    page.goto((site / "index.html").as_uri() + "#/mixed4d/f/3")
    page.wait_for_selector("#app[data-ready='#/mixed4d/f/3']")
    headings = page.locator("#app h2").all_inner_texts()
    assert sum("top examples" in h.lower() for h in headings) == 1, headings
    assert page.errors == []
