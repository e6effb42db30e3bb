"""`analyze` end to end: CLI, docs/formats.md keys, mining vs brute force through the model, bounded state, UMAP."""

from __future__ import annotations

import io
import json
import sys

import pytest
import torch
from factories import make_images, make_sae, run_cli, unit_rows
from factories.analysis import quick_analysis
from PIL import Image

from inception_sae.analysis.config import AnalyzeConfig
from inception_sae.analysis.render import THUMB, read_packed
from inception_sae.analysis.run import analyze
from inception_sae.data.images import ImageDataset, Preprocess, iter_batches

FEATURE_KEYS = {"id", "frequency", "max", "branch_share", "branch_share_norm", "branch_share_sq", "branch_p",
                "dominant_branch", "similar_neuron", "top_examples", "intervals", "label", "label_score",
                "label_classes", "label_significant"}  # fmt: skip


@pytest.fixture(scope="module")
def sae_dir(tmp_path_factory):
    return make_sae(
        tmp_path_factory.mktemp("sae") / "sae",
        W_dec=unit_rows(torch.randn(24, 256, generator=torch.Generator().manual_seed(0))),
        layer="mixed3a",
        k=6,
    )


def test_cli_writes_the_contract(sae_dir, tmp_path):
    make_images(tmp_path / "imgs", 5, size=(40, 36))
    out = tmp_path / "out"
    r = run_cli("analyze", "--sae", str(sae_dir), "--images", str(tmp_path / "imgs"), "--out", str(out),
            "--weights", "random", "--input-size", "32", "--batch-size", "2", "--no-umap", "--no-logit-effect",
            "--n-top", "4", "--render-top", "2", "--render-intervals", "0")  # fmt: skip
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["layer"] == "mixed3a" and summary["model"]["untrained_weights"] is True
    assert summary["images"]["analysed"] == 5 and summary["counts"]["features"] == 24
    for rel in summary["files"]:
        assert (out / rel).is_file(), rel
    feat = json.loads((out / "features" / "0.json").read_text())
    assert set(feat) >= FEATURE_KEYS
    assert set(feat["similar_neuron"]) >= {"neuron", "cosine"}
    assert {"significant_features", "family_size", "correction"} <= set(summary["labels"])
    assert all({"count", "share", "enrichment", "p", "q"} <= set(c) for c in feat["label_classes"])
    for ex in feat["top_examples"] + feat["intervals"]:
        assert {"image", "y", "x", "value"} <= set(ex)
    assert 0 < len(feat["top_examples"]) <= 4
    for ex in feat["top_examples"][:2]:  # crops and heatmaps packed in one file: JPEGs of the thumbnail's size
        for key in ("crop", "heatmap"):
            img = Image.open(io.BytesIO(read_packed(out, ex[key])))
            assert img.format == "JPEG" and max(img.size) <= THUMB
    assert [p.name for p in (out / "images").iterdir()] == ["examples.pack"]
    assert summary["directories"]["images"]["count"] >= 2 * 2
    assert json.loads((out / "neurons" / "255.json").read_text())["branch"] == "pool"
    assert "UNTRAINED" in (out / "report.md").read_text()


def test_cli_bad_input_is_one_line(tmp_path):
    r = run_cli("analyze", "--sae", str(tmp_path / "nope"), "--images", str(tmp_path), "--out", str(tmp_path / "o"),
            "--weights", "random")  # fmt: skip
    assert r.returncode == 2 and r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1


def brute_image_maxima(model, sae_dir, folder, size):
    """(n_images, m) per-image maxima and (n_images, m) argmax positions from dense codes."""
    from inception_sae.sae.model import TopKSAE

    sae = TopKSAE.load(sae_dir)
    ds = ImageDataset.from_folder(folder, Preprocess(resize=round(size * 256 / 224), crop=size))
    maxima, argmax = [], []
    for x, _ in iter_batches(ds, 100):
        with torch.no_grad():
            a = model.capture(x, ["mixed3a"])["mixed3a"]
            v = a.permute(0, 2, 3, 1).reshape(-1, a.shape[1])
            vals, idx = sae.encode(v)
        dense = (
            torch.zeros(v.shape[0], sae.W_dec.shape[0]).scatter_(1, idx, vals).view(a.shape[0], -1, sae.W_dec.shape[0])
        )
        maxima.append(dense.max(1).values)
        argmax.append(dense.argmax(1))
    return torch.cat(maxima), torch.cat(argmax)


