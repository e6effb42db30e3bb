"""End to end: activations from a known dictionary -> train a TopK SAE -> the analysis's branch test.

The data are made at mixed4d's width from a planted dictionary with Zipf frequencies, channel scales spanning
two orders of magnitude and dead channels. Some atoms hold one branch slice three times stronger (in the data's
units); the rest have no preference. The trained SAE's decoder rows carry whatever leak training leaves (on the
dead channels too), so the test sees rows made the way trained SAEs make them, not rows drawn from its null.
"""

from __future__ import annotations

import pytest
import torch
from factories.branch_truth import NAMES, SLICES, D, atom_activations, atom_dictionary

from inception_sae.analysis import branches as br
from inception_sae.data.source import ArraySource
from inception_sae.sae.model import SAEConfig, TopKSAE
from inception_sae.sae.train import TrainConfig, train


@pytest.mark.slow
def test_trained_features_that_match_planted_atoms_get_the_planted_branch(tmp_path):
    g = torch.Generator().manual_seed(0)
    W, tags, scale = atom_dictionary(atoms=384, planted=48, g=g)
    X = atom_activations(W, scale, 100_000, active=6.0, g=g)
    cfg = TrainConfig(samples=600_000, batch_size=1024, lr=4e-3, warmup_steps=20, progress=False)
    train(ArraySource(X.numpy(), 1024, seed=0), [SAEConfig(D, 768, 8, "init")], cfg, tmp_path)
    dec = TopKSAE.load(tmp_path).W_dec.detach().float()
    rms = X.pow(2).mean(0).sqrt()
    stats = br.branch_stats(dec, SLICES, NAMES, rms)  # what ``analyze`` computes from the decoder and channel RMS
    names = stats.dominant_names()
    unit = dec / dec.norm(dim=1, keepdim=True)
    cos, best = (W @ unit.T).max(1)  # each atom's best-matching feature
    dead = rms == 0
    assert float(dec[:, dead].abs().max()) > 0  # training leaves leak on the dead channels
    for branch in ("5x5", "1x1"):
        feats = [int(best[i]) for i, t in enumerate(tags) if t == branch and cos[i] >= 0.9]
        assert len(feats) >= 30, (branch, len(feats))  # enough atoms recovered for the rate to mean something
        hit = sum(names[f] == branch for f in feats) / len(feats)
        print(f"{branch}: {len(feats)} atoms recovered, {hit:.3f} of their features labelled {branch}")
        assert hit >= 0.9, (branch, hit, len(feats))
    plain = [int(best[i]) for i, t in enumerate(tags) if t == "none" and cos[i] >= 0.9]
    called = sum(names[f] != "none" for f in plain) / len(plain)
    print(f"no preference: {len(plain)} atoms recovered, {called:.3f} of their features given a branch")
    assert len(plain) >= 150 and called <= 0.03
