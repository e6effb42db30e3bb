"""Hand-made SAEs for the circuits tests (random or with a planted circuit)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from inception_sae.sae.view import SAETensors


def random_sae(layer: str, d: int, m: int, k: int, seed: int) -> SAETensors:
    """Unit-norm random decoder rows, encoder = decoder^T, zero biases."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(m, d, generator=g)
    W /= W.norm(dim=1, keepdim=True)
    return SAETensors(W.T.contiguous(), W, torch.zeros(m), torch.zeros(d), k, layer)


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


def write_sae(sae: SAETensors, folder: Path) -> Path:
    """A hand-made SAE folder in the format of docs/formats.md, "SAE folder"."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"d_in": sae.d, "d_sae": sae.m, "k": sae.k, "layer": sae.layer, "model": "random:0", "architecture": "topk"}
    cfg |= {"dtype": "float32", "device": "cpu", "apply_b_dec_to_input": True, "normalize_activations": "none"}
    (folder / "cfg.json").write_text(json.dumps(cfg))
    tensors = {n: getattr(sae, n).contiguous() for n in ("W_enc", "W_dec", "b_enc", "b_dec")}
    save_file(tensors, str(folder / "sae_weights.safetensors"))
    return folder


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
