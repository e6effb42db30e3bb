"""A planted circuit between two hand-made SAEs, and the measured effect of the 1x1 branch, for the circuits tests."""

from __future__ import annotations

import torch

from inception_sae.sae.view import SAETensors

from .sae import random_sae


def planted_pair(model, up_layer: str, down_layer: str, m: int = 64, k: int = 4, seed: int = 0):
    """Upstream SAE with features 5 and 17 always on; downstream feature 7 reads W_1x1 (d_5 + d_17), 1x1 slice only.

    Returns (up, down, (5, 17), 7).
    """
    up = random_sae(up_layer, model.layer_info(up_layer).channels, m, k, seed)
    down = random_sae(down_layer, model.layer_info(down_layer).channels, m, k, seed + 1)
    i1, i2, j = 5, 17, 7
    up.b_enc[[i1, i2]] = 50.0  # always in the TopK, with large activations
    w1 = getattr(model, down_layer).conv_1x1.conv.weight[:, :, 0, 0]  # (c1, d_a)
    e = torch.zeros(down.d)
    e[: w1.shape[0]] = w1 @ (up.W_dec[i1] + up.W_dec[i2])
    down.W_enc[:, j] = e / e.norm()
    down.W_dec[j] = e / e.norm()  # tied for this feature: encoder-read and decoder-read (Gorton's) weights agree
    down.b_enc[j] = 50.0  # fires everywhere, so every image has a site
    return up, down, (i1, i2), j


@torch.no_grad()
def injected_1x1_effect(model, chain, up: SAETensors, read: torch.Tensor, i: int, acts, eps: float = 1.0):
    """Measured change of the 1x1 branch's pre-ReLU output along ``read[:c1]`` per unit of ``d_i`` added at every
    position of ``acts``.

    A 1x1 conv is affine, so this equals the 1x1 weights by construction: a
    unit test of the weight code (not a validation of the method).
    """
    conv = getattr(model, chain.downstream).conv_1x1
    c1 = conv.conv.weight.shape[0]
    delta = conv.pre_relu(acts + eps * up.W_dec[i][None, :, None, None]) - conv.pre_relu(acts)
    return torch.einsum("c,nchw->nhw", read[:c1], delta) / eps
