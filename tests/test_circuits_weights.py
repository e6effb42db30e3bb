"""Weight-based circuits: the 1x1 weights vs injection, expanded weights vs finite differences, planted circuit,
chunking, validation against baselines."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from factories import make_images
from factories.circuits import injected_1x1_effect, planted_pair
from factories.sae import random_sae

from inception_sae.circuits.linearize import Linearised, linear_chain, make_chain
from inception_sae.circuits.validate import odds_ratio, rankdata, spearman
from inception_sae.circuits.weights import WeightCircuit, class_circuit, logit_weights
from inception_sae.errors import UserError


@pytest.fixture(scope="module")
def circuit_4b_4c(model):
    up = random_sae("mixed4b", 512, 48, 6, seed=1)
    down = random_sae("mixed4c", 512, 40, 6, seed=2)
    return WeightCircuit(model, Linearised(model, make_chain("mixed4b", "mixed4c")), up, down, chunk=16)


def test_chain_validation():
    assert make_chain("mixed3b", "mixed4a").stride == 2
    assert make_chain("maxpool1", "mixed3a").only_block
    assert not make_chain("conv2d2", "mixed3a").only_block  # LRN and a max pool lie between
    with pytest.raises(UserError, match="not consecutive"):
        make_chain("mixed4b", "mixed4d")
    with pytest.raises(UserError, match="inception block"):
        make_chain("mixed4e", "maxpool10")


def test_1x1_weights_equal_the_measured_pre_relu_injection(model):
    """Through the 1x1 branch the weights ARE the measured pre-ReLU effect of writing d_i, read along j's decoder
    row (Gorton's weight_1x1) or its encoder column (encoder_1x1); for an untied SAE the two differ."""
    up, down = random_sae("mixed4b", 512, 48, 6, seed=1), random_sae("mixed4c", 512, 40, 6, seed=2)
    down.W_dec[:] = torch.randn(down.W_dec.shape, generator=torch.Generator().manual_seed(7))  # untied
    c = WeightCircuit(model, Linearised(model, make_chain("mixed4b", "mixed4c")), up, down)
    acts = torch.rand(2, 512, 4, 4) * 2  # any activations: the 1x1 conv is affine
    for i, j in [(0, 0), (3, 11), (47, 39)]:
        for kind, read in (("weight_1x1", c.down.W_dec[j]), ("encoder_1x1", c.down.W_enc[:, j])):
            measured = injected_1x1_effect(model, c.lin.chain, c.up, read, i, acts, eps=0.5)
            weight = c.pair(i, j, kind)
            assert torch.allclose(measured, torch.full_like(measured, weight), atol=1e-4 * max(1, abs(weight)))
        assert c.pair(i, j, "weight_1x1") != pytest.approx(c.pair(i, j, "encoder_1x1"), rel=1e-2)


@pytest.mark.parametrize(
    "up_layer, down_layer", [("mixed4b", "mixed4c"), ("mixed3b", "mixed4a"), ("conv2d2", "mixed3a")]
)
def test_expanded_kernel_equals_finite_difference(model, up_layer, down_layer):
    """Autograd kernel of a random pair == brute-force finite differences of the linearised chain (with biases)."""
    chain = make_chain(up_layer, down_layer)
    lin = Linearised(model, chain)
    d_a, d_b = lin.d_in, lin.d_out
    up, down = random_sae(up_layer, d_a, 8, 2, 3), random_sae(down_layer, d_b, 8, 2, 4)
    circuit = WeightCircuit(model, lin, up, down)
    i, j = 5, 2
    S, c = lin.upstream_size, chain.grid // 2
    x0 = torch.rand(1, d_a, S, S)
    base = linear_chain(model, chain, x0, bias=True)[0, :, c, c] @ down.W_enc[:, j]
    pokes = x0.repeat(S * S, 1, 1, 1)
    for p in range(S * S):  # write d_i at one upstream position per batch item
        pokes[p, :, p // S, p % S] += up.W_dec[i]
    fd = (linear_chain(model, chain, pokes, bias=True)[:, :, c, c] @ down.W_enc[:, j] - base).reshape(S, S)
    autograd = torch.einsum("d,dhw->hw", up.W_dec[i], lin.kernels(down.W_enc[:, j].unsqueeze(0))[0])
    assert fd.abs().max() > 1e-3
    assert torch.allclose(autograd, fd, atol=1e-3 * float(fd.abs().max()))
    # the cropped kernel is the support of the full map, placed around the downstream unit's centre
    kernels, (cy, cx) = circuit.feature_kernels(j)
    h, w = kernels.shape[1:]
    y0, x0_ = chain.centre - cy, chain.centre - cx
    assert torch.allclose(kernels[i], autograd[y0 : y0 + h, x0_ : x0_ + w])
    assert float(autograd.abs().sum() - autograd[y0 : y0 + h, x0_ : x0_ + w].abs().sum()) == pytest.approx(0, abs=1e-6)
    assert (h, w) == ((5, 5) if chain.stride == 1 else (11, 11))
    assert circuit.pair(i, j) == pytest.approx(float(fd.sum()), rel=1e-3, abs=1e-4)


def test_summed_jacobian_matches_closed_form_and_autograd(model, circuit_4b_4c):
    """Summed Jacobian: 1x1 rows = W_1x1, 3x3 rows = (sum_hw W_3x3) W_bottleneck, pool rows = W_pool; = autograd sum."""
    block = model.mixed4c
    lin = circuit_4b_4c.lin
    M = lin.summed
    rows = torch.tensor([0, 130, 400, 500])  # one output channel per branch
    assert torch.allclose(lin.kernels(torch.eye(512)[rows]).sum((2, 3)), M[rows], atol=1e-5)
    w = lambda cr: cr.conv.weight.sum((2, 3))  # noqa: E731
    assert torch.allclose(M[:128], w(block.conv_1x1), atol=1e-5)
    assert torch.allclose(M[128:384], w(block.conv_3x3) @ w(block.conv_3x3_bottleneck), atol=1e-4)
    assert torch.allclose(M[384:448], w(block.conv_5x5) @ w(block.conv_5x5_bottleneck), atol=1e-4)
    assert torch.allclose(M[448:], w(block.conv_pool_reduce), atol=1e-5)


def test_neighbours_chunked_equal_dense(circuit_4b_4c):
    c = circuit_4b_4c
    dense = c.down.W_enc.T @ c.lin.summed @ c.up.W_dec.T  # (m_b, m_a), fine at this size
    nb = c.neighbours(top=5)  # chunk=16 < m_b = 40: exercises the running merge
    assert torch.equal(nb.up_index, dense.abs().topk(5, dim=1).indices)
    assert torch.equal(nb.down_index, dense.abs().topk(5, dim=0).indices.T)
    assert torch.allclose(nb.down_weight, dense.gather(0, nb.down_index.T).T)
    ups, downs, w = c.strongest_pairs(7)
    best = dense.flatten().topk(7)
    assert torch.allclose(w, best.values) and torch.equal(downs * c.up.m + ups, best.indices)


def test_planted_circuit_ranked_first_by_weights(model):
    up, down, planted, j = planted_pair(model, "mixed4b", "mixed4c")
    circuit = WeightCircuit(model, Linearised(model, make_chain("mixed4b", "mixed4c")), up, down)
    for kind in ("weight", "weight_1x1", "encoder_expanded", "encoder_1x1"):
        assert set(circuit.rows([j], kind)[0].topk(2).indices.tolist()) == set(planted)
    nb = circuit.neighbours(top=2)
    assert set(nb.up_index[j].tolist()) == set(planted)
    # j is read only in the 1x1 slice (and tied), so the expanded weight is exactly the 1x1 one, either reading
    assert circuit.pair(5, j, "weight") == pytest.approx(circuit.pair(5, j, "weight_1x1"), rel=1e-4)
    assert circuit.pair(5, j, "weight") == pytest.approx(circuit.pair(5, j, "encoder_expanded"), rel=1e-4)


def test_logit_weights_exact_and_class_circuit(model, tmp_path):
    import json

    from factories import make_sae

    from inception_sae.circuits.config import CircuitsConfig
    from inception_sae.circuits.run import run as run_circuits

    up, down = random_sae("mixed5a", 832, 16, 4, 5), random_sae("mixed5b", 1024, 24, 4, 6)
    W = logit_weights(model, down)
    i = 3
    uniform = down.W_dec[i][None, :, None, None].expand(1, 1024, 3, 3)
    delta = model.forward_from("mixed5b", 2 * uniform) - model.forward_from("mixed5b", torch.zeros_like(uniform))
    assert torch.allclose(delta[0], 2 * W[:, i], atol=1e-4)
    circuit = WeightCircuit(model, Linearised(model, make_chain("mixed5a", "mixed5b")), up, down)
    edges = class_circuit(model, circuit, [12], top_b=2, top_a=3)
    assert [e[3] for e in edges].count("logit") == 2 and [e[3] for e in edges].count("weight") == 6
    assert all(e[1] == "class/12" for e in edges if e[3] == "logit")
    assert edges[0][2] == pytest.approx(float(W[12].max()))
    # the stage: logits.json, class figure, class nodes in graph.json
    a, b = make_sae(tmp_path / "a", tensors=up), make_sae(tmp_path / "b", tensors=down)
    run_circuits(CircuitsConfig(upstream=a, downstream=b, out=tmp_path / "out", feature=1, classes=(12,), top=3), model)
    assert (tmp_path / "out" / "class_12.png").is_file() and (tmp_path / "out" / "class_12.svg").is_file()
    logits = json.loads((tmp_path / "out" / "logits.json").read_text())["mixed5b/f/1"]
    assert logits["top"][0]["weight"] == pytest.approx(float(W[1:1001, 1].max()), rel=1e-5)
    graph = json.loads((tmp_path / "out" / "graph.json").read_text())
    assert any(n["id"] == "class/12" and n["class"] == 12 for n in graph["nodes"])


def test_odds_ratio_by_hand():
    r, lo, hi = odds_ratio(9, 1, 1, 9)  # (9.5 * 9.5) / (1.5 * 1.5)
    assert r == pytest.approx(9.5**2 / 1.5**2) and lo < r < hi


def test_spearman_and_ranks():
    assert rankdata(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))


@pytest.mark.parametrize(
    "up_layer, down_layer, size", [("mixed4b", "mixed4c", 5), ("mixed3b", "mixed4a", 9), ("mixed3b", "mixed4a", 10)]
)
def test_kernel_prediction_is_the_linearised_ablation(model, up_layer, down_layer, size):
    """Kernel (*) activation map at a site == linearised chain run on the real map with the feature removed."""
    from inception_sae.circuits.attribution import Sites, feature_maps
    from inception_sae.circuits.methods import kernel_prediction

    chain = make_chain(up_layer, down_layer)
    lin = Linearised(model, chain)
    up, down = random_sae(up_layer, lin.d_in, 16, 4, 7), random_sae(down_layer, lin.d_out, 8, 2, 8)
    circuit = WeightCircuit(model, lin, up, down)
    acts = torch.rand(2, lin.d_in, size, size)
    out_size = (size + chain.stride - 1) // chain.stride
    # corners exercise the padding; with an even upstream size the stride-2 pool pads only after, so the
    # block's zero padding above/left of the map is not "zero input" there: exact only 2 rows/cols inside
    pos = torch.tensor([[2, out_size - 1], [3, 2]]) if size % 2 == 0 else torch.tensor([[0, out_size - 1], [2, 0]])
    j = 3
    sites = Sites(j, acts, pos, torch.ones(2), [0, 1])
    z = feature_maps(up, acts)
    ups = torch.nonzero(z.amax((0, 2, 3)) > 0).flatten().tolist()[:5]
    pred, window, shuffled = kernel_prediction(circuit, j, sites, z, ups)
    assert bool((window >= 0).all()) and not torch.allclose(pred, shuffled)  # baselines on the same windows
    base = linear_chain(model, chain, acts)
    for k, i in enumerate(ups):
        ablated = linear_chain(model, chain, acts - z[:, i : i + 1] * up.W_dec[i][None, :, None, None])
        diff = (base - ablated)[torch.arange(2), :, pos[:, 0], pos[:, 1]] @ down.W_enc[:, j]
        assert float(pred[k]) == pytest.approx(float(diff.mean()), rel=1e-3, abs=1e-5)


def test_pair_table_reports_the_per_feature_spearman_that_pooling_flatters():
    """Within each feature the method is noise, but feature scale differs by 100x: pooled rho is high, median ~0."""
    from inception_sae.circuits.methods import BASELINES, METHODS, PairTable

    rng = np.random.default_rng(0)
    methods = tuple(m for m in METHODS if not m.endswith("_1x1"))  # a max pool between: no 1x1 columns
    table = PairTable(methods)
    for j, scale in enumerate([1.0, 100.0, 1.0, 100.0]):
        cols = {m: torch.tensor(rng.random(30) * scale) for m in (*methods, *BASELINES, "ablation")}
        table.extend(j, list(range(30)), cols)
    s = table.summary()
    assert s["spearman_vs_ablation_pooled"]["weight"] > 0.6
    assert abs(s["spearman_vs_ablation"]["weight"]) < 0.35
    assert s["validation"]["weight"]["features"] == 4
    assert "weight_1x1" not in s["spearman_vs_ablation"] and "weight_1x1" not in table.to_dict()


def test_validation_says_which_method_beats_the_weight_free_baseline():
    """Planted: one method tracks the ablation within every feature, another is the activation baseline plus noise,
    and the activation baseline itself is a weak predictor; verdicts and intervals must say so."""
    from inception_sae.circuits.methods import BASELINES, METHODS, PairTable, verdict

    rng = np.random.default_rng(1)
    methods = tuple(m for m in METHODS if not m.endswith("_1x1"))
    table = PairTable(methods)
    for j in range(30):
        abl = rng.normal(size=40)
        act = abl + 2.0 * rng.normal(size=40)  # weak, weight-free predictor
        cols = {m: torch.tensor(act + 0.01 * rng.normal(size=40)) for m in (*methods, *BASELINES)}
        cols["weight"] = torch.tensor(abl + 0.3 * rng.normal(size=40))  # a method with real information
        cols["activation"], cols["ablation"] = torch.tensor(act), torch.tensor(abl)
        table.extend(j, list(range(40)), cols)
    v = table.summary()["validation"]
    assert v["weight"]["beats_activation_baseline"] is True and v["weight"]["median"] > 0.9
    assert v["encoder_expanded"]["beats_activation_baseline"] is False  # the baseline in disguise
    lo, hi = v["weight"]["ci95"]
    assert lo <= v["weight"]["median"] <= hi and hi - lo < 0.1
    assert abs(v["weight"]["shuffled"]["median"]) < 0.15  # its values shuffled across candidates: no signal
    assert 0.2 < v["activation"]["median"] < 0.6
    assert "not independent" in verdict("attribution", v["attribution"])
    assert "beats the activation baseline: yes" in verdict("weight", v["weight"])


def test_circuits_read_the_analysis_labels_or_compute_them_by_the_same_rule(tmp_path, model):
    """With the layer's analysis folder circuits show its labels; without one, the same rule on their images."""
    from inception_sae.analysis import branches as br
    from inception_sae.circuits.config import CircuitsConfig
    from inception_sae.circuits.run import branch_labels
    from inception_sae.circuits.saes import layer_rms
    from inception_sae.data.images import ImageDataset, Preprocess
    from inception_sae.models.layers import layer_info

    info = layer_info("mixed4c")
    sae = random_sae("mixed4c", info.channels, 80, 4, 2)
    a, b = info.branch("5x5").slice
    sae.W_dec[:10] = sae.W_dec[:10].abs() * 0.05
    sae.W_dec[:10, a:b] = 1.0  # ten clearly 5x5 features
    imgs = tmp_path / "imgs"
    make_images(imgs, 4, size=(72, 72))
    ds = ImageDataset.from_path(imgs, Preprocess(resize=73, crop=64))
    cfg = CircuitsConfig(upstream=tmp_path, downstream=tmp_path, out=tmp_path / "out", input_size=64)
    labels, source = branch_labels(cfg, {}, model, ds, sae)
    rms = layer_rms(model, ds, ["mixed4c"], 2)["mixed4c"]
    assert labels["mixed4c"] == br.dominant_branches(sae.W_dec, "mixed4c", rms)
    assert labels["mixed4c"][:10] == ["5x5"] * 10 and "images" in source["mixed4c"]
    (tmp_path / "ana" / "features").mkdir(parents=True)
    for i in range(80):
        (tmp_path / "ana" / "features" / f"{i}.json").write_text(json.dumps({"dominant_branch": "pool"}))
    read, source = branch_labels(cfg, {"mixed4c": tmp_path / "ana"}, model, ds, sae)
    assert read["mixed4c"] == ["pool"] * 80 and "features" in source["mixed4c"]  # read, never recomputed


def test_circuits_images_at_the_sae_folders_harvest_preprocessing(tmp_path):
    """Without --input-size the upstream SAE's recorded harvest preprocessing is used; none recorded: refused."""
    from factories import make_sae

    from inception_sae.circuits.config import CircuitsConfig
    from inception_sae.circuits.run import image_preprocess

    folder = make_sae(tmp_path / "up", tensors=random_sae("mixed4b", 512, 8, 2, 0))
    cfg = CircuitsConfig(upstream=folder, downstream=folder, out=tmp_path / "out", images=tmp_path)
    with pytest.raises(UserError, match="--input-size"):
        image_preprocess(cfg)
    recorded = {"rule": None, "rule_reason": "test", "preprocess": {"resize": 80, "crop": 64}}
    make_sae(folder, tensors=random_sae("mixed4b", 512, 8, 2, 0), data=recorded)  # the same SAE, its harvest known
    pre = image_preprocess(cfg)
    assert (pre.resize, pre.crop) == (80, 64)
    explicit = image_preprocess(
        CircuitsConfig(upstream=folder, downstream=folder, out=tmp_path / "out", images=tmp_path, input_size=96)
    )
    assert (explicit.resize, explicit.crop) == (110, 96)
