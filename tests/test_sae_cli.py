"""`train` / `eval` commands (store faked in-process), splice-back on a random-init model, one-line errors."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from inception_sae.cli import main
from inception_sae.commands import train as train_cmd
from inception_sae.data.images import ImageDataset, iter_batches
from inception_sae.data.source import ArraySource
from inception_sae.errors import UserError
from inception_sae.models import load_model
from inception_sae.sae.evaluate import check_dims, splice_back
from inception_sae.sae.model import SAEConfig, TopKSAE


class FakeStore:
    """Stands in for inception_sae.data.store.ActivationStore (built in parallel by another stage)."""

    def __init__(self, n=1024, d=16, layer="mixed3a"):
        self.vectors = np.random.default_rng(0).random((n, d), dtype=np.float32)
        self.layer, self.manifest = layer, {"model": "random:0"}

    def batch_source(self, batch_size, seed=0, rank=0, world=1):
        return ArraySource(self.vectors, batch_size, seed, rank, world)


@pytest.fixture
def fake_store(monkeypatch):
    store = FakeStore()
    monkeypatch.setattr(train_cmd, "_open_store", lambda path: store)
    return store


def test_train_then_eval_cli(tmp_path, fake_store, capsys):
    out = tmp_path / "sae"
    args = ["train", "--store", "x", "--out", str(out), "--k", "4", "--latents", "64", "--samples", "2048",
            "--batch-size", "256", "--no-progress", "--checkpoint-every", "2"]  # fmt: skip
    assert main(args) == 0
    cfg = json.loads((out / "cfg.json").read_text())
    assert cfg["layer"] == "mixed3a" and cfg["model"] == "random:0" and cfg["d_sae"] == 64
    assert cfg["training"]["samples_seen"] == 2048
    rep = tmp_path / "eval.json"
    assert main(["eval", "--sae", str(out), "--store", "x", "--report", str(rep)]) == 0
    res = json.loads(rep.read_text())["store"]
    assert 0 < res["fvu"] < 1 and res["l0"] <= 4 and "counts" in res["histogram"]


def test_cli_errors_are_one_line(tmp_path, fake_store, capsys):
    assert main(["train", "--out", str(tmp_path)]) == 2
    assert main(["train", "--images", str(tmp_path), "--layer", "mixed3a", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and len(err) == 2
    assert main(["eval", "--sae", str(tmp_path / "nope"), "--store", "x"]) == 2


def _sae_for(layer: str, d: int, tmp_path):
    sae = TopKSAE(SAEConfig(d, 4 * d, 8))
    sae.meta = {"layer": layer, "model": "random:0"}
    sae.save(tmp_path / "sae")
    return TopKSAE.load(tmp_path / "sae")


def test_splice_back_on_random_model(tmp_path):
    for i in range(2):
        rgb = (np.random.default_rng(i).random((64, 64, 3)) * 255).astype(np.uint8)
        Image.fromarray(rgb).save(tmp_path / f"im{i}.png")
    model = load_model("random", seed=0)
    sae = _sae_for("mixed3a", 256, tmp_path)
    ds = ImageDataset.from_path(tmp_path)
    sp, vec = splice_back(sae, model, "mixed3a", iter_batches(ds, 2))
    assert sp.images == 2 and 0 <= sp.top1_agreement <= 1 and sp.kl >= 0 and vec.l0 <= 8
    with pytest.raises(UserError, match="layer mixed3a"):
        check_dims(sae, 256, "mixed4d", "store s")
    with pytest.raises(UserError, match="expects d=256"):
        check_dims(sae, 528, None, "store s")


def test_identity_sae_splices_perfectly(tmp_path):
    """An SAE whose decoder inverts its encoder exactly (k = d) must leave the logits unchanged."""
    model = load_model("random", seed=0)
    d = 256
    sae = TopKSAE(SAEConfig(d, 2 * d, d))
    with torch.no_grad():
        eye = torch.eye(d)
        sae.enc.copy_(torch.cat([eye, -eye]))
        sae.dec.copy_(torch.cat([eye, -eye]))
    sae.meta = {"layer": "mixed3a"}
    x = torch.rand(1, 3, 64, 64)
    sp, vec = splice_back(sae, model, "mixed3a", [(x,)])
    assert sp.top1_agreement == 1.0 and sp.kl < 1e-6 and vec.fvu < 1e-8


def test_eval_images_cli_and_layer_mismatch(tmp_path, capsys):
    rgb = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    (tmp_path / "imgs").mkdir()
    Image.fromarray(rgb).save(tmp_path / "imgs" / "a.png")
    _sae_for("mixed3a", 256, tmp_path)
    rep = tmp_path / "r.json"
    assert main(["eval", "--sae", str(tmp_path / "sae"), "--images", str(tmp_path / "imgs"), "--report", str(rep)]) == 0
    assert json.loads(rep.read_text())["splice"]["images"] == 1
    bad = TopKSAE(SAEConfig(100, 200, 4))
    bad.meta = {"layer": "mixed3a", "model": "random:0"}
    bad.save(tmp_path / "bad")
    assert main(["eval", "--sae", str(tmp_path / "bad"), "--images", str(tmp_path / "imgs")]) == 2
    assert "expects d=100" in capsys.readouterr().err
