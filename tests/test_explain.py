"""``explain``: the mixed5b logit split is exact; the other layers' split is labelled and checked."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from factories import make_sae, run_cli, unit_rows
from PIL import Image

from inception_sae import TopKSAE
from inception_sae.data.labels import placeholder_labels
from inception_sae.explain import explain_image, gradient_split, image_codes
from inception_sae.explain.run import ExplainConfig


def photo(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:224, 0:224]
    base = np.stack([np.sin(xx / 17.0), np.cos(yy / 23.0), np.sin((xx + yy) / 31.0)], -1) * 90 + 128
    return Image.fromarray(np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8))


def random_sae(tmp_path, layer: str, d: int, m: int, k: int, seed: int = 0):
    """A random SAE with non-zero biases (so every part of the split is exercised)."""
    g = torch.Generator().manual_seed(seed)
    folder = make_sae(tmp_path / f"{layer}_{m}_{k}", W_dec=unit_rows(torch.randn(m, d, generator=g)), layer=layer, k=k)
    sae = TopKSAE.load(folder)
    with torch.no_grad():
        sae.b_dec.copy_(torch.rand(d, generator=g) * 0.5)
        sae.b_enc.copy_(torch.randn(m, generator=g) * 0.1)
    return sae


def hand_sae(tmp_path, d: int = 1024):
    """One feature per channel: W_dec = W_enc = I, k = d, so codes are the activations themselves."""
    sae = TopKSAE.load(make_sae(tmp_path / "eye", W_dec=torch.eye(d), layer="mixed5b", k=d))
    return sae


def check_exact(model, sae, img, top=5):
    r = explain_image(model, sae, img, cfg=ExplainConfig(top_classes=top, top_features=4), names=placeholder_labels())
    from inception_sae.data.images import to_tensor

    with torch.no_grad():
        logits = model(to_tensor(img)[None])[0].double()
    assert r["exact"] and len(r["classes"]) == top
    for c in r["classes"]:
        parts = c["parts"]
        total = parts["features"] + parts["error"] + parts["decoder_bias"] + parts["bias"]
        want = float(logits[c["index"]])
        assert total == pytest.approx(want, abs=2e-5 * (1 + abs(want)))  # float32 forward vs float64 split
        assert c["target"] == pytest.approx(want, abs=2e-5 * (1 + abs(want)))
        assert c["parts"]["bias"] == pytest.approx(float(model.fc.bias[c["index"]]))
    return r


@pytest.mark.parametrize("k", [8, 64])
def test_mixed5b_split_equals_the_model_logit_for_a_random_sae(model, tmp_path, k):
    sae = random_sae(tmp_path, "mixed5b", 1024, 512, k)
    r = check_exact(model, sae, photo(k))
    assert any(c["parts"]["error"] != 0 for c in r["classes"])  # a random SAE leaves an error: it is shown


def test_mixed5b_split_with_the_identity_sae_has_no_error_and_channel_terms(model, tmp_path):
    sae = hand_sae(tmp_path)
    img = photo(1)
    r = check_exact(model, sae, img, top=3)
    from inception_sae.data.images import to_tensor

    with torch.no_grad():
        pooled = model.capture(to_tensor(img)[None], ["mixed5b"])["mixed5b"][0].mean((1, 2)).double()
    W = model.fc.weight.double()
    for c in r["classes"]:
        assert abs(c["parts"]["error"]) < 1e-4 * (1 + abs(c["target"]))
        for f in c["up"] + c["down"]:  # feature i = channel i: term = mean activation x classifier weight
            assert f["term"] == pytest.approx(float(pooled[f["id"]] * W[c["index"], f["id"]]), rel=1e-5, abs=1e-7)
        assert all(f["term"] > 0 for f in c["up"]) and all(f["term"] < 0 for f in c["down"])
        assert c["up"][0]["term"] == pytest.approx(max(float(pooled[i] * W[c["index"], i]) for i in range(1024)))


def test_other_layers_gradient_x_activation_matches_autograd(model, tmp_path):
    from inception_sae.data.images import to_tensor

    sae = random_sae(tmp_path, "mixed4e", 832, 256, 16)
    x = to_tensor(photo(2))[None]
    ic = image_codes(model, sae, x, "mixed4e")
    (s,) = gradient_split(model, sae, ic, "mixed4e", [7], steps=1)
    a = ic.acts.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model.forward_from("mixed4e", a[None])[0, 7], a)
    assert s.total == pytest.approx(float((g.double() * ic.acts.double()).sum()), rel=1e-4, abs=1e-5)
    with torch.no_grad():
        ends = model.forward_from("mixed4e", torch.stack([ic.acts, torch.zeros_like(ic.acts)]))[:, 7]
    assert s.target == pytest.approx(float(ends[0] - ends[1]), rel=1e-5, abs=1e-6)


def test_other_layers_are_labelled_as_an_approximation(model, tmp_path):
    sae = random_sae(tmp_path, "mixed4e", 832, 256, 16)
    r = explain_image(model, sae, photo(3), cfg=ExplainConfig(2, 3, 16), names=placeholder_labels())
    assert not r["exact"] and r["method"].startswith("APPROXIMATION")
    for c in r["classes"]:
        assert c["target_kind"].startswith("logit(image) - logit(zero")
        assert c["total"] == pytest.approx(sum(c["parts"].values()))
        assert np.isfinite(c["residual"])


def test_explain_cli_writes_a_self_contained_report(tmp_path):

    sae = make_sae(tmp_path / "sae", W_dec=unit_rows(torch.randn(128, 1024)), layer="mixed5b", k=8)
    img = tmp_path / "cat.png"
    photo(4).save(img)
    args = ["explain", str(img), "--sae", str(sae), "--weights", "random", "--out", str(tmp_path / "r"),
            "--top-classes", "2", "--top-features", "3", "--site", "../site"]  # fmt: skip
    res = run_cli(*args)
    assert res.returncode == 2  # a hand-made folder records no preprocessing: refused, not guessed
    err = res.stderr.strip().splitlines()
    assert "--resize/--crop" in err[-1] and err[-1].startswith("error:")
    res = run_cli(*args, "--resize", "256", "--crop", "224")
    assert res.returncode == 0
    html = (tmp_path / "r" / "explain.html").read_text()
    assert "SAE reconstruction error" in html and 'href="../site/index.html#/mixed5b/f/' in html
    srcs = re.findall(r'src="([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/") for s in srcs)  # self-contained: every image inline
    assert (tmp_path / "r" / "explain.png").stat().st_size > 10000
    assert "difference" in res.stdout
    assert '<div class="banner" id="banner">UNTRAINED WEIGHTS (random:' in html  # random weights: the red banner


def fake_result(identity: str) -> dict:
    feat = {"id": 7, "heatmap": None, "link": None, "term": 0.0004, "mean_act": 0.00012, "label": ""}
    parts = {"features": 1.25, "error": 0.0004, "decoder_bias": -0.5, "bias": 0.1}
    cls = {
        "name": "tabby",
        "index": 281,
        "prob": 0.0049999,
        "target_kind": "logit",
        "target": 0.8535,
        "parts": parts,
        "total": 0.857,
        "residual": -0.0035,
        "up": [feat],
        "down": [{**feat, "term": -0.2}],
    }
    return {"image": "data:image/png;base64,", "layer": "mixed5b", "identity": identity, "positions": 49,
            "fvu": 0.0123, "method": "exact", "exact": True, "steps": 0, "classes": [cls], "notes": {}}  # fmt: skip


def test_report_numbers_signs_and_banner():
    from inception_sae.display import NEGATIVE_COLOUR, POSITIVE_COLOUR
    from inception_sae.explain.report import render_html

    html = render_html(fake_result("random:seed0"))
    assert "difference -0.0035" in html  # not "difference 0"
    assert "p = 0.005)" in html and "mean act 1.2e-4" in html and "FVU 0.0123" in html
    assert "(+0.047%)" in html  # a small share is not "+0.0%"
    assert f".pos{{color:{POSITIVE_COLOUR}}}" in html and f".neg{{color:{NEGATIVE_COLOUR}}}" in html
    assert "sign-legend" in html and 'id="banner">UNTRAINED WEIGHTS (random:seed0)' in html
    assert 'id="banner"' not in render_html(fake_result("inception5h:sha256:abc"))


def test_explain_cli_bad_image_is_a_one_line_error(tmp_path):

    sae = make_sae(tmp_path / "sae", W_dec=unit_rows(torch.randn(16, 1024)), layer="mixed5b", k=4)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    args = ["explain", str(bad), "--sae", str(sae), "--weights", "random", "--out", str(tmp_path / "r")]
    res = run_cli(*args, "--resize", "256", "--crop", "224")
    assert res.returncode == 2
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "not a decodable image" in err[0]
