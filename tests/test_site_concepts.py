"""site build: concept labels in the layer table, and the cross-layer concept files (data/concepts.js, concept/)."""

from __future__ import annotations

import json

import pytest
from factories.site import (
    ANIMAL,
    CAR_WHEEL,
    DOG,
    EGYPTIAN,
    TABBY,
    FixtureHierarchy,
    chain,
    concept_kind,
    dump,
    make_analysis,
    read_js,
)

from inception_sae.site import SiteConfig, build_site, concepts

CARNIVORE, CANINE, FELINE, DOMESTIC_CAT = "n02075296", "n02083346", "n02120997", "n02121808"


def build_two_layers(root, hierarchy):
    """Two layers with concept labels (mixed3a: 30 features, mixed4d: 40); ``hierarchy``: what load_wordnet gives."""
    a = make_analysis(root / "a", "mixed3a", 30, seed=1, concepts=True)
    b = make_analysis(root / "b", "mixed4d", 40, seed=2, concepts=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(concepts, "load_wordnet", lambda: hierarchy)
        return build_site(SiteConfig(analyses=(a, b), out=root / "site")).out, (a, b)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return build_two_layers(tmp_path_factory.mktemp("concepts"), FixtureHierarchy())


def labelled_under(analyses, wnid, folder="features"):
    """(layer, id) of every unit of the analysis folders whose label passed its test and lies under ``wnid``."""
    out = set()
    for a in analyses:
        layer = json.loads((a / "summary.json").read_text())["layer"]
        for p in (a / folder).glob("*.json"):
            lc = json.loads(p.read_text()).get("label_concept")
            if lc and lc["labelled"] and wnid in lc["under"]:
                out.add((layer, int(p.stem)))
    return out


def units(site, wnid, kind="f"):
    _, doc = read_js(site / "data" / "concept" / f"{wnid}.js")
    return {(u["layer"], u["id"]) for u in doc["units"] if u["kind"] == kind}, doc


def test_each_concept_lists_every_labelled_unit_under_it_across_layers(site):
    out, analyses = site
    _, index = read_js(out / "data/concepts.js")
    nodes = {n["wnid"]: n for n in index["nodes"]}
    dogs = {(layer, i) for layer, n in (("mixed3a", 30), ("mixed4d", 40)) for i in range(n) if i % 10 in (0, 5)}
    got, doc = units(out, DOG)
    assert got == dogs == labelled_under(analyses, DOG)
    assert (doc["name"], doc["depth"], doc["category"]) == ("dog", 13, "animal")
    assert all(u["direct"] and u["f1"] > 0.5 for u in doc["units"])
    assert nodes[DOG]["features"] == len(dogs) and nodes[DOG]["layers"] == {"mixed3a": 6, "mixed4d": 8}
    # a node above: the dogs and the cat-class pairs, not the car wheels; neurons on their own
    got, doc = units(out, ANIMAL)
    assert got == labelled_under(analyses, ANIMAL) and {i % 10 for _, i in got} == {0, 1, 5}
    assert not any(u["direct"] for u in doc["units"])
    assert units(out, ANIMAL, "n")[0] == labelled_under(analyses, ANIMAL, "neurons") != set()
    # the best candidate of an unlabelled feature (car wheel at F1 0.12) does not make it a car-wheel feature
    got, _ = units(out, CAR_WHEEL)
    assert {i % 10 for _, i in got} == {3} and got == labelled_under(analyses, CAR_WHEEL)
    # a label that combines classes is on each class's page, as a label naming it
    got, doc = units(out, TABBY)
    assert {i % 10 for _, i in got} == {1} and all(u["direct"] and u["concept_kind"] == "classes" for u in doc["units"])
    assert got == units(out, EGYPTIAN)[0] == units(out, DOMESTIC_CAT)[0]
    # every node with a labelled feature under it has a page, and only those
    expected = {*chain(DOG), *chain(DOMESTIC_CAT), *chain(CAR_WHEEL), TABBY, EGYPTIAN}  # the pairs' classes too
    assert set(nodes) == expected == {p.stem for p in (out / "data/concept").glob("*.js")}
    assert [n["features"] for n in index["nodes"]] == sorted((n["features"] for n in index["nodes"]), reverse=True)
    assert [n["name"] for n in index["nodes"][:4]] == ["entity", "physical entity", "object", "whole"]
    _, site_doc = read_js(out / "data/site.js")
    assert site_doc["concepts"] == len(expected) and index["wordnet"] is True


def test_a_concept_page_knows_its_broader_and_narrower_nodes(site):
    out, _ = site
    _, doc = units(out, CARNIVORE)
    assert (doc["name"], doc["category"]) == ("carnivore", "animal")
    assert [b["name"] for b in doc["broader"]][:2] == ["placental", "mammal"] and doc["broader"][-1]["name"] == "entity"
    assert {n["wnid"]: n["features"] for n in doc["narrower"]} == {CANINE: 14, FELINE: 7}
    _, root = units(out, "n00001740")
    assert root["category"] == "other" and root["broader"] == []


def test_without_a_hierarchy_nodes_are_named_by_the_label_terms(tmp_path):
    out, analyses = build_two_layers(tmp_path, None)
    _, index = read_js(out / "data/concepts.js")
    nodes = {n["wnid"]: n for n in index["nodes"]}
    assert index["wordnet"] is False
    assert (nodes[DOG]["name"], nodes[DOG]["depth"], nodes[DOG]["category"]) == ("dog", 13, "animal")
    assert nodes[CARNIVORE]["name"] == CARNIVORE and nodes[CARNIVORE]["category"] == "animal"  # named by no term
    assert nodes["n00001740"]["category"] == "mixed"  # animal and artefact labels under it
    got, doc = units(out, CARNIVORE)
    assert got == labelled_under(analyses, CARNIVORE)
    # the single-term labels' `under` lists still place dog below carnivore
    assert DOG in {n["wnid"] for n in doc["narrower"]}
    _, dog = units(out, DOG)
    assert CARNIVORE in {b["wnid"] for b in dog["broader"]}
    _, tabby = units(out, TABBY)  # a class named only in pairs: above it, at least the pair's common nodes
    assert (tabby["name"], tabby["category"]) == ("tabby", "animal") and DOMESTIC_CAT in {
        b["wnid"] for b in tabby["broader"]
    }


def test_layer_table_has_the_label_category(site):
    out, analyses = site
    _, index = read_js(out / "data/mixed4d/index.js")
    cols = index["cols"]
    want = {"dog": "animal", "classes": "animal", "class": "artifact", None: "", "null": ""}
    assert cols["cat"] == [want[concept_kind(i)] for i in range(40)]
    assert [s is None for s in cols["score"]] == [c == "" for c in cols["cat"]]  # no label: no score
    assert [lab == "" for lab in cols["label"]] == [c == "" for c in cols["cat"]]
    assert cols["label"][10] == "dog · left" and cols["label"][5] == "dog"
    assert index["neurons"]["cat"] == [want[concept_kind(j)] for j in range(16)]
    summary = json.loads((analyses[1] / "summary.json").read_text())["labels"]["concepts"]
    assert index["labels"]["concepts"] == summary and summary["labelled"] == 16
    assert sum(summary["category_by_branch"]["animal"].values()) == summary["by_category"]["animal"] == 12
    _, f10 = read_js(out / "data/mixed4d/f/10.js")
    src = json.loads((analyses[1] / "features/10.json").read_text())
    assert f10["label_concept"] == src["label_concept"]


def test_folders_written_before_concept_labels_still_build(tmp_path):
    """An old layer beside a new one: the old one has empty categories and adds nothing to the concept pages."""
    old = make_analysis(tmp_path / "old", "mixed4a", 12, seed=5)
    new = make_analysis(tmp_path / "new", "mixed4b", 12, seed=6, concepts=True)
    out = build_site(SiteConfig(analyses=(old,), out=tmp_path / "s1")).out
    _, index = read_js(out / "data/mixed4a/index.js")
    assert index["cols"]["cat"] == [""] * 12 and index["cols"]["label"][0]
    assert "concepts" not in index["labels"]
    _, f0 = read_js(out / "data/mixed4a/f/0.js")
    assert "label_concept" not in f0
    assert not (out / "data/concepts.js").exists() and not (out / "data/concept").exists()
    assert read_js(out / "data/site.js")[1]["concepts"] == 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(concepts, "load_wordnet", lambda: FixtureHierarchy())
        out = build_site(SiteConfig(analyses=(old, new), out=tmp_path / "s2")).out
    _, index = read_js(out / "data/concepts.js")
    assert index["layers"] == ["mixed4a", "mixed4b"]
    assert all(set(n["layers"]) == {"mixed4b"} for n in index["nodes"])


def test_odd_node_ids_make_no_files(tmp_path):
    """`under` entries that could not name a data file (a path, a non-string) are left out."""
    a = make_analysis(tmp_path / "a", "mixed4c", 1, n_neurons=1, concepts=True)  # one dog feature, one dog neuron
    d = json.loads((a / "features/0.json").read_text())
    d["label_concept"]["under"] += ["../../escape", "", None, "n02084071"]
    dump(a / "features/0.json", d)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(concepts, "load_wordnet", lambda: None)
        out = build_site(SiteConfig(analyses=(a,), out=tmp_path / "site")).out
    assert not (tmp_path / "escape.js").exists() and not (out / "escape.js").exists()
    names = {p.name for p in (out / "data/concept").iterdir()}
    assert names == {f"{w}.js" for w in chain(DOG)}
    assert units(out, DOG)[0] == {("mixed4c", 0)}


def test_load_wordnet_never_raises():
    """Without the packaged hierarchy (or with a broken one) the site falls back on the label terms."""
    h = concepts.load_wordnet()
    assert h is None or h.name(DOG) == "dog"


def test_site_category_colours_are_the_analysis_figures_colours():
    """One palette: the analysis's UMAP figure and the site's map and chips colour a category alike."""
    import re
    from pathlib import Path

    from inception_sae.data.wordnet import CATEGORY_COLOURS, NO_LABEL_COLOUR

    js = (Path(__file__).parents[1] / "src/inception_sae/site/static/labels.js").read_text()
    block = js[js.index("SAE.CATEGORY_COLOURS = {") : js.index("};", js.index("SAE.CATEGORY_COLOURS = {"))]
    pairs = {k.strip(): v for k, v in re.findall(r"'?([a-z ]+)'?: '(#[0-9a-f]+)'", block)}
    assert pairs == CATEGORY_COLOURS
    assert f"SAE.NO_LABEL_COLOUR = '{NO_LABEL_COLOUR}'" in js
