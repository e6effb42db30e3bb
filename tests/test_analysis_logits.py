"""Logit facets: exact at mixed5b against measured injection; linearised effect against finite differences."""

from __future__ import annotations

import torch

from inception_sae.analysis.logits import class_top_features, logit_effect, top_classes
from inception_sae.data.labels import placeholder_labels


def test_mixed5b_effect_is_exact(model):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64)
    W_dec = torch.nn.functional.normalize(torch.randn(5, 1024), dim=1)
    effect, kind = logit_effect(model, "mixed5b", W_dec, None)
    assert kind.startswith("exact") and effect.shape == (5, 1008)
    with torch.no_grad():
        acts = model.capture(x, ["mixed5b"])["mixed5b"]  # (2, 1024, 2, 2)
        base = model.forward_from("mixed5b", acts)
        eps = 0.5
        for i in range(5):
            moved = model.forward_from("mixed5b", acts + eps * W_dec[i].view(1, -1, 1, 1))  # d added at every position
            assert torch.allclose((moved - base) / eps, effect[i].expand(2, -1), atol=1e-4)


def test_linearised_effect_matches_finite_difference(model):
    torch.manual_seed(1)
    mean_act = torch.rand(832, 2, 2)  # a mixed5a activation map
    W_dec = torch.nn.functional.normalize(torch.randn(3, 832), dim=1)
    effect, kind = logit_effect(model, "mixed5a", W_dec, mean_act)
    assert kind.startswith("approximate")
    with torch.no_grad():
        base = model.forward_from("mixed5a", mean_act[None])
        eps = 1e-3
        for i in range(3):
            moved = model.forward_from("mixed5a", (mean_act + eps * W_dec[i].view(-1, 1, 1))[None])
            fd = (moved - base)[0] / eps
            assert torch.allclose(fd, effect[i], atol=2e-2 * float(effect[i].abs().max()) + 1e-4)


def test_top_classes_and_class_table():
    names = placeholder_labels()
    effect = torch.zeros(2, 1008)
    effect[0, 5], effect[0, 7], effect[0, 0] = 3.0, -2.0, 100.0  # index 0 is the dummy class: excluded
    up, down = top_classes(effect[0], names, n=2)
    assert up[0] == {"index": 5, "name": names[5], "weight": 3.0}
    assert down[0]["index"] == 7 and down[0]["weight"] == -2.0
    table = class_top_features(effect, names, n=1)
    assert len(table) == 1000 and table[4]["index"] == 5 and table[4]["features"][0]["id"] == 0
