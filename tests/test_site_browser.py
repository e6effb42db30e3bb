"""The site in a real browser (Playwright driving Debian's Chromium), from file:// and through `site serve`."""

from __future__ import annotations

import threading

import pytest
from factories import make_sae
from factories.site import DOG, FixtureHierarchy, concept_kind, make_analysis, small_site_inputs

from inception_sae.site import ServeConfig, SiteConfig, build_site, concepts, make_server

pytestmark = pytest.mark.browser

ALL_LOADED = "[...document.images].every(i => i.complete)"
BROKEN = "[...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"


@pytest.fixture(scope="module")
def site(tmp_path_factory, model):
    """A two-layer site (mixed3a, mixed4d) served with the live box on (random model, 48-latent SAE); both layers
    have concept labels (see factories.site.concept_kind)."""
    root = tmp_path_factory.mktemp("site_browser")
    inputs = small_site_inputs(root / "in", lower="mixed3a", n_lower=48)
    with pytest.MonkeyPatch.context() as mp:  # concept names from the fixture's piece of WordNet
        mp.setattr(concepts, "load_wordnet", FixtureHierarchy)
        out = build_site(
            SiteConfig(
                analyses=inputs["analyses"],
                out=root / "site",
                featvis=inputs["featvis"],
                circuits=(inputs["circuits"],),
            )
        ).out
    sae = make_sae(root / "sae", 256, 48, 6, layer="mixed3a")
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
    # circuit neighbours: blue bars excite, red inhibit, as the circuits figure and explain; the legend says so
    from inception_sae.display import NEGATIVE_COLOUR, POSITIVE_COLOUR

    assert "blue: excites" in page.locator("#upstream .sign-legend").inner_text()
    colour = "el => { const [r, g, b] = getComputedStyle(el).backgroundColor.match(/\\d+/g).map(Number); "
    colour += "return '#' + [r, g, b].map((v) => v.toString(16).padStart(2, '0')).join(''); }"
    bars = page.locator("#upstream .bar, #downstream .bar")
    shown = {page.locator("#upstream .bar, #downstream .bar").nth(i).evaluate(colour) for i in range(bars.count())}
    signs = page.evaluate("SAE.cached('mixed4d/f/7').up.concat(SAE.cached('mixed4d/f/7').down).map((n) => n.weight)")
    assert shown == {POSITIVE_COLOUR if w >= 0 else NEGATIVE_COLOUR for w in signs}
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
    assert sig.count() == 1 and "12 (60%) q 3e-9, ×30 the base rate" in sig.inner_text()
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
    from factories.site import NEVER_TRAINED

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


def test_live_page_opened_directly_shows_the_untrained_banner(page, site):
    page.goto(site["url"] + "#/live")
    page.wait_for_selector("#live-file")
    identity = page.evaluate("SAE.liveInfo().then((i) => i.identity)")
    assert identity.startswith("random:")
    assert f"UNTRAINED WEIGHTS ({identity})" in page.locator("#banner").inner_text()


def wait_ready(page, hash_: str) -> None:
    page.wait_for_selector(f"#app[data-ready='{hash_}']")


def test_feature_page_shows_its_label_scores_and_links_to_the_concept(page, site):
    page.goto((site["dir"] / "index.html").as_uri() + "#/mixed4d/f/10")  # a dog, on the left
    wait_ready(page, "#/mixed4d/f/10")
    assert page.locator("h1").inner_text() == "dog · left"
    assert page.locator("#label-text").inner_text() == "dog · left"
    assert "WordNet ancestor at depth 13, covering 118 classes" in page.locator("#label-kind").inner_text()
    assert "animal" in page.locator("#label-facts").inner_text()
    rows = {
        r.get_attribute("data-m"): r.locator("td").all_inner_texts()
        for r in page.locator("#label-scores tr[data-m]").all()
    }
    assert list(rows) == ["f1", "iou", "auprc", "pearson", "auroc"]
    assert rows["f1"] == ["F1", "0.87", "0.1", "3.1e-12", "1e-10"]  # value, baseline, p, q
    assert rows["iou"][1:4] == ["0.8", "0.05", "1e-20"] and rows["pearson"][3] == "< 1e-300"  # p = 0
    assert "secondary" in page.locator("#label-scores tr[data-m=auroc]").get_attribute("class")
    assert "sanity tests" in rows["auroc"][2]
    images = page.locator("#label-images").inner_text()
    assert "Chosen on 500 images, scored on 500 held-out images: 59 in the concept, 60 where it fires" in images
    where = page.locator("#label-quals tr[data-q=where]").inner_text()
    assert "left" in where and "labelled" in where and "0.33" in where and "1e-6" in where
    assert "not tested" in page.locator("#label-quals tr[data-q=colour]").inner_text()
    assert "12.0%" in page.locator("#label-extent").inner_text()
    assert page.locator("#label-spectrum rect").count() == 10
    assert "terrier" in page.locator("#label-runners").inner_text()
    link = page.locator("#label-text a.concept")
    assert link.inner_text() == "dog" and link.get_attribute("href") == f"#/concept/{DOG}"
    link.click()
    wait_ready(page, f"#/concept/{DOG}")
    assert page.locator("h1").inner_text() == "dog"
    assert page.errors == []


