"""A layer's headline numbers come from the training distribution and say what they are computed on."""

from __future__ import annotations

from inception_sae.analysis.metrics import headline_metrics


def test_headline_prefers_held_out_rows_and_trained_positions():
    trained = {"top1_agreement": 0.7, "kl": 0.05, "fvu": 0.3, "vectors": {"l0": 12.0}}
    splice = {"top1_agreement": 0.9, "kl": 0.01, "fvu": 0.5, "vectors": {"l0": 30.0}, "training_positions": trained}
    summary = {"layer": "mixed4a", "counts": {"features": 100, "dead": 2, "dense": 9},
               "training_positions": {"dead": 5, "dense": 1}}  # fmt: skip
    ev = {"store": {"fvu": 0.2, "l0": 31.0, "held_out": True}, "splice": splice}
    h = headline_metrics(summary, {}, ev)
    assert (h["fvu"], h["fvu_on"]) == (0.2, "held-out store rows")
    assert (h["splice_top1"], h["splice_kl"], h["splice_on"]) == (0.7, 0.05, "trained positions")
    assert (h["dead"], h["dead_fraction"], h["dense"], h["dead_on"]) == (5, 0.05, 1, "training positions")

    ev = {"store": {"fvu": 0.2, "held_out": False}, "splice": {"top1_agreement": 0.9, "fvu": 0.5}}
    h = headline_metrics({"layer": "mixed4a", "counts": {"features": 100, "dead": 2}}, {}, ev)
    assert h["fvu_on"] == "store rows that training read" and h["splice_on"] == "every position"
    assert (h["dead"], h["dead_on"]) == (2, "every position")

    assert headline_metrics(summary, {}, {"splice": splice})["fvu_on"] == "splice-back images, trained positions"
