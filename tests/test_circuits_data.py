"""Data-based circuits (attribution, ablation), the stage end to end, and trained SAEs."""

from __future__ import annotations

import json

import pytest
import torch
from factories import make_images, make_sae, run_cli
from factories.circuits import planted_pair
from factories.sae import random_sae

from inception_sae.circuits.attribution import ablation_effects, find_sites, gradient_x_activation
from inception_sae.circuits.linearize import Linearised, make_chain
from inception_sae.circuits.methods import compare_feature
from inception_sae.circuits.weights import WeightCircuit
from inception_sae.data.images import ImageDataset, Preprocess
from inception_sae.sae.model import load_layer_sae


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("circuit_images") / "imgs"
    make_images(folder, 4, size=(64, 64))
    return folder


@pytest.fixture(scope="module")
def small_dataset(images):
    return ImageDataset.from_folder(images, Preprocess(resize=64, crop=64))  # mixed4* maps are 4x4


def test_planted_circuit_ranked_first_by_attribution_and_ablation(model, small_dataset):
    up, down, planted, j = planted_pair(model, "mixed4b", "mixed4c")
    chain = make_chain("mixed4b", "mixed4c")
    circuit = WeightCircuit(model, Linearised(model, chain), up, down)
    (sites,) = find_sites(model, chain, down, [j], small_dataset, max_sites=3)
    assert len(sites.images) == 3 and (sites.value > 0).all()
    ups, cols, attr = compare_feature(circuit, sites, max_candidates=up.m)
    for method in ("attribution", "ablation", "weight", "encoder_expanded", "kernel_prediction"):
        top2 = {ups[k] for k in cols[method].topk(2).indices.tolist()}
        assert top2 == set(planted), method
    # gradient x activation is complete: features + SAE error + b_dec add up to sum(A . grad)
    parts = attr.per_image.sum(1) + attr.error + attr.bias
    assert torch.allclose(parts, attr.total, atol=1e-4 * float(attr.total.abs().max()))


def test_ablation_of_inactive_feature_is_zero_and_batching_is_invariant(model, small_dataset):
    up, down = random_sae("mixed4b", 512, 32, 4, 3), random_sae("mixed4c", 512, 32, 4, 4)
    chain = make_chain("mixed4b", "mixed4c")
    sites = find_sites(model, chain, down, list(range(32)), small_dataset, max_sites=2)[0]  # a feature that fires
    cands = list(range(12))
    a = ablation_effects(model, chain, up, down, sites, cands, batch_size=1)
    b = ablation_effects(model, chain, up, down, sites, cands, batch_size=64)
    assert torch.allclose(a, b, atol=1e-5)
    attr = gradient_x_activation(model, chain, up, down, sites)
    inactive = (attr.per_image == 0).all(0)[cands]
    assert (a[inactive] == 0).all()


def test_load_sae_matches_topk_sae(tmp_path):
    from inception_sae import TopKSAE

    sae = random_sae("mixed4c", 512, 40, 5, 9)
    sae.b_enc.normal_(0, 0.1)
    sae.b_dec.normal_(0, 0.1)
    folder = make_sae(tmp_path / "sae", tensors=sae)
    view, ref = load_layer_sae(folder).frozen(folder), TopKSAE.load(folder)
    v = torch.rand(7, 512)
    (va, ia), (vb, ib) = view.encode(v), ref.encode(v)
    dense_a = torch.zeros(7, 40).scatter_(1, ia, va)
    dense_b = torch.zeros(7, 40).scatter_(1, ib.long(), vb.detach())
    assert torch.allclose(dense_a, dense_b, atol=1e-5) and view.layer == "mixed4c"


