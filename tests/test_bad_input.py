"""Bad input, one test per row of docs/bad-input.md: a one-line error and exit code 2 (or a counted skip),
and the work already done stays on disk untouched."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest
import torch
from factories import one_line_error, run_args, run_cli, synthetic_images

from inception_sae import ActivationStore
from inception_sae.sae.model import SAEConfig, TopKSAE

DEAD_URL = "http://127.0.0.1:9/nothing-here"


def fingerprint(folder) -> dict:
    return {p.relative_to(folder).as_posix(): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def fake_store(path, layer="mixed3b", d=480, n=2048, nan_rows=0, seed=0) -> ActivationStore:
    v = np.abs(np.random.default_rng(seed).normal(size=(n, d))).astype(np.float32)
    v[:nan_rows, 3] = np.nan
    return ActivationStore.write(path, v, layer, dtype="float32")


@pytest.fixture
def images(tmp_path):
    return synthetic_images(tmp_path / "images", 4)


def test_wrong_layer_name(tmp_path, images):
    r = run_cli(*run_args(images, tmp_path / "run", layers=("mixed4z",)))
    assert r.returncode == 2
    one_line_error(r, "unknown layer 'mixed4z'", "Did you mean")
    assert not (tmp_path / "run").exists()  # refused before anything was written
    r = run_cli(*run_args(images, tmp_path / "run", layers=("mixed4b", "mixed4a")))
    assert r.returncode == 2
    one_line_error(r, "network order")


def test_mismatched_sae_and_store_dims(tmp_path, images):
    run = tmp_path / "run"
    fake_store(run / "mixed3b" / "store")
    sae = TopKSAE(SAEConfig(16, 32, 4), meta={"layer": "mixed3b", "model": "random:0"})
    sae.save(run / "mixed3b" / "sae")
    (run / "mixed3b" / "sae" / "train_summary.json").write_text("{}")
    before = fingerprint(run)
    r = run_cli(*run_args(images, run))
    assert r.returncode == 2
    one_line_error(r, "the SAE expects d=16 but", "has d=480")
    assert {k: v for k, v in fingerprint(run).items() if k != "config.yaml"} == before


def test_sae_of_another_layer(tmp_path):
    fake_store(tmp_path / "store", layer="mixed3b")
    TopKSAE(SAEConfig(480, 32, 4), meta={"layer": "mixed3a"}).save(tmp_path / "sae")
    r = run_cli("eval", "--sae", str(tmp_path / "sae"), "--store", str(tmp_path / "store"))
    assert r.returncode == 2
    one_line_error(r, "trained on layer mixed3a but store", "holds mixed3b")


def test_missing_weights(tmp_path, images, monkeypatch):
    args = run_args(images, tmp_path / "run")
    args[args.index("random")] = str(tmp_path / "nope.pth")
    r = run_cli(*args)
    assert r.returncode == 2
    one_line_error(r, "nope.pth does not exist")
    monkeypatch.setenv("INCEPTION_SAE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("INCEPTION_SAE_WEIGHTS_URL", DEAD_URL)
    args.remove("--weights")
    args.remove(str(tmp_path / "nope.pth"))
    r = run_cli(*args)
    assert r.returncode == 2
    one_line_error(r, "could not download inception5h.pth", "--weights PATH")
    assert sorted(p.name for p in images.rglob("*.png")) == sorted(f"{i:05d}.png" for i in range(4))


def test_empty_image_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    r = run_cli(*run_args(tmp_path / "empty", tmp_path / "run"))
    assert r.returncode == 2
    one_line_error(r, "no images (", "found under")
    r = run_cli(*run_args(tmp_path / "missing", tmp_path / "run"))
    assert r.returncode == 2
    one_line_error(r, "does not exist")


def test_unreadable_images_are_skipped_and_counted(tmp_path, images):
    from inception_sae.data.harvest import HarvestConfig, harvest

    (images / "broken.jpg").write_bytes(b"not a jpeg at all")
    (images / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    (images / "loop_a.jpg").symlink_to(images / "loop_b.jpg")
    (images / "loop_b.jpg").symlink_to(images / "loop_a.jpg")
    cfg = HarvestConfig(
        images=images,
        layer="mixed3b",
        out=tmp_path / "store",
        per_image=2,
        weights="random",
        workers=0,
        resize=37,
        crop=32,
        progress=False,
    )
    result = harvest(cfg)
    assert result.complete and result.skipped == 4 and result.vectors == 4 * 2
    skipped = json.loads((tmp_path / "store" / "manifest.json").read_text())["skipped"]
    assert skipped["by_reason"] == {"not_an_image": 1, "broken_link": 3}


def test_full_disk_during_training_is_one_line_and_resumes(tmp_path, monkeypatch):
    from inception_sae.sae import train as train_mod

    store = fake_store(tmp_path / "store", d=16, n=1024).path
    before = fingerprint(store)
    real = train_mod.ckpt.save_checkpoint

    def full(path, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(train_mod.ckpt, "save_checkpoint", full)
    args = ["train", "--store", str(store), "--out", str(tmp_path / "sae"), "--latents", "32", "--k", "4",
            "--samples", "2048", "--batch-size", "256", "--checkpoint-every", "2", "--no-progress"]  # fmt: skip
    r = run_cli(*args)
    assert r.returncode == 2
    one_line_error(r, "disk full while writing", "checkpoint", "rerun the same command")
    monkeypatch.setattr(train_mod.ckpt, "save_checkpoint", real)
    r = run_cli(*args)
    assert r.returncode == 0
    assert (tmp_path / "sae" / "sae_weights.safetensors").is_file()
    assert fingerprint(store) == before


def test_nan_vectors_are_skipped_with_a_count_or_refused(tmp_path):
    few = fake_store(tmp_path / "few", d=16, n=2048, nan_rows=20).path  # 1%: skipped and counted
    args = ["--latents", "32", "--k", "4", "--samples", "4096", "--batch-size", "512", "--no-progress"]
    args += ["--held-out", "0"]  # eval then takes the store's last 2048 rows: all of it, NaN rows included
    r = run_cli("train", "--store", str(few), "--out", str(tmp_path / "sae"), *args)
    assert r.returncode == 0
    summary = next(iter(json.loads((tmp_path / "sae" / "train_summary.json").read_text()).values()))
    assert summary["nonfinite_skipped"] > 0
    err = r.stderr  # said on the console as it happens, and the total at the end
    assert "warning: skipped" in err and f"skipped {summary['nonfinite_skipped']} input rows holding NaN/inf" in err
    sae = TopKSAE.load(tmp_path / "sae")
    assert all(torch.isfinite(p).all() for p in sae.parameters())
    report = tmp_path / "e.json"
    r = run_cli("eval", "--sae", str(tmp_path / "sae"), "--store", str(few), "--report", str(report))
    assert r.returncode == 0
    ev = json.loads(report.read_text())["store"]
    assert ev["nonfinite_skipped"] == 20 and np.isfinite(ev["fvu"])
    many = fake_store(tmp_path / "many", d=16, n=2048, nan_rows=1024).path  # 50%: refused
    r = run_cli("train", "--store", str(many), "--out", str(tmp_path / "sae2"), *args)
    assert r.returncode == 2
    one_line_error(r, "non-finite (NaN/inf) vectors")
    assert not (tmp_path / "sae2" / "sae_weights.safetensors").exists()


def test_full_disk_while_writing_safetensors_is_one_line_and_keeps_the_last_file(tmp_path):
    """A real full file system (a 64 kB tmpfs), as a training checkpoint or an SAE's weights meet it."""
    import subprocess

    import torch

    from inception_sae.errors import UserError
    from inception_sae.fsio import atomic_save_safetensors

    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        good = atomic_save_safetensors(small / "w.safetensors", {"a": torch.ones(100)})
        with pytest.raises(UserError, match="disk full while writing"):
            atomic_save_safetensors(small / "w.safetensors", {"a": torch.zeros(100_000)})
        from safetensors.torch import load_file

        assert torch.equal(load_file(str(good))["a"], torch.ones(100))  # the last good file is intact
        assert [p.name for p in small.iterdir()] == ["w.safetensors"]  # no temporary file left behind
        mask = os.umask(0o022)
        os.umask(mask)
        assert good.stat().st_mode & 0o777 == 0o666 & ~mask  # created with the umask, not safetensors' 0600
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)
