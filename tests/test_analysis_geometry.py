"""Receptive-field boxes of example crops match inception5h.md; rendering writes small images."""

from __future__ import annotations

import numpy as np
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