def test_cli_end_to_end(model, tmp_path, images):
    up, down, _, j = planted_pair(model, "mixed4b", "mixed4c", m=48)
    w1 = model.mixed4c.conv_1x1.conv.weight[:, :, 0, 0]
    planted_weight = float(down.W_enc[:128, j] @ w1 @ up.W_dec[5])
    a, b = make_sae(tmp_path / "a", tensors=up), make_sae(tmp_path / "b", tensors=down)
    out = tmp_path / "out"
    (tmp_path / "ana" / "features").mkdir(parents=True)  # an analysis folder (analysis branch format) for labels
    (tmp_path / "ana" / "features" / "5.json").write_text(json.dumps({"id": 5, "layer": "mixed4b", "label": "ears"}))
    args = ["circuits", "--upstream", str(a), "--downstream", str(b), "--out", str(out), "--feature", str(j)]
    args += ["--images", str(images), "--input-size", "64", "--compare-features", "2", "--weights", "random"]
    r = run_cli(*args, "--analysis", str(tmp_path / "ana"))
    assert r.returncode == 0
    graph = json.loads((out / "graph.json").read_text())
    ids = {n["id"] for n in graph["nodes"]}
    assert f"mixed4c/f/{j}" in ids and "mixed4b/error" in ids
    node = next(n for n in graph["nodes"] if n["id"] == "mixed4b/f/5")
    assert node["layer"] == "mixed4b" and node["feature"] == 5
    assert node["branch"] in ("1x1", "3x3", "5x5", "pool", "none")
    assert node["label"] == "ears"
    kinds = {e["kind"] for e in graph["edges"]}
    assert {"weight_1x1", "weight", "attribution", "ablation", "recipe"} <= kinds  # Bozoukov's recipe beside
    first = [e for e in graph["edges"] if e["target"] == f"mixed4c/f/{j}" and e["kind"] == "weight"][:2]
    assert {e["source"] for e in first} == {"mixed4b/f/5", "mixed4b/f/17"}
    nb = json.loads((out / "neighbours.json").read_text())["features"]
    assert len(nb) == 48 + 48 and {x["id"] for x in nb[f"mixed4c/f/{j}"]["upstream"][:2]} == {
        "mixed4b/f/5",
        "mixed4b/f/17",
    }
    kern = json.loads((out / "kernels.json").read_text())
    assert kern["downstream"] == f"mixed4c/f/{j}" and kern["centre"] == [0, 0]
    assert kern["kernels"]["mixed4b/f/5"] == [[pytest.approx(planted_weight, rel=1e-4)]]  # 1x1 path only: one tap
    val = json.loads((out / "validation.json").read_text())
    assert val["weight_1x1"].startswith("computed") and "exact_1x1" not in val
    bc = val["branch_consistency"]
    assert bc["pairs"] == 48 and set(bc["per_branch"]) <= {"1x1", "3x3", "5x5", "pool"}
    src = bc["label_source"]  # mixed4b: read from its analysis folder; mixed4c: the same rule on the images
    assert "features" in src["mixed4b"] and "images" in src["mixed4c"]
    recipe = json.loads((out / "recipe.json").read_text())
    assert set(val["recipe"]["focus_rank_in_recipe_top"]) <= set(recipe["features"]) | set(recipe["skipped"])
    assert val["recipe"]["upstream_features"][:2] in ([5, 17], [17, 5])  # the focus's top partners by weight
    for name in (f"graph_mixed4c_{j}.png", f"graph_mixed4c_{j}.svg", f"graph_mixed4c_{j}_data.png", "agreement.png"):
        assert (out / name).stat().st_size > 1000, name
    # bad input: one line, exit 2
    r = run_cli("circuits", "--upstream", str(a), "--downstream", str(a), "--out", str(out))
    assert r.returncode == 2


@pytest.mark.slow
def test_rank_correlation_figure_on_trained_saes(model, tmp_path, sample_dir):
    """Two tiny SAEs trained with the package's trainer on real photos; methods compared against ablation."""
    import numpy as np

    from inception_sae.circuits.config import CircuitsConfig
    from inception_sae.circuits.run import run as run_circuits
    from inception_sae.data.images import iter_batches
    from inception_sae.data.source import ArraySource
    from inception_sae.sae.model import SAEConfig
    from inception_sae.sae.train import TrainConfig, train

    photos = tmp_path / "photos"
    photos.mkdir()
    for f in sorted(sample_dir.glob("*.jpg"))[:8]:
        (photos / f.name).symlink_to(f)
    ds = ImageDataset.from_path(photos, Preprocess(resize=64, crop=64))
    x, _ = next(iter_batches(ds, 8))
    acts = model.capture(x, ["mixed4b", "mixed4c"])
    folders = []
    for layer, a in acts.items():
        v = a.permute(0, 2, 3, 1).reshape(-1, a.shape[1]).numpy()  # (128, d)
        cfg = TrainConfig(samples=1536, batch_size=128, progress=False, init_samples=len(v))
        meta = {"layer": layer, "model": model.identity}
        folders += train(ArraySource(v, 128), [SAEConfig(v.shape[1], 64, 4)], cfg, tmp_path / layer, meta).paths
    cfg = CircuitsConfig(
        upstream=folders[0],
        downstream=folders[1],
        out=tmp_path / "circ",
        images=photos,
        input_size=64,
        compare_features=2,
        sites=3,
        candidates=24,
        weights="random",
    )
    v = run_circuits(cfg, model).validation
    assert (tmp_path / "circ" / "agreement.png").stat().st_size > 5000
    assert v["pairs"] >= 10 and all(np.isfinite(list(v["spearman_vs_ablation"].values())))
    assert v["validation"]["attribution"]["features"] == 2 and "verdicts" in v
    assert set(v["spearman_vs_ablation_pooled"]) == set(v["spearman_vs_ablation"]) >= {"weight_1x1", "weight"}
    assert v["spearman_vs_ablation"]["attribution"] > 0.3  # first-order effect tracks the measured one
