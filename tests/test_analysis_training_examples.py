"""Examples on the positions the SAE was trained on, beside the every-position ones: planted features, brute force.

The SAE is hand-written on the random network's real mixed3a activations of generated images, with a top-norm
rule of 3 positions per image (of 16): feature 0 fires only at those positions (its encoder reads the mean
activation direction above the largest value it takes anywhere else), feature 1 only off them (below the
smallest value it takes at them), the others are random directions.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from factories import make_images, make_sae, unit_rows

from inception_sae.analysis.config import AnalyzeConfig
from inception_sae.analysis.render import read_packed
from inception_sae.analysis.run import analyze
from inception_sae.data.images import ImageDataset, Preprocess, iter_batches
from inception_sae.sae.model import TopKSAE
from inception_sae.sae.view import SAETensors

PER_IMAGE, N_IMAGES, M, SIZE = 3, 16, 8, 32
ON, OFF = 0, 1  #: the planted features: fires only at training positions / only off them
KW = dict(input_size=SIZE, batch_size=4, n_top=5, per_interval=3, render_top=2, render_intervals=1, umap=False,
          logit_effect=False)  # fmt: skip


def activations(model, folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """mixed3a vectors (n, 16, C) of every image, and the top-norm rule's positions (n, 16) bool."""
    ds = ImageDataset.from_folder(folder, Preprocess(resize=round(SIZE * 256 / 224), crop=SIZE))
    x, _ = next(iter(iter_batches(ds, 100)))
    with torch.no_grad():
        a = model.capture(x, ["mixed3a"])["mixed3a"]  # (n, C, 4, 4)
    v = a.permute(0, 2, 3, 1).reshape(a.shape[0], -1, a.shape[1])
    top = v.norm(dim=2).argsort(dim=1, descending=True, stable=True)[:, :PER_IMAGE]
    return v, torch.zeros(v.shape[:2], dtype=torch.bool).scatter_(1, top, True)


def planted_sae(folder: Path, v: torch.Tensor, mask: torch.Tensor, store: Path) -> Path:
    """An SAE (k = m: TopK keeps every positive code) with features ON and OFF planted around the rule's positions."""
    u = v.reshape(-1, v.shape[2]).mean(0)
    u = u / u.norm()
    proj = v @ u  # (n, 16)
    high = proj[~mask].max()  # feature ON fires above every non-training position's value...
    on_cut = (high + proj[mask & (proj > high)].min()) / 2  # ...halfway to the next value up, at a training position
    low = proj[mask].min()
    off_cut = (low + proj[~mask & (proj < low)].max()) / 2
    others = unit_rows(torch.randn(M - 2, v.shape[2], generator=torch.Generator().manual_seed(3)))
    W = torch.cat([torch.stack([u, -u]), others])
    b_enc = torch.zeros(M)
    b_enc[ON], b_enc[OFF] = -on_cut, off_cut
    tensors = SAETensors(W.T.contiguous(), W.contiguous(), b_enc, torch.zeros(v.shape[2]), M, "mixed3a")
    return make_sae(folder, tensors=tensors, data=None, store=str(store))  # names its store, as folders did before


@pytest.fixture(scope="module")
def setup(model, tmp_path_factory) -> dict:
    """Images, their activations and rule positions, the planted SAE, and one analysis of them."""
    tmp = tmp_path_factory.mktemp("train_examples")
    make_images(tmp / "imgs", N_IMAGES, size=(36, 34), seed=4)
    (tmp / "store").mkdir()
    recipe = {"sampling": "top-norm", "per_image": PER_IMAGE, "seed": 0, "preprocess": {"resize": 37, "crop": SIZE}}
    (tmp / "store" / "manifest.json").write_text(json.dumps(recipe))
    v, mask = activations(model, tmp / "imgs")
    sae = planted_sae(tmp / "sae", v, mask, tmp / "store")
    with torch.no_grad():
        vals, idx = TopKSAE.load(sae).encode(v.reshape(-1, v.shape[2]))
    dense = torch.zeros(vals.shape[0], M).scatter_(1, idx, vals).view(N_IMAGES, -1, M)  # (n, 16, m)
    out = tmp / "out"
    summary = analyze(AnalyzeConfig(sae=sae, images=tmp / "imgs", out=out, **KW), model=model, progress=False).summary
    return {"tmp": tmp, "sae": sae, "out": out, "summary": summary, "dense": dense, "mask": mask}


