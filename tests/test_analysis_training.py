"""Analysis on the training distribution: statistics on the positions the harvest rule selects, vs brute force."""

from __future__ import annotations

import json

import pytest
import torch
from factories import make_images, make_sae, unit_rows
from factories.analysis import quick_analysis

from inception_sae.analysis.run import analyze
from inception_sae.data.images import ImageDataset, Preprocess, iter_batches
from inception_sae.sae.model import TopKSAE

PER_IMAGE = 3


@pytest.fixture(scope="module")
def trained_sae(tmp_path_factory):
    """An SAE whose cfg.json names a store harvested top-norm, 3 positions per image, at crop 32."""
    tmp = tmp_path_factory.mktemp("train_dist")
    store = tmp / "store"
    store.mkdir()
    recipe = {"sampling": "top-norm", "per_image": PER_IMAGE, "seed": 0, "preprocess": {"resize": 37, "crop": 32}}
    (store / "manifest.json").write_text(json.dumps(recipe))
    rows = unit_rows(torch.randn(24, 256, generator=torch.Generator().manual_seed(1)))
    # from before cfg.json recorded its data: only the store's place
    return make_sae(tmp / "sae", W_dec=rows, layer="mixed3a", k=6, data=None, store=str(store))


def brute_top_norm_firing(model, sae_dir, folder) -> tuple[torch.Tensor, int]:
    """(m,) firing counts over each image's 3 highest-norm positions, and the number of those positions."""
    sae = TopKSAE.load(sae_dir)
    ds = ImageDataset.from_folder(folder, Preprocess(resize=round(32 * 256 / 224), crop=32))
    counts, n = torch.zeros(24, dtype=torch.long), 0
    for x, _ in iter_batches(ds, 100):
        with torch.no_grad():
            a = model.capture(x, ["mixed3a"])["mixed3a"]  # (B, C, 4, 4)
            v = a.permute(0, 2, 3, 1).reshape(a.shape[0], -1, a.shape[1])  # (B, 16, C)
            top = v.norm(dim=2).argsort(dim=1, descending=True, stable=True)[:, :PER_IMAGE]
            chosen = torch.gather(v, 1, top[..., None].expand(-1, -1, v.shape[2])).reshape(-1, v.shape[2])
            vals, idx = sae.encode(chosen)
        counts += torch.bincount(idx[vals > 0], minlength=24)
        n += chosen.shape[0]
    return counts, n


def test_training_position_statistics_equal_brute_force(model, trained_sae, tmp_path):
    make_images(tmp_path / "imgs", 10, size=(36, 34), seed=4)
    cfg = quick_analysis(trained_sae, tmp_path / "imgs", tmp_path / "out")
    summary = analyze(cfg, model=model, progress=False).summary
    counts, n = brute_top_norm_firing(model, trained_sae, tmp_path / "imgs")
    tp = summary["training_positions"]
    assert tp["positions"] == n == 10 * PER_IMAGE and tp["rule"]["sampling"] == "top-norm"
    assert tp["dead"] == int((counts == 0).sum()) and summary["images"]["positions"] == 10 * 16
    differs = 0
    for f in range(24):
        feat = json.loads((tmp_path / "out" / "features" / f"{f}.json").read_text())
        t = feat["training_positions"]
        assert t["frequency"] == pytest.approx(int(counts[f]) / n)
        assert sum(t["interval_counts"]) == int(counts[f])  # every firing training position in one interval
        differs += t["frequency"] != feat["frequency"]
    assert differs > 0  # the two distributions are not the same numbers


def test_without_a_rule_the_training_statistics_say_so(model, tmp_path):
    sae = make_sae(tmp_path / "sae", W_dec=unit_rows(torch.randn(24, 256)), layer="mixed3a", k=6)  # records "no rule"
    make_images(tmp_path / "imgs", 3, size=(36, 34), seed=5)
    cfg = quick_analysis(sae, tmp_path / "imgs", tmp_path / "out")
    summary = analyze(cfg, model=model, progress=False).summary
    assert summary["training_positions"] is None and summary["harvest"]["rule_reason"].startswith("a hand-made")
    assert summary["examples"]["training_examples"] is None
    feat = json.loads((tmp_path / "out" / "features" / "0.json").read_text())
    assert feat["training_positions"] is None and feat["training_examples"] is None
    assert "rule is unknown" in feat["training_positions_note"]
    assert all("at_training_position" not in e for e in feat["top_examples"] + feat["intervals"])
