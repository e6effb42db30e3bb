"""`train` / `eval` commands on a written store (held-out rows, counted reads), splice-back, one-line errors."""

import json

import numpy as np
import pytest
import torch
from factories import run_cli
from PIL import Image

from inception_sae import ActivationStore
from inception_sae.data.images import ImageDataset, iter_batches
from inception_sae.data.sharded import ShardedArray
from inception_sae.errors import UserError
from inception_sae.models import load_model
from inception_sae.sae.measure import check_dims, splice_back
from inception_sae.sae.model import SAEConfig, TopKSAE


@pytest.fixture
def store(tmp_path):
    v = np.random.default_rng(0).random((1024, 16), dtype=np.float32)
    return ActivationStore.write(tmp_path / "store", v, "mixed3a", meta={"model": "random:0"})


TRAIN = ["--k", "4", "--latents", "64", "--batch-size", "256", "--no-progress", "--checkpoint-every", "2"]


def test_train_then_eval_cli(tmp_path, store):
    out = tmp_path / "sae"
    args = ["--store", str(store.path), "--out", str(out), "--samples", "2048", "--log-every", "1"]
    res = run_cli("train", *args, *TRAIN)
    assert res.returncode == 0
    cfg = json.loads((out / "cfg.json").read_text())
    assert cfg["layer"] == "mixed3a" and cfg["model"] == "random:0" and cfg["d_sae"] == 64
    assert cfg["training"]["samples_seen"] == 2048 and cfg["training"]["summary_window_steps"] == 8
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    fvus = [next(iter(r["saes"].values()))["fvu"] for r in log if "saes" in r]
    assert len(fvus) == 8 and cfg["training"]["final_fvu"] == pytest.approx(np.mean(fvus))  # all 8 steps, not the last
    assert cfg["training"]["last_batch"]["fvu"] == pytest.approx(fvus[-1])
    data = log[0]["data"]  # the log opens with what a batch mixes and what training never reads
    assert data["batch_mixing"]["batch_size"] == 256 and data["held_out_rows"] == cfg["training"]["held_out_rows"]
    assert cfg["batch_mixing"]["batch_size"] == 256
    rec = cfg["data"]  # given vectors: no rule selected their positions, and cfg.json says why
    assert rec["rule"] is None and "given vectors" in rec["rule_reason"] and rec["preprocess"] is None
    assert rec["store"]["fingerprint"] == store.fingerprint
    assert rec["held_out"]["rows"] == cfg["training"]["held_out_rows"]
    rep = tmp_path / "eval.json"
    res = run_cli("eval", "--sae", str(out), "--store", str(store.path), "--report", str(rep))
    assert res.returncode == 0 and "held-out vectors (never trained on)" in res.stdout
    ev = json.loads(rep.read_text())["store"]
    assert 0 < ev["fvu"] < 1 and ev["l0"] <= 4 and "counts" in ev["histogram"]


def test_eval_rows_are_disjoint_from_every_row_training_read(tmp_path, store, monkeypatch):
    read = np.zeros(len(store), np.int64)
    real = ShardedArray.__getitem__

    def counting(self, key):
        if self.d == store.d:  # the store's vectors (provenance has d = 4)
            rows = np.arange(len(self))[key] if isinstance(key, slice) else np.asarray(key)
            np.add.at(read, rows, 1)
        return real(self, key)

    def train_and_eval(name: str, held_out: str) -> dict:
        read[:] = 0
        monkeypatch.setattr(ShardedArray, "__getitem__", counting)
        args = ["--store", str(store.path), "--out", str(tmp_path / name), "--samples", "4096", "--held-out", held_out]
        r = run_cli("train", *args, *TRAIN)
        assert r.returncode == 0  # 16 steps of 256: four epochs over the training rows
        monkeypatch.setattr(ShardedArray, "__getitem__", real)
        rep = tmp_path / f"{name}.json"
        r = run_cli("eval", "--sae", str(tmp_path / name), "--store", str(store.path), "--report", str(rep))
        assert r.returncode == 0
        cfg = json.loads((tmp_path / name / "cfg.json").read_text())
        return {"cfg": cfg["training"], "store": json.loads(rep.read_text())["store"]}

    held = train_and_eval("held", "200")
    assert held["cfg"]["held_out_rows"] == [824, 1024]
    (start, end), ev = held["store"]["rows"], held["store"]
    assert (start, end) == (824, 1024) and ev["held_out"] is True and ev["path"] == str(store.path) and ev["n"] == 200
    assert read[start:end].sum() == 0  # training read none of the evaluated rows
    assert (read[:start] >= 4).all()  # and every other row, once per epoch (plus the initialisation sample)

    none = train_and_eval("none", "0")
    assert none["cfg"]["held_out_rows"] is None
    (start, end), ev = none["store"]["rows"], none["store"]
    assert ev["held_out"] is False and (read[start:end] > 0).all()  # evaluated rows were trained on


def test_cli_errors_are_one_line(tmp_path, store):
    for args in (["--out", tmp_path], ["--images", tmp_path, "--layer", "mixed3a", "--out", tmp_path]):
        r = run_cli("train", *args)
        err = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(err) == 1 and err[0].startswith("error: "), err
    r = run_cli("eval", "--sae", str(tmp_path / "nope"), "--store", str(store.path))
    assert r.returncode == 2


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


def test_eval_images_cli_and_layer_mismatch(tmp_path):
    rgb = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    (tmp_path / "imgs").mkdir()
    Image.fromarray(rgb).save(tmp_path / "imgs" / "a.png")
    _sae_for("mixed3a", 256, tmp_path)
    rep = tmp_path / "r.json"
    args = ["eval", "--sae", str(tmp_path / "sae"), "--images", str(tmp_path / "imgs"), "--report", str(rep)]
    res = run_cli(*args)
    assert res.returncode == 2  # a folder made by hand records no harvest: no preprocessing is guessed
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "--harvest-rule" in err[0] and "--resize/--crop" in err[0]
    res = run_cli(*args, "--harvest-rule", "all", "--resize", "64", "--crop", "64")
    assert res.returncode == 0
    splice = json.loads(rep.read_text())["splice"]
    assert splice["images"] == 1 and splice["preprocess"] == {"resize": 64, "crop": 64}
    assert splice["harvest"]["from"] == {"rule": "--harvest-rule", "preprocess": "--resize and --crop"}
    bad = TopKSAE(SAEConfig(100, 200, 4))
    bad.meta = {"layer": "mixed3a", "model": "random:0"}
    bad.save(tmp_path / "bad")
    res = run_cli("eval", "--sae", str(tmp_path / "bad"), "--images", str(tmp_path / "imgs"))
    assert res.returncode == 2
    assert "expects d=100" in res.stderr


def test_eval_cli_report_is_the_stage_report(tmp_path, store):
    from inception_sae.sae.eval_stage import EvalConfig, EvalReport, run

    out, rep = tmp_path / "sae", tmp_path / "deep" / "eval.json"
    assert run_cli("train", "--store", str(store.path), "--out", str(out), "--samples", "1024", *TRAIN).returncode == 0
    res = run_cli("eval", "--sae", str(out), "--store", str(store.path), "--report", str(rep), "--max-vectors", "100")
    assert res.returncode == 0 and EvalReport.is_complete(rep)
    lib = run(EvalConfig(sae=out, store=store.path, max_vectors=100))
    assert json.loads(rep.read_text()) == json.loads(json.dumps(lib.to_dict(), default=float))
    assert EvalReport.read(rep).store["rows"] == [820, 920]  # the first 100 rows of the held-out tail (20%)