def feature(out: Path, f: int) -> dict:
    return json.loads((out / "features" / f"{f}.json").read_text())


def test_planted_features_fire_where_they_were_planted(setup):
    dense, mask = setup["dense"], setup["mask"]
    assert (dense[..., ON] > 0).any() and not (dense[..., ON][~mask] > 0).any()
    assert (dense[..., OFF] > 0).any() and not (dense[..., OFF][mask] > 0).any()


def test_a_feature_firing_only_off_the_training_positions_has_no_training_examples(setup):
    d = feature(setup["out"], OFF)
    t = d["training_examples"]
    assert t["counts"] == {"images": 0, "per_interval": [0] * 10}
    assert t["top_examples"] == [] and t["intervals"] == []
    assert "never fires at a training position" in d["training_positions_note"]
    assert d["training_positions"]["dead"] and not d["dead"]
    assert d["top_examples"] and not any(e["at_training_position"] for e in d["top_examples"] + d["intervals"])


def test_a_feature_firing_only_at_the_training_positions_has_the_same_top_examples(setup):
    d = feature(setup["out"], ON)
    t = d["training_examples"]
    key = lambda e: (e["image"], e["y"], e["x"], e["value"])  # noqa: E731
    assert d["top_examples"] and [key(e) for e in t["top_examples"]] == [key(e) for e in d["top_examples"]]
    assert all(e["at_training_position"] for e in d["top_examples"] + d["intervals"])
    assert t["counts"]["images"] == round(d["frequency_image"] * N_IMAGES) == sum(t["counts"]["per_interval"])
    assert t["interval_ranges"] == d["interval_ranges"]  # same max, same images per interval
    assert "never fires" not in d["training_positions_note"]
    for a, b in zip(t["top_examples"][:2], d["top_examples"][:2], strict=True):
        assert a["crop"] == b["crop"] and a["heatmap"] == b["heatmap"]  # rendered once, shown in both families


def brute_training_maxima(dense: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, m) per-image max over the rule's positions (0: fires at none) and its first argmax (-1: none)."""
    masked = dense * mask[..., None]
    vmax = masked.max(1).values
    first = torch.where(masked == vmax[:, None, :], torch.arange(dense.shape[1])[None, :, None], dense.shape[1])
    return vmax, torch.where(vmax > 0, first.min(1).values, -1)


def test_training_examples_equal_brute_force(setup):
    dense, mask, out = setup["dense"], setup["mask"], setup["out"]
    tmax, tpos = brute_training_maxima(dense, mask)
    every_max = dense.max(1).values
    for f in range(M):
        d = feature(out, f)
        t = d["training_examples"]
        assert t["counts"]["images"] == int((tmax[:, f] > 0).sum())
        want = tmax[:, f][tmax[:, f] > 0].sort(descending=True).values[:5]
        assert torch.allclose(torch.tensor([e["value"] for e in t["top_examples"]]), want, atol=1e-5)
        for e in t["top_examples"]:
            assert e["y"] * 4 + e["x"] == int(tpos[e["image_index"], f])
        hi = float(tmax[:, f].max())
        inside = (tmax[:, f] / (hi / 10)).floor().clamp(max=9) if hi > 0 else torch.zeros(N_IMAGES)
        want_counts = [int(((tmax[:, f] > 0) & (inside == j)).sum()) for j in range(10)]
        assert t["counts"]["per_interval"] == want_counts == [r["count"] for r in t["interval_ranges"]]
        for e in t["intervals"]:
            assert e["lo"] <= e["value"] <= e["hi"] + 1e-6 and mask[e["image_index"], e["y"] * 4 + e["x"]]
            assert abs(e["value"] - float(tmax[e["image_index"], f])) < 1e-5
        for e in d["top_examples"] + d["intervals"]:  # the every-position examples' flags
            assert abs(e["value"] - float(every_max[e["image_index"], f])) < 1e-5
            assert e["at_training_position"] == bool(mask[e["image_index"], e["y"] * 4 + e["x"]])
        for e in t["top_examples"][:2] + [e for e in t["intervals"] if e.get("crop")]:
            assert read_packed(out, e["crop"])[:2] == b"\xff\xd8" and read_packed(out, e["heatmap"])[:2] == b"\xff\xd8"
    differs = [f for f in range(M) if (tmax[:, f] != every_max[:, f]).any() and (tmax[:, f] > 0).any()]
    assert len(differs) >= 3  # random features that fire at training positions: two families, different numbers


