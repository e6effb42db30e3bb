"""Bozoukov's ablation recipe (circuits/recipe.py) against a planted truth."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from factories import make_images
from factories.sae import random_sae

from inception_sae.circuits.graph import CircuitGraph
from inception_sae.circuits.linearize import exact_chain, make_chain
from inception_sae.circuits.recipe import ablation_recipe, recipe_graph, upstream_sites
from inception_sae.data.images import ImageDataset, Preprocess, iter_batches

UP, DEAD, J, J_NEG = 3, 9, 7, 11  #: planted upstream feature, a never-firing one, planted downstream pair


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recipe_images") / "imgs"
    make_images(folder, 4, size=(64, 64))
    return ImageDataset.from_folder(folder, Preprocess(resize=64, crop=64))  # mixed4b and mixed4c maps are 4x4


@pytest.fixture(scope="module")
def chain():
    return make_chain("mixed4b", "mixed4c")


def direct_change(model, chain, acts, y: int, x: int):
    """``out - out_ablated`` for one (1, d, H, W) map with the vector at (y, x) zeroed, straight from exact_chain."""
    ablated = acts.clone()
    ablated[0, :, y, x] = 0
    return (exact_chain(model, chain, acts) - exact_chain(model, chain, ablated))[0]


@pytest.fixture(scope="module")
def planted(model, chain, dataset):
    """Upstream feature UP reads the largest-norm mixed4b vector (so peaks there); DEAD never fires;
    downstream decoder row J is the change that ablating that vector makes at the most-changed position, J_NEG its
    negative. Returns (up, down, acts, (image, y, x), (y', x'))."""
    x, _ = next(iter_batches(dataset, 16))
    acts = model.run(x, ["mixed4b"])["mixed4b"]
    b, rest = divmod(int(acts.norm(dim=1).flatten().argmax()), 16)
    y, xx = divmod(rest, 4)
    v = acts[b, :, y, xx]
    up = random_sae("mixed4b", 512, 64, 4, 0)
    up.W_enc[:, UP] = v / v.norm()  # UP's pre-activation is v' . v / |v| + 5: largest at v itself
    up.b_enc[UP] = 5.0
    up.b_enc[DEAD] = -1e4
    change = direct_change(model, chain, acts[[b]], y, xx)
    py, px = divmod(int(change.norm(dim=0).flatten().argmax()), change.shape[-1])
    d = change[:, py, px] / change[:, py, px].norm()
    down = random_sae("mixed4c", 512, 64, 4, 1)
    down.W_dec[J], down.W_dec[J_NEG] = d, -d
    return up, down, acts, (b, y, xx), (py, px)


def test_planted_direction_ranked_first_at_the_ablated_position(model, chain, dataset, planted):
    up, down, _, (b, y, x), (py, px) = planted
    (sites,) = upstream_sites(model, chain, up, [UP], dataset, max_sites=1)
    assert sites.images == [b] and sites.pos.tolist() == [[y, x]] and float(sites.value[0]) > 5
    res = ablation_recipe(model, chain, up, down, sites, top=3)
    # no pool between mixed4b and mixed4c: the most-changed position lies over the ablated one
    assert res.down_pos.tolist() == [[py, px]] == [[y, x]]
    indices, values = res.ranking()
    assert int(indices[0]) == J and float(values[0]) > 0.95
    # out - ablated is the upstream vector's contribution: the opposite direction ranks last
    assert int(res.mean_cosine.argmin()) == J_NEG and float(res.mean_cosine[J_NEG]) < -0.95
    assert res.edges()[0] == (up.node(UP), down.node(J), pytest.approx(float(values[0])), "recipe")


def test_change_vector_is_out_minus_ablated_and_cosines_average_in_full(model, chain, dataset, planted):
    up, down, *_ = planted
    (sites,) = upstream_sites(model, chain, up, [UP], dataset, max_sites=4)
    assert len(sites.images) == 4 and sorted(sites.images) == [0, 1, 2, 3]
    res = ablation_recipe(model, chain, up, down, sites, top=2, batch_size=3)  # batches of 3 and 1
    for s in range(4):
        y, x = sites.pos[s].tolist()
        change = direct_change(model, chain, sites.acts[[s]], y, x)
        norms = change.norm(dim=0)
        py, px = res.down_pos[s].tolist()
        assert torch.allclose(res.change[s], change[:, py, px], atol=1e-5)
        assert float(res.change_norm[s]) == pytest.approx(float(norms.max()), rel=1e-5)
        assert float(norms[py, px]) == pytest.approx(float(norms.max()), rel=1e-5)
        cos = F.cosine_similarity(change[:, py, px][None], down.W_dec, dim=1)
        assert torch.allclose(res.cosine[s], cos, atol=1e-5)
    # the mean is over the full per-site cosine vectors, not over per-site top lists
    assert torch.allclose(res.mean_cosine, res.cosine.mean(0))
    in_a_top = set(res.cosine.topk(2, dim=1).indices.flatten().tolist())
    outside = [j for j in range(down.m) if j not in in_a_top]
    assert (res.mean_cosine[outside] != 0).all()


def test_graph_edges_summary_and_a_feature_that_never_fires(model, chain, dataset, planted):
    up, down, *_ = planted
    found = upstream_sites(model, chain, up, [DEAD, UP], dataset, max_sites=2)
    assert [s.feature for s in found] == [UP]
    edges, summary = recipe_graph(model, chain, up, down, dataset, [UP, DEAD], max_sites=2, top=4)
    assert len(edges) == 4
    for src, dst, w, kind in edges:
        assert src == up.node(UP) and dst.startswith("mixed4c/f/") and isinstance(w, float) and kind == "recipe"
    weights = [e[2] for e in edges]
    assert weights == sorted(weights, reverse=True) and edges[0][1] == down.node(J)
    graph = CircuitGraph()
    graph.add_edges(edges)
    assert graph.nodes[up.node(UP)]["layer"] == "mixed4b" and graph.nodes[down.node(J)]["feature"] == J
    assert {e["kind"] for e in graph.to_dict()["edges"]} == {"recipe"}
    summary = json.loads(json.dumps(summary))  # JSON-safe
    assert set(summary["skipped"]) == {up.node(DEAD)} and set(summary["features"]) == {up.node(UP)}
    record = summary["features"][up.node(UP)]
    assert record["feature"] == UP and len(record["sites"]) == 2
    site = record["sites"][0]
    assert set(site) == {"image", "image_id", "up_pos", "activation", "down_pos", "change_norm", "top"}
    assert site["image_id"].endswith(".jpg") and len(site["top"]) == 4
    assert [t["id"] for t in record["top"]] == [e[1] for e in edges]
    assert summary["upstream"] == "mixed4b" and summary["downstream"] == "mixed4c" and summary["caveats"]
