"""site build: files, formats, image links, tolerance to missing optional keys, CLI behaviour."""

from __future__ import annotations

import json
import os

import pytest
from factories import run_cli
from factories.site import NEVER_TRAINED, dump, make_analysis, read_js, small_site_inputs

from inception_sae.errors import UserError
from inception_sae.site import SiteConfig, build_site
from inception_sae.site.inputs import read_circuits, read_featvis


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("site_build")
    inputs = small_site_inputs(root / "in")
    cfg = SiteConfig(
        analyses=inputs["analyses"], out=root / "site", featvis=inputs["featvis"], circuits=(inputs["circuits"],)
    )
    return build_site(cfg), inputs


def test_layout_and_report(built):
    result, _ = built
    site = result.out
    assert result.features == 80
    for p in ("index.html", "static/core.js", "static/app.css", "data/site.js", "data/mixed4d/index.js",
              "data/mixed4d/f/49.js", "data/mixed4c/n/15.js", "data/mixed4d/classes.js", "site.json"):  # fmt: skip
        assert (site / p).is_file(), p
    report = json.loads((site / "site.json").read_text())
    assert report["files"] == result.files and report["bytes"] == result.bytes > 0
    html = (site / "index.html").read_text()
    assert "http://" not in html and "https://" not in html  # offline: no CDN
    for js in (site / "static").iterdir():
        assert "https://" not in js.read_text(), js


def test_layer_index_columns(built):
    result, _ = built
    key, index = read_js(result.out / "data/mixed4d/index.js")
    assert key == "mixed4d/index"
    cols = index["cols"]
    assert cols["id"] == list(range(50))
    assert {len(v) for v in cols.values()} == {50}
    assert index["untrained"] is True and index["headline"]["fvu"] == pytest.approx(0.123)
    assert index["branches"] == ["1x1", "3x3", "5x5", "pool"]
    assert "none" in cols["dom"] and all(q is None or 0 <= q <= 1 for q in cols["q"])
    none = cols["dom"].index("none")  # a "none" feature shows its most significant branch's p and q
    assert cols["p"][none] is not None and cols["q"][none] == pytest.approx(min(1.0, 4 * cols["p"][none]), rel=0.01)
    assert index["branch_test"]["units"] == "channel RMS (fixture)"
    assert cols["thumb"][0].startswith("fv/mixed4d/f/0.png") and cols["thumb"][1].startswith("a/mixed4d/images/")
    for f in index["figures"]:
        assert (result.out / f).is_file()


def test_feature_data_points_at_files_that_exist(built):
    result, inputs = built
    _, d = read_js(result.out / "data/mixed4d/f/4.js")
    src = json.loads((inputs["analyses"][1] / "features/4.json").read_text())
    assert d["label"] == src["label"] and d["branch_p"] == src["branch_p"]
    assert d["featvis"] == ["fv/mixed4d/f/4.png", "fv/mixed4d/f/4_div0.png", "fv/mixed4d/f/4_div1.png"]
    pics = [e[k] for e in d["top_examples"] + d["intervals"] for k in ("crop", "heatmap") if e.get(k)]
    assert len(pics) >= 10
    for p in pics + d["featvis"]:
        assert (result.out / p).is_file(), p
    assert d["up"] and all(n["id"].startswith("mixed4c/f/") for n in d["up"])
    assert [abs(n["weight"]) for n in d["up"]] == sorted((abs(n["weight"]) for n in d["up"]), reverse=True)
    assert d["down"][0]["id"] == "class/5"


def test_training_position_examples_are_carried_with_their_files(built):
    """Both distributions' examples reach the feature page, their files rebased into the site; a layer without a
    known harvest rule has none."""
    result, inputs = built
    _, d = read_js(result.out / "data/mixed4d/f/4.js")
    src = json.loads((inputs["analyses"][1] / "features/4.json").read_text())
    t = d["training_examples"]
    assert [e["value"] for e in t["top_examples"]] == [e["value"] for e in src["training_examples"]["top_examples"]]
    assert t["counts"] == src["training_examples"]["counts"] and t["positions"].startswith("per image")
    pics = [e[k] for e in t["top_examples"] + t["intervals"] for k in ("crop", "heatmap") if e.get(k)]
    assert len(pics) >= 10 and all(p.startswith("a/mixed4d/images/") and (result.out / p).is_file() for p in pics)
    assert [e["at_training_position"] for e in d["top_examples"]] == [
        e["at_training_position"] for e in src["top_examples"]
    ]
    _, never = read_js(result.out / f"data/mixed4d/f/{NEVER_TRAINED}.js")
    assert never["training_examples"]["counts"]["images"] == 0 and never["training_examples"]["top_examples"] == []
    _, lower = read_js(result.out / "data/mixed4c/f/4.js")
    assert "training_examples" not in lower