@pytest.mark.parametrize("n_images", [4, 40])
def test_pipeline_mining_equals_brute_force_and_state_is_bounded(model, sae_dir, tmp_path, n_images):
    make_images(tmp_path / "imgs", n_images, size=(36, 34), seed=n_images)
    cfg = quick_analysis(sae_dir, tmp_path / "imgs", tmp_path / "out", batch_size=8)
    summary = analyze(cfg, model=model, progress=False).summary
    # bytes per direction: stats 8+8+8+4+8*66, top 3*24, 10 interval reservoirs 10*5*24 + counts 10*8;
    # for m=24 features and C=256 neurons: the same for 4 and 40 images
    expected_state = (24 + 256) * (556 + 72 + 1200 + 80)
    assert summary["state_bytes"] == expected_state
    vmax, argmax = brute_image_maxima(model, sae_dir, tmp_path / "imgs", 32)
    for f in range(24):
        feat = json.loads((tmp_path / "out" / "features" / f"{f}.json").read_text())
        want = vmax[:, f][vmax[:, f] > 0].sort(descending=True).values[:3]
        got = torch.tensor([e["value"] for e in feat["top_examples"]])
        assert torch.allclose(got, want, atol=1e-5)
        for e in feat["top_examples"]:
            assert e["y"] * 4 + e["x"] == int(argmax[e["image_index"], f])
        assert sum(r["count"] for r in feat["interval_ranges"]) == int((vmax[:, f] > 0).sum())
        assert abs(feat["max"] - float(vmax[:, f].max())) < 1e-5


def test_umap_missing_is_skipped_clearly(monkeypatch):
    from inception_sae.analysis.embedding import umap_coords

    monkeypatch.setitem(sys.modules, "umap", None)  # import fails as if not installed
    assert umap_coords(torch.randn(10, 4)) is None


@pytest.mark.slow
def test_umap_coordinates_are_seeded():
    pytest.importorskip("umap")
    from inception_sae.analysis.embedding import umap_coords

    W = torch.randn(60, 16)
    a, b = umap_coords(W, seed=3), umap_coords(W, seed=3)
    assert a.shape == (60, 2) and torch.allclose(a, b)


def test_interrupted_run_resumes_to_the_same_result(model, sae_dir, tmp_path, monkeypatch):
    import inception_sae.analysis.passes as passes

    make_images(tmp_path / "imgs", 6, size=(36, 34), seed=9)
    kw = dict(input_size=32, batch_size=2, n_top=3, render_top=0, render_intervals=0, umap=False,
              logit_effect=False, checkpoint_every_s=1e-9)  # fmt: skip
    analyze(
        AnalyzeConfig(sae=sae_dir, images=tmp_path / "imgs", out=tmp_path / "ref", **kw), model=model, progress=False
    )
    calls, real = [0], passes.pass2_batch

    def failing(*a):
        calls[0] += 1
        if calls[0] == 3:  # the third batch of pass 2
            raise KeyboardInterrupt
        return real(*a)

    monkeypatch.setattr(passes, "pass2_batch", failing)
    cfg = AnalyzeConfig(sae=sae_dir, images=tmp_path / "imgs", out=tmp_path / "out", **kw)
    with pytest.raises(KeyboardInterrupt):
        analyze(cfg, model=model, progress=False)
    cursor = json.loads((tmp_path / "out" / "checkpoint" / "cursor.json").read_text())
    # pass 2 reads the choice half (3 of the 6 images: batches of 2 and 1), then the score half
    assert cursor["pass"] == 2 and cursor["next"] == 3
    monkeypatch.setattr(passes, "pass2_batch", real)
    analyze(cfg, model=model, progress=False)
    assert not (tmp_path / "out" / "checkpoint").exists()
    for f in range(24):
        a, b = (json.loads((tmp_path / d / "features" / f"{f}.json").read_text()) for d in ("ref", "out"))
        for key in ("top_examples", "intervals", "interval_ranges", "frequency", "max", "label_score", "label_concept"):
            assert a[key] == b[key], (f, key)


def test_umap_figures(tmp_path):
    from inception_sae.analysis.embedding import plot_umap

    paths = [tmp_path / "dom.png", tmp_path / "share.png"]
    plot_umap(torch.randn(20, 2), ["5x5"] * 10 + ["pool"] * 10, torch.rand(20), "5x5", "mixed4d", paths)
    assert all(p.stat().st_size > 1000 for p in paths)


def _title_inside(fig) -> None:
    fig.canvas.draw()
    box = fig.bbox
    for ax in fig.axes:
        t = ax.title.get_window_extent()
        inside = box.x0 <= t.x0 and t.x1 <= box.x1 and box.y0 <= t.y0 and t.y1 <= box.y1
        assert inside or not ax.title.get_text(), (ax.title.get_text(), t, box)


def test_umap_titles_fit_inside_the_figure():
    import matplotlib.pyplot as plt

    from inception_sae.analysis.embedding import umap_category_figure, umap_figures

    coords = torch.randn(20, 2)
    cats = ["animal"] * 5 + [None] * 15
    figs = [*umap_figures(coords, ["5x5"] * 10 + ["pool"] * 10, torch.rand(20), "5x5", "mixed4d"),
            umap_category_figure(coords, cats, "mixed4d_3x3_bottleneck_pre_relu", True)]  # fmt: skip
    for fig in figs:
        _title_inside(fig)
        plt.close(fig)