@pytest.fixture(scope="module")
def plain(model, setup) -> dict:
    """The same analysis without the training-position family."""
    cfg = AnalyzeConfig(
        sae=setup["sae"], images=setup["tmp"] / "imgs", out=setup["tmp"] / "plain", training_examples=False, **KW
    )
    return {"out": cfg.out, "summary": analyze(cfg, model=model, progress=False).summary}


def test_the_every_position_examples_do_not_change_with_the_training_family(setup, plain):
    def same(out, xs, drop=("at_training_position",)):  # pictures by content: their places in the pack differ
        pic = lambda v: read_packed(out, v) if v else v  # noqa: E731
        return [{k: pic(v) if k in ("crop", "heatmap") else v for k, v in e.items() if k not in drop} for e in xs]

    for f in range(M):
        a, b = feature(setup["out"], f), feature(plain["out"], f)
        for key in ("top_examples", "intervals"):
            assert same(setup["out"], a[key]) == same(plain["out"], b[key]), (f, key)
        assert a["interval_ranges"] == b["interval_ranges"] and a["training_positions"] == b["training_positions"]
        assert b["training_examples"] is None and "switched off" in b["training_positions_note"]
        assert "at_training_position" not in b["top_examples"][0] if b["top_examples"] else True


def test_the_summary_names_the_family_and_counts_its_state(setup, plain):
    s, p = setup["summary"], plain["summary"]
    assert "training_examples" in s["examples"]["training_examples"] and p["examples"]["training_examples"] is None
    # the family's top-N and interval reservoirs (24 bytes an entry) with the every-position family's flags
    # (1 byte an entry), and its interval counts
    assert s["state_bytes"] - p["state_bytes"] == M * (5 * 25 + 10 * 3 * 25 + 10 * 8)


@pytest.mark.parametrize("fail_at", [3, 6])  # the third batch of pass 1, the second of pass 2
def test_an_interrupted_run_resumes_to_the_same_training_examples(model, setup, monkeypatch, fail_at):
    import inception_sae.analysis.passes as passes

    calls, real = [0], passes.at_positions

    def failing(*a):
        calls[0] += 1
        if calls[0] == fail_at:
            raise KeyboardInterrupt
        return real(*a)

    cfg = AnalyzeConfig(sae=setup["sae"], images=setup["tmp"] / "imgs", out=setup["tmp"] / f"resumed{fail_at}",
                        checkpoint_every_s=1e-9, **KW)  # fmt: skip
    monkeypatch.setattr(passes, "at_positions", failing)
    with pytest.raises(KeyboardInterrupt):
        analyze(cfg, model=model, progress=False)
    cursor = json.loads((cfg.out / "checkpoint" / "cursor.json").read_text())
    assert (cursor["pass"], cursor["next"]) == ((1, 8) if fail_at == 3 else (2, 4))
    monkeypatch.setattr(passes, "at_positions", real)
    analyze(cfg, model=model, progress=False)
    assert not (cfg.out / "checkpoint").exists()
    for f in range(M):
        a, b = feature(setup["out"], f), feature(cfg.out, f)
        for key in ("training_examples", "top_examples", "intervals", "training_positions"):
            assert a[key] == b[key], (f, key)