def test_images_are_hard_links_not_copies(built):
    result, inputs = built
    src = inputs["analyses"][1] / "images/crops/c0.jpg"
    dst = result.out / "a/mixed4d/images/crops/c0.jpg"
    assert os.stat(src).st_ino == os.stat(dst).st_ino


def test_neuron_pages_list_their_features(built):
    result, _ = built
    found = [read_js(p)[1] for p in (result.out / "data/mixed4d/n").glob("*.js")]
    assert sum(len(n["similar_features"]) for n in found) == 50


def test_minimal_contract_folder_builds(tmp_path):
    """Only summary.json + features with the required keys of docs/formats.md: no neurons, branches, UMAP, images."""
    a = tmp_path / "a"
    dump(a / "summary.json", {"layer": "mixed5b"})
    for i in range(3):
        dump(a / "features" / f"{i}.json", {"id": i, "frequency": 0.01, "max": 2.0, "branch_share": {"1x1": 1.0},
             "branch_share_norm": {"1x1": 1.0}, "branch_share_sq": {"1x1": 1.0}, "branch_p": {"1x1": 0.5},
             "dominant_branch": "1x1", "similar_neuron": {"neuron": 0, "cosine": 0.5}, "label": "x",
             "label_score": float("nan"), "top_examples": [{"image": "a.jpg", "y": 0, "x": 0, "value": 1.0}],
             "intervals": [], "top_classes": [{"index": 1, "name": "tench", "weight": 0.3}]})  # fmt: skip
    result = build_site(SiteConfig(analyses=(a,), out=tmp_path / "site"))
    _, index = read_js(result.out / "data/mixed5b/index.js")
    assert index["cols"]["score"] == [None, None, None]  # NaN becomes null, never invalid JSON
    assert index["cols"]["x"] == [None] * 3 and index["classes"] is False
    assert (result.out / "data/mixed5b/n/0.js").is_file()  # stub page for the similar neuron


def test_rebuild_replaces_previous_site_and_refuses_foreign_folders(tmp_path):
    a = make_analysis(tmp_path / "a", "mixed4a", 5)
    site = tmp_path / "site"
    build_site(SiteConfig(analyses=(a,), out=site))
    (site / "data/mixed4a/f/stale.js").write_text("x")
    build_site(SiteConfig(analyses=(a,), out=site))
    assert not (site / "data/mixed4a/f/stale.js").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "precious.txt").write_text("keep")
    with pytest.raises(UserError, match="not empty"):
        build_site(SiteConfig(analyses=(a,), out=other))
    assert (other / "precious.txt").read_text() == "keep"


def test_bad_inputs_are_one_line_user_errors(tmp_path):
    a = make_analysis(tmp_path / "a", "mixed4a", 3)
    (a / "features/1.json").write_text("{broken")
    with pytest.raises(UserError, match=r"features/1\.json is not valid JSON"):
        build_site(SiteConfig(analyses=(a,), out=tmp_path / "s1"))
    with pytest.raises(UserError, match=r"summary\.json is missing"):
        build_site(SiteConfig(analyses=(tmp_path,), out=tmp_path / "s2"))
    b = make_analysis(tmp_path / "b", "mixed4a", 3)
    with pytest.raises(UserError, match="same layer"):
        build_site(SiteConfig(analyses=(b, b), out=tmp_path / "s3"))


def test_featvis_and_graph_readers(tmp_path):
    d = tmp_path / "fv" / "mixed4d" / "f"
    d.mkdir(parents=True)
    for name in ("7.png", "7_div10.png", "7_div2.png", "8_div0.png", "notes.txt"):
        (d / name).write_bytes(b"x")
    fv = read_featvis(tmp_path / "fv")
    assert fv[("mixed4d", "f", 7)] == ["mixed4d/f/7.png", "mixed4d/f/7_div2.png", "mixed4d/f/7_div10.png"]
    assert fv[("mixed4d", "f", 8)] == ["", "mixed4d/f/8_div0.png"]
    dump(tmp_path / "g" / "graph.json", {"nodes": [], "edges": [{"source": "a/f/1", "target": "b/f/2"}, {"oops": 1}]})
    with pytest.raises(UserError, match="malformed edge"):
        read_circuits(tmp_path / "g")
    with pytest.raises(UserError, match=r"neither graph\.json nor neighbours\.json"):
        read_circuits([tmp_path / "fv"])


