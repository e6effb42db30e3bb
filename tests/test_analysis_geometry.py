"""Receptive-field boxes of example crops match inception5h.md; rendering writes small images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from inception_sae.analysis.render import rf_boxes, save_crop, save_heatmap, thumb_base, to_uint8, upsample_matrix
from inception_sae.models.layers import layer_info


def side(box):
    top, left, bottom, right = box
    return bottom - top, right - left


def test_mixed4d_centre_unit_rf_is_363_clipped():
    info = layer_info("mixed4d", 224)
    boxes = rf_boxes(info, 7, 7)
    assert boxes["layer"] == [0, 0, 224, 224]  # 363 > 224: clipped to the whole image
    unclipped = layer_info("mixed4d", 512)
    c = unclipped.size // 2
    assert side(unclipped.rf_box(c, c)) == (363, 363)


def test_mixed3a_branch_rfs():
    info = layer_info("mixed3a", 224)
    boxes = rf_boxes(info, 14, 14)
    assert {b: side(boxes[b]) for b in ("1x1", "3x3", "5x5", "pool")} == {
        "1x1": (27, 27), "3x3": (43, 43), "5x5": (59, 59), "pool": (43, 43),
    }  # fmt: skip
    assert boxes["layer"] == boxes["5x5"]
    corner = rf_boxes(info, 0, 0)["5x5"]
    assert corner[:2] == [0, 0] and side(corner)[0] < 59  # clipped at the image border


def test_crop_and_heatmap_files(tmp_path):
    img = torch.rand(3, 64, 64)
    save_crop(to_uint8(img), (0, 10, 30, 50), tmp_path / "c.jpg")
    assert Image.open(tmp_path / "c.jpg").size == (40, 30)
    save_heatmap(thumb_base(img), torch.rand(4, 4), 1.0, tmp_path / "h.jpg")
    assert Image.open(tmp_path / "h.jpg").size == (112, 112)
    A = upsample_matrix(4, 112)
    assert np.allclose(A.sum(1), 1) and np.allclose(A @ np.ones((4, 4)) @ A.T, 1)


def test_nearest_neuron_is_the_largest_signed_cosine():
    from inception_sae.analysis.embedding import nearest_neuron

    W = torch.zeros(2, 8)
    W[0, 3], W[0, 5] = -0.9, 0.4  # suppresses channel 3, writes channel 5
    W[1, 2] = 2.0
    neuron, cosine = nearest_neuron(W)
    assert neuron.tolist() == [5, 2]
    assert cosine[0] == pytest.approx(0.4 / (0.81 + 0.16) ** 0.5) and cosine[1] == pytest.approx(1.0)


def test_heatmap_peaks_at_the_true_unit_centre():
    """A single active unit's upsampled heatmap peaks where LayerInfo.center puts that unit, at mixed4* and 5b."""
    for layer in ("mixed4d", "mixed5b"):
        info = layer_info(layer, 224)
        y, x = 5, 2
        amap = np.zeros((info.size, info.size))
        amap[y, x] = 1.0
        A = upsample_matrix(info.size, 112, (info.offset, info.jump, 224))
        up = A @ amap @ A.T
        ty, tx = np.unravel_index(up.argmax(), up.shape)
        to_input = lambda t: (t + 0.5) * 224 / 112 - 0.5  # noqa: E731
        assert abs(to_input(ty) - info.center(y)) <= 1.0 and abs(to_input(tx) - info.center(x)) <= 1.0, layer
        # the unanchored (half-pixel) matrix is off by offset - (jump - 1) / 2: 7.5 px at mixed4d, 15.5 at 5b
        old = upsample_matrix(info.size, 112) @ amap @ upsample_matrix(info.size, 112).T
        oy = np.unravel_index(old.argmax(), old.shape)[0]
        assert abs(to_input(oy) - info.center(y)) >= 6.0


def test_unit_maps_are_each_features_codes_on_the_image():
    """The batched maps of pass 3 equal, feature by feature, the sum of that feature's sparse codes per position."""
    from inception_sae.analysis.examples import Family
    from inception_sae.analysis.passes import unit_maps

    g = torch.Generator().manual_seed(0)
    W, k, m, B = 5, 3, 40, 2
    ind = torch.randint(0, m, (B * W * W, k), generator=g)
    vals = torch.rand(B * W * W, k, generator=g)
    acts = torch.rand(B, 7, W, W, generator=g)
    fam = Family.empty(m)
    feats = sorted({int(f) for f in ind[W * W : 2 * W * W, 0]} | {39})  # image 1's features and one it may lack
    maps = unit_maps("features", fam, feats, 1, W, acts, vals, ind)
    rows = slice(W * W, 2 * W * W)
    for j, f in enumerate(feats):
        want = (vals[rows] * (ind[rows] == f)).sum(1).view(W, W)
        assert torch.allclose(maps[j], want), f
    assert torch.equal(unit_maps("neurons", fam, [2, 5], 0, W, acts, vals, ind), acts[0, [2, 5]])


def test_batched_heatmaps_match_the_single_map_formula():
    """Each of F heatmaps drawn at once is the overlay of its own map, scaled by its own max."""
    from inception_sae.analysis.render import heat_colours, heatmaps

    base = thumb_base(torch.rand(3, 64, 64))
    amaps, vmax = torch.rand(3, 4, 4), torch.tensor([1.0, 0.5, 2.0])
    out = heatmaps(base, amaps, vmax)
    A = upsample_matrix(4, 112)
    for j in range(3):
        up = A @ np.clip(amaps[j].numpy() / vmax[j].item(), 0, 1) @ A.T
        want = np.clip(base * 0.45 + 0.75 * heat_colours(up) * np.sqrt(up)[..., None], 0, 1) * 255
        assert np.abs(out[j].astype(float) - want).max() <= 2.0  # the colour table's 1,024 levels