def concept_rows(page) -> set[tuple[str, int]]:
    rows = page.locator("#concept-features tr.row")
    return {(r.get_attribute("data-layer"), int(r.get_attribute("data-id"))) for r in rows.all()}


def test_concept_page_lists_features_of_both_layers(page, site):
    page.goto(site["url"] + f"#/concept/{DOG}")
    wait_ready(page, f"#/concept/{DOG}")
    want = {(layer, i) for layer, n in (("mixed3a", 48), ("mixed4d", 50)) for i in range(n) if concept_kind(i) == "dog"}
    assert concept_rows(page) == want
    assert "20 labelled features in 2 layers" in page.locator("#concept-facts").inner_text()
    assert "canine" in page.locator("#broader").inner_text() and "animal" in page.locator("#broader").inner_text()
    page.locator("#broader a", has_text="carnivore").click()  # one level up: the dogs and the cats
    wait_ready(page, "#/concept/n02075296")
    rows = concept_rows(page)
    assert want < rows and {concept_kind(i) for _, i in rows} == {"dog", "classes"}
    assert {t.split(" · ")[0] for t in page.locator("#narrower a").all_inner_texts()} == {"canine", "feline"}
    page.locator("#concept-features tr.row[data-layer=mixed3a][data-id='1'] a").click()
    wait_ready(page, "#/mixed3a/f/1")
    assert page.locator("#label-text").inner_text() == "tabby + Egyptian cat · brown"
    assert page.locator("#label-text a.concept").count() == 2  # both classes link to their concept pages
    # the index of concepts, from the start page and the layer page
    page.goto(site["url"] + "#/")
    assert "Concepts across layers" in page.wait_for_selector("#concepts-link a[href='#/concepts']").inner_text()
    page.goto(site["url"] + "#/mixed4d")
    wait_ready(page, "#/mixed4d")
    page.click("#concepts-nav")
    wait_ready(page, "#/concepts")
    assert page.locator("#concept-rows tr").count() == len(page.evaluate("SAE.cached('concepts').nodes"))
    page.fill("#concept-q", "dog")
    row = page.locator("#concept-rows tr")
    assert row.count() == 1 and row.get_attribute("data-wnid") == DOG
    assert row.locator("td").all_inner_texts()[2:7] == ["13", "animal", "20", "10", "10"]  # depth, cat, per layer
    assert page.errors == []


def test_unlabelled_units_say_no_label_and_why(page, site):
    page.goto(site["url"] + "#/mixed4d/f/12")  # its best candidate, car wheel, failed its test
    wait_ready(page, "#/mixed4d/f/12")
    assert page.locator("h1").inner_text() == "no label"
    assert page.locator("#label-text").inner_text() == "no label"
    why = page.locator("#label-why").inner_text()
    assert "No concept passed its test at level 0.05" in why and "car wheel" in why
    assert "F1 0.12 vs baseline 0.1 (p 0.3, q 0.9)" in why
    assert page.locator("#label-quals").count() == 0
    page.goto(site["url"] + "#/mixed4d/f/19")  # no candidate at all
    wait_ready(page, "#/mixed4d/f/19")
    assert page.locator("#label-text").inner_text() == "no label"
    assert "No concept was tested" in page.locator("#label-why").inner_text()
    page.goto(site["url"] + "#/mixed4d/n/0")  # neurons get the same section
    wait_ready(page, "#/mixed4d/n/0")
    assert page.locator("#label-text").inner_text() == "dog · left"
    page.goto(site["url"] + "#/concept/n09999999")
    assert "no labelled unit on this site lies under concept n09999999" in page.locator(".err").inner_text()
    assert page.errors == []


def table_column(page, n: int) -> list[str]:
    return page.locator(f"#ftable tbody td:nth-child({n})").all_inner_texts()


