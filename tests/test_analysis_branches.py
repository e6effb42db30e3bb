"""Branch specialization: shares, the null model, and a planted ground truth through `analyze`."""

from __future__ import annotations

import json

import torch
from factories import make_images, make_sae, unit_rows

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
    make_images(imgs, 6, size=(80, 72))
    rms = channel_rms(model, imgs, 64, "mixed4d")
    g = torch.Generator().manual_seed(0)
    planted = torch.randn(16, 528, generator=g).abs() * rms * 0.15
    planted[:, 400:464] = torch.rand(16, 64, generator=g) * rms[400:464] * 3
    random = torch.randn(48, 528, generator=g) * rms  # drawn like the null
    make_sae(tmp_path / "sae", W_dec=unit_rows(torch.cat([planted, random])), layer="mixed4d", k=8)
    cfg = AnalyzeConfig(sae=tmp_path / "sae", images=imgs, out=tmp_path / "out", input_size=64, batch_size=6,
                        umap=False, logit_effect=False, render_top=0, render_intervals=0, n_top=3,
                        family=",".join(map(str, range(0, 16, 2))))  # fmt: skip
    analyze(cfg, model=model, progress=False)
    feats = [json.loads((tmp_path / "out" / "features" / f"{i}.json").read_text()) for i in range(64)]
    for f in feats[:16]:
        assert f["dominant_branch"] == "5x5"
        assert f["branch_p"]["5x5"] <= 1e-3 and f["branch_share"]["5x5"] > 0.6
        assert f["branch_q"]["5x5"] <= 0.01 and set(f["branch_q"]) == set(f["branch_p"])
    p_random = torch.tensor([f["branch_p"]["5x5"] for f in feats[16:]])
    assert int((p_random < 0.01).sum()) <= 2  # about 0.5 expected by chance
    assert sum(f["dominant_branch"] != "none" for f in feats[16:]) <= 2  # random rows: "none"
    table = json.loads((tmp_path / "out" / "branches.json").read_text())
    assert {e["id"] for e in table["table"]["5x5"]} <= set(range(16))  # the 10 most 5x5-specialised
    scale, live = torch.tensor(table["channel_scale"]), torch.tensor(table["channel_live"])
    floor = float(torch.quantile(rms[live], 0.5))  # the median of the live channels
    assert len(scale) == 528 and torch.allclose(scale[live], rms[live].clamp_min(floor), rtol=1e-3)
    assert "empirical null" in table["null"]["method"] and table["dominant_counts"]["5x5"] >= 16
    assert table["agreement"]["features"] == 64 and "pos" in table["null"]["fit"]
    assert all(f["dominant_branch_norm"] in ("5x5", "none") for f in feats)  # both shares tested, both reported
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    fdr = summary["counts"]["specialised_fdr_1pct"]
    assert fdr["5x5"] >= 16 and sum(fdr.values()) <= 18
    assert summary["counts"]["dominant_branch"]["none"] >= 46
    assert "norm share" in summary["branch_test"]["fdr_1pct_status"]
    fam = table["family"]  # half the planted features, highlighted as a family: apart in 5x5, nowhere else
    assert fam["family"] == list(range(0, 16, 2)) and fam["status"] == "ok"
    assert fam["branches"]["5x5"]["p"] < 1e-4 and fam["branches"]["5x5"]["p_count"] < 1e-4
    assert fam["branches"]["1x1"]["p"] > 0.01
    assert "FDR 1%" in (tmp_path / "out" / "report.md").read_text()
    assert (tmp_path / "out" / "figures" / "branch_shares_pos.png").stat().st_size > 1000