def test_neighbours_json_and_graph_merge_without_duplicates(tmp_path):
    """The circuits stage's neighbours.json (all features) plus its graph.json (a subgraph, same edges again)."""
    nb = {"upstream": "mixed4a", "downstream": "mixed4b", "kind": "expanded", "features": {
        "mixed4b/f/0": {"upstream": [{"id": "mixed4a/f/1", "weight": 0.1}, {"id": "mixed4a/f/2", "weight": -0.3}]},
        "mixed4a/f/2": {"downstream": [{"id": "mixed4b/f/0", "weight": -0.3}]}}}  # fmt: skip
    dump(tmp_path / "c" / "neighbours.json", nb)
    edges = [{"source": "mixed4a/f/2", "target": "mixed4b/f/0", "weight": -0.3, "kind": "expanded"},
             {"source": "mixed4a/f/2", "target": "mixed4b/f/0", "weight": 0.5, "kind": "ablation"}]  # fmt: skip
    dump(tmp_path / "c" / "graph.json", {"nodes": [], "edges": edges})
    c = read_circuits([tmp_path / "c"], top=2)
    assert [(n["id"], n["kind"]) for n in c.up["mixed4b/f/0"]] == [
        ("mixed4a/f/2", "ablation"),
        ("mixed4a/f/2", "expanded"),
    ]
    assert [(n["id"], n["kind"]) for n in c.down["mixed4a/f/2"]] == [
        ("mixed4b/f/0", "ablation"),
        ("mixed4b/f/0", "expanded"),
    ]


def test_cli_build_and_errors(tmp_path):
    a = make_analysis(tmp_path / "a", "mixed4b", 4)
    r = run_cli("site", "build", "--analysis", str(a), "--out", str(tmp_path / "site"), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "4 features" in r.stdout and (tmp_path / "site/index.html").is_file()
    r = run_cli("site", "build", "--analysis", str(tmp_path / "missing"), "--out", str(tmp_path / "s2"))
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: analysis folder")


def test_headline_metrics_from_eval_report_and_sae_cfg(tmp_path):
    from inception_sae.analysis.metrics import headline_metrics, read_eval_report

    sae_cfg = {"k": 16, "layer": "mixed4a", "training": {"final_fvu": 0.2, "l0": 15.0, "dead_fraction": 0.1}}
    summary = {"layer": "mixed4a", "counts": {"features": 10, "dead": 2}}
    h = headline_metrics(summary, sae_cfg, {})
    assert (h["fvu"], h["l0"], h["dead_fraction"], h["k"], h["splice_top1"]) == (0.2, 15.0, None, 16, None)
    assert h["fvu_on"] == "training batches (recent mean)" and h["eval_report"] is None
    ev = {"splice": {"top1_agreement": 0.9, "kl": 0.01, "fvu": 0.3, "vectors": {"l0": 12.0}, "images": 7}}
    h = headline_metrics(summary, sae_cfg, ev, tmp_path / "eval.json")
    assert (h["fvu"], h["l0"], h["splice_top1"], h["splice_on"], h["splice_images"]) == (
        0.3, 12.0, 0.9, "every position", 7)  # fmt: skip
    ev["store"] = {"fvu": 0.25, "held_out": True, "l0": 14.0}
    h = headline_metrics(summary, sae_cfg, ev, tmp_path / "eval.json")
    assert (h["fvu"], h["fvu_on"], h["l0"]) == (0.25, "held-out store rows", 14.0)
    assert h["eval_report"] == str(tmp_path / "eval.json")
    # the report must be about an SAE of the analysed layer (named in it, or through its SAE's cfg.json)
    dump(tmp_path / "e4a.json", {"layer": "mixed4a", "splice": {"top1_agreement": 0.9}})
    assert read_eval_report(tmp_path / "e4a.json", "mixed4a", tmp_path)["splice"]["top1_agreement"] == 0.9
    with pytest.raises(UserError, match="about a mixed4a SAE"):
        read_eval_report(tmp_path / "e4a.json", "mixed4b", tmp_path)
    dump(tmp_path / "sae" / "cfg.json", {"k": 16, "layer": "mixed4a"})
    dump(tmp_path / "old.json", {"sae": str(tmp_path / "sae"), "splice": {"top1_agreement": 0.9}})
    with pytest.raises(UserError, match="about a mixed4a SAE"):
        read_eval_report(tmp_path / "old.json", "mixed4b", tmp_path)
    with pytest.raises(UserError, match="missing or not JSON"):
        read_eval_report(tmp_path / "nope.json", "mixed4a", tmp_path)


def test_site_headline_is_the_summary_metrics(tmp_path):
    """The dashboard reads one source per layer: summary.json's metrics, as analyze wrote them."""
    a = make_analysis(tmp_path / "a", "mixed4b", 4)
    summary = json.loads((a / "summary.json").read_text())
    summary["metrics"] = {"fvu": 0.123, "fvu_on": "held-out store rows", "splice_top1": 0.75}
    dump(a / "summary.json", summary)
    _, index = read_js(build_site(SiteConfig(analyses=(a,), out=tmp_path / "site")).out / "data/mixed4b/index.js")
    assert index["headline"] == summary["metrics"]
