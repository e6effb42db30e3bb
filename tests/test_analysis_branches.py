"""Branch specialization: shares, the null model, and a planted ground truth through `analyze`."""

from __future__ import annotations

import json

import torch
from analysis_helpers import unit_rows, write_sae
from conftest import write_images

from inception_sae.analysis import branches as br
from inception_sae.analysis.config import AnalyzeConfig
from inception_sae.analysis.run import analyze
from inception_sae.data.images import ImageDataset, Preprocess, iter_batches


def test_shares_by_hand():
    W = torch.tensor([[3.0, 4.0, 0.0, -1.0], [0.0, 0.0, 2.0, 0.0]])
    s = br.branch_shares(W, [(0, 2), (2, 3), (3, 4)])
    assert torch.allclose(s["norm"][0], torch.tensor([5.0, 0.0, 1.0]) / 26**0.5)
    assert torch.allclose(s["pos"][0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(s["sq"].sum(1), torch.ones(2))
    assert torch.allclose(s["sq"][1], torch.tensor([0.0, 1.0, 0.0]))


def test_null_p_values_are_uniform_for_null_directions():
    scale = torch.rand(40) + 0.2
    slices, names = [(0, 10), (10, 30), (30, 34), (34, 40)], ["1x1", "3x3", "5x5", "pool"]
    W = br.null_directions(scale, 400, seed=5)  # drawn exactly like the null
    st = br.branch_stats(W, slices, names, scale, n_null=4000, seed=1)
    p = st.p["pos"]
    assert 0.05 < float((p < 0.1).float().mean()) < 0.16  # about 10% below 0.1
    assert abs(float(st.z["pos"].mean())) < 0.15


def channel_rms(model, folder, size, layer):
    ds = ImageDataset.from_folder(folder, Preprocess(resize=round(size * 256 / 224), crop=size))
    sq, n = 0.0, 0
    for x, _ in iter_batches(ds, 8):
        with torch.no_grad():
            a = model.capture(x, [layer])[layer]
        sq = sq + a.pow(2).sum((0, 2, 3))
        n += a.shape[0] * a.shape[2] * a.shape[3]
    return (sq / n).sqrt()


def test_planted_5x5_features_are_flagged(model, tmp_path):
    """16 features mostly in mixed4d's 5x5 slice (400-463) are 5x5-specialised; 48 null-like ones are not."""
    imgs = tmp_path / "imgs"
    write_images(imgs, 6, size=(80, 72))
    rms = channel_rms(model, imgs, 64, "mixed4d").clamp_min(1e-3)
    g = torch.Generator().manual_seed(0)
    planted = torch.randn(16, 528, generator=g).abs() * rms * 0.15
    planted[:, 400:464] = torch.rand(16, 64, generator=g) * rms[400:464] * 3
    random = torch.randn(48, 528, generator=g) * rms  # drawn like the null
    write_sae(tmp_path / "sae", unit_rows(torch.cat([planted, random])), "mixed4d", k=8)
    cfg = AnalyzeConfig(tmp_path / "sae", imgs, tmp_path / "out", input_size=64, batch_size=6, n_null=2000,
                        umap=False, logit_effect=False, render_top=0, render_intervals=0, n_top=3)  # fmt: skip
    analyze(cfg, model=model, progress=False)
    feats = [json.loads((tmp_path / "out" / "features" / f"{i}.json").read_text()) for i in range(64)]
    for f in feats[:16]:
        assert f["dominant_branch"] == "5x5"
        assert f["branch_p"]["5x5"] <= 1e-3 and f["branch_share"]["5x5"] > 0.6
    p_random = torch.tensor([f["branch_p"]["5x5"] for f in feats[16:]])
    assert int((p_random < 0.01).sum()) <= 2  # about 0.5 expected by chance
    assert sum(f["dominant_branch"] == "5x5" for f in feats[16:]) < 24
    table = json.loads((tmp_path / "out" / "branches.json").read_text())
    assert {e["id"] for e in table["table"]["5x5"]} <= set(range(16))  # the 10 most 5x5-specialised
    assert (tmp_path / "out" / "figures" / "branch_shares_pos.png").stat().st_size > 1000


def test_family_chance():
    slices, names = [(0, 10), (10, 30), (30, 34), (34, 40)], ["1x1", "3x3", "5x5", "pool"]
    W = torch.randn(12, 40)
    W[:9, 30:34] += 5  # nine 5x5 features, like Voss et al.'s nine colour detectors
    st = br.branch_stats(W, slices, names, None, n_null=2000)
    fam = br.family_chance(st, range(9))
    assert fam["branch"] == "5x5" and fam["p_all_same"] < 1e-4