def test_layer_table_category_column_sorting_and_category_map(page, site):
    page.goto(site["url"] + "#/mixed4d")
    page.wait_for_selector("#ftable")
    heads = page.locator("#ftable th").all_inner_texts()
    assert [h.strip(" ▴▾") for h in heads[2:5]] == ["label", "score", "cat"]
    page.select_option("#f-cat", "animal")
    assert page.locator("#f-count").inner_text() == "15 shown"
    assert set(table_column(page, 5)) == {"animal"}
    page.select_option("#f-cat", "(no label)")
    assert page.locator("#f-count").inner_text() == "30 shown" and set(table_column(page, 3)) == {"no label"}
    page.select_option("#f-cat", "")
    page.fill("#f-smin", "0.88")  # label score filter: only labelled features reach it
    scores = [float(x) for x in table_column(page, 4)]
    assert scores and min(scores) >= 0.88
    page.fill("#f-smin", "")
    page.click("th[data-k=score]")  # descending, unlabelled (no score) last
    scores = table_column(page, 4)
    numbers = [float(x) for x in scores if x != "–"]
    assert len(numbers) == 20 and numbers == sorted(numbers, reverse=True) and scores[20:] == ["–"] * 30
    page.click("th[data-k=label]")  # ascending, no label last
    labels = table_column(page, 3)
    assert labels[:20] == sorted(labels[:20]) and labels[0] == "car wheel" and labels[20:] == ["no label"] * 30
    page.click("th[data-k=cat]")
    cats = table_column(page, 5)
    assert cats[:20] == ["animal"] * 15 + ["artifact"] * 5 and set(cats[20:]) == {""}
    # the map: branch colours, then label categories with unlabelled features in grey
    assert page.locator("#umap-colour button.on").inner_text() == "dominant branch"
    branch10 = page.evaluate("SAE.debug.umapColour(10)")
    page.click("#umap-colour button[data-colour=category]")
    assert page.locator("#umap-legend").inner_text().split() == ["animal", "artifact", "no", "label"]
    colours = page.evaluate("[10, 3, 12].map(SAE.debug.umapColour)")
    assert colours == page.evaluate("['animal', 'artifact', ''].map(SAE.categoryColour)") and colours[0] != branch10
    # the layer's label summary: counts per category, and category x dominant branch as one table
    assert page.locator("#labelled-count").inner_text() == "20"
    d = page.evaluate("SAE.cached('mixed4d/index').labels.concepts")
    animal = page.locator("#cat-branch tr[data-cat=animal] td")
    cells = {
        c.get_attribute("data-b"): int(c.inner_text().split()[0]) for c in animal.all() if c.get_attribute("data-b")
    }
    assert {b: n for b, n in cells.items() if n} == d["category_by_branch"]["animal"]
    assert animal.last.inner_text() == "15"
    assert page.errors == []


def test_folders_without_concept_labels_show_no_label_section(page, tmp_path):
    a = make_analysis(tmp_path / "a", "mixed4b", 6)
    out = build_site(SiteConfig(analyses=(a,), out=tmp_path / "site")).out
    page.goto((out / "index.html").as_uri() + "#/mixed4b/f/2")
    wait_ready(page, "#/mixed4b/f/2")
    assert page.locator("#labelcard").count() == 0 and page.locator("h1").inner_text() == "car (class 2)"
    page.goto((out / "index.html").as_uri() + "#/mixed4b")
    wait_ready(page, "#/mixed4b")
    assert page.locator("#concept-summary, #umap-colour, #f-cat, th[data-k=cat], #concepts-nav").count() == 0
    page.goto((out / "index.html").as_uri() + "#/concepts")
    wait_ready(page, "#/concepts")
    assert "No unit on this site has a concept label" in page.locator("#no-concepts").inner_text()
    assert page.errors == []


def test_a_concept_above_many_units_draws_the_first_500_then_all(page, tmp_path):
    a = make_analysis(tmp_path / "a", "mixed5a", 1300, n_neurons=2, pool=4, concepts=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(concepts, "load_wordnet", FixtureHierarchy)
        out = build_site(SiteConfig(analyses=(a,), out=tmp_path / "site")).out
    labelled = sum(concept_kind(i) in ("dog", "classes", "class") for i in range(1300))
    page.goto((out / "index.html").as_uri() + "#/concept/n00001740")  # entity: every labelled feature
    wait_ready(page, "#/concept/n00001740")
    assert page.locator("#concept-features tr.row").count() == 500
    page.click("#concept-units button.more")
    assert page.locator("#concept-features tr.row").count() == labelled == 520
    assert page.locator("#concept-units button.more").count() == 0
    page.locator("#concept-features tr.row[data-id='1293'] td").first.click()  # the last one, by the row
    wait_ready(page, "#/mixed5a/f/1293")
    assert page.locator("#label-text").inner_text() == "car wheel"
    assert page.errors == []
