"""Weight-based circuits: exactness, expanded weights vs finite differences, planted circuit, chunking."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from circuits_helpers import planted_pair, random_sae

from inception_sae.circuits.linearize import Linearised, linear_chain, make_chain
from inception_sae.circuits.validate import branch_consistency, inject_1x1, rankdata, spearman
from inception_sae.circuits.weights import WeightCircuit, class_circuit, logit_weights
from inception_sae.errors import UserError


@pytest.fixture(scope="module")
def circuit_4b_4c(model):
    up = random_sae("mixed4b", 512, 48, 6, seed=1)
    down = random_sae("mixed4c", 512, 40, 6, seed=2)
    return WeightCircuit(model, Linearised(model, make_chain("mixed4b", "mixed4c")), up, down, chunk=16)


def test_chain_validation():
    assert make_chain("mixed3b", "mixed4a").stride == 2
    assert make_chain("maxpool1", "mixed3a").exact_1x1
    assert not make_chain("conv2d2", "mixed3a").exact_1x1  # LRN and a max pool lie between
    with pytest.raises(UserError, match="not consecutive"):
        make_chain("mixed4b", "mixed4d")
    with pytest.raises(UserError, match="inception block"):
        make_chain("mixed4e", "maxpool10")


def test_exact_1x1_equals_measured_injection(model, circuit_4b_4c):
    """Through the 1x1 branch the weight IS the measured pre-ReLU effect of writing d_i."""
    c = circuit_4b_4c
    acts = torch.rand(2, 512, 4, 4) * 2  # any activations: the 1x1 conv is affine
    for i, j in [(0, 0), (3, 11), (47, 39)]:
        measured = inject_1x1(model, c.lin.chain, c.up, c.down, i, j, acts, eps=0.5)
        weight = c.pair(i, j, "exact_1x1")
        assert torch.allclose(measured, torch.full_like(measured, weight), atol=1e-4 * max(1, abs(weight)))


@pytest.mark.parametrize("up_layer, down_layer", [("mixed4b", "mixed4c"), ("mixed3b", "mixed4a")])
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
    for kind in ("exact_1x1", "expanded"):
        assert set(circuit.rows([j], kind)[0].topk(2).indices.tolist()) == set(planted)
    nb = circuit.neighbours(top=2)
    assert set(nb.up_index[j].tolist()) == set(planted)
    # the encoder row reads only the 1x1 slice, so the expanded weight is exactly the 1x1 one
    assert circuit.pair(5, j, "expanded") == pytest.approx(circuit.pair(5, j, "exact_1x1"), rel=1e-4)


def test_logit_weights_exact_and_class_circuit(model):
    up, down = random_sae("mixed5a", 832, 16, 4, 5), random_sae("mixed5b", 1024, 24, 4, 6)
    W = logit_weights(model, down)
    i = 3
    uniform = down.W_dec[i][None, :, None, None].expand(1, 1024, 3, 3)
    delta = model.forward_from("mixed5b", 2 * uniform) - model.forward_from("mixed5b", torch.zeros_like(uniform))
    assert torch.allclose(delta[0], 2 * W[:, i], atol=1e-4)
    circuit = WeightCircuit(model, Linearised(model, make_chain("mixed5a", "mixed5b")), up, down)
    edges = class_circuit(model, circuit, [12], top_b=2, top_a=3)
    assert [e[3] for e in edges].count("logit") == 2 and [e[3] for e in edges].count("expanded") == 6
    assert all(e[1] == "class/12" for e in edges if e[3] == "logit")


def test_branch_consistency_detects_planted_agreement():
    def branchy(layer, d, slices, seed):
        sae = random_sae(layer, d, len(slices), 1, seed)
        for f, (a, b) in enumerate(slices):
            mask = torch.zeros(d)
            mask[a:b] = 1
            sae.W_dec[f] = sae.W_dec[f].abs() * mask
        return sae

    slices_4b = [(0, 160), (160, 384), (384, 448), (448, 512)] * 10  # 1x1, 3x3, 5x5, pool
    slices_4c = [(0, 128), (128, 384), (384, 448), (448, 512)] * 10
    up, down = branchy("mixed4b", 512, slices_4b, 1), branchy("mixed4c", 512, slices_4c, 2)
    pairs = torch.arange(40)
    same = branch_consistency(up, down, pairs, pairs, permutations=500)
    assert same.agreement == 1.0 and same.p_value < 0.01 and 0.15 < same.null_mean < 0.35
    shuffled = branch_consistency(up, down, pairs, (pairs + 1) % 40, permutations=500)
    assert shuffled.agreement == 0.0 and shuffled.p_value > 0.5


def test_spearman_and_ranks():
    assert rankdata(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))
