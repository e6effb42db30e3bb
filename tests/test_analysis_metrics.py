"""A layer's headline numbers come from the training distribution and say what they are computed on."""

from __future__ import annotations

import numpy as np

from inception_sae.analysis.metrics import headline_metrics
from inception_sae.sae.metrics import firing_summary


def test_headline_prefers_held_out_rows_and_trained_positions():
    trained = {"top1_agreement": 0.7, "kl": 0.05, "fvu": 0.3, "vectors": {"l0": 12.0}}
    splice = {"top1_agreement": 0.9, "kl": 0.01, "fvu": 0.5, "vectors": {"l0": 30.0}, "training_positions": trained}
    held = firing_summary(np.r_[np.zeros(3), np.full(97, 500)], 50_000, "these vectors")
    positions = firing_summary(np.r_[np.zeros(5), np.full(95, 500)], 40_000, "training positions")
    summary = {"layer": "mixed4a", "counts": {"features": 100, "dead": 2, "dense": 9},
               "training_positions": {"dead": 5, "dense": 1, "firing": positions}}  # fmt: skip
    ev = {"store": {"fvu": 0.2, "l0": 31.0, "held_out": True, "firing": held}, "splice": splice}
    h = headline_metrics(summary, {}, ev)
    assert (h["fvu"], h["fvu_on"]) == (0.2, "held-out store rows")
    assert (h["splice_top1"], h["splice_kl"], h["splice_on"]) == (0.7, 0.05, "trained positions")
    assert (h["dead_fraction"], h["dead_on"], h["dead_rows"], h["dead_status"]) == (0.03, "held-out store rows",
                                                                                   50_000, "ok")  # fmt: skip
    assert h["dead_interval"][0] <= 0.03 <= h["dead_interval"][1]

    summary["training_positions"]["firing"] = firing_summary(np.zeros(100), 2_000, "training positions")
    ev = {"store": {"fvu": 0.2, "held_out": False}, "splice": {"top1_agreement": 0.9, "fvu": 0.5}}
    h = headline_metrics(summary, {}, ev)
    assert h["fvu_on"] == "store rows that training read" and h["splice_on"] == "every position"
    assert h["dead_fraction"] is None and "too few rows" in h["dead_status"] and h["dead_rows"] == 2_000

    assert headline_metrics(summary, {}, {"splice": splice})["fvu_on"] == "splice-back images, trained positions"


class LinearHead:
    """Stands in for the network: the images are the layer's activations, the logits a linear read of their mean."""

    def __init__(self, weight, bias) -> None:
        self.weight, self.bias = weight, bias

    def capture(self, images, layers):
        return {layers[0]: images}

    def forward_from(self, layer, acts):
        return acts.mean((2, 3)) @ self.weight + self.bias


def test_splice_back_says_when_one_predicted_class_makes_top1_uninformative():
    import torch

    from inception_sae.sae.measure import splice_back
    from inception_sae.sae.model import SAEConfig, TopKSAE

    torch.manual_seed(0)
    sae = TopKSAE(SAEConfig(8, 16, 2))
    images = 5.0 * torch.eye(6, 8).view(6, 8, 1, 1).expand(6, 8, 2, 2)  # image i: channel i on everywhere
    batches = [(images, list(range(6)))]
    bias = torch.zeros(10)
    bias[3] = 100.0  # every image's top-1 is class 3, whatever the activations
    s_one, _ = splice_back(sae, LinearHead(0.1 * torch.randn(8, 10), bias), "mixed4a", batches)
    s_var, _ = splice_back(sae, LinearHead(torch.eye(8, 10), torch.zeros(10)), "mixed4a", batches)  # image i: class i
    assert (
        s_one.images == 6
        and s_one.top1_agreement == 1.0
        and s_one.classes_predicted == 1
        and "no information" in s_one.note
    )
    assert s_var.classes_predicted == 6 and s_var.note is None
    h = headline_metrics({"layer": "mixed4a"}, {}, {"splice": {"top1_agreement": 1.0, "note": s_one.note}})
    assert h["splice_note"] == s_one.note
