"""Harvest in-process: selection rules, provenance, batching independence, skips, refusals, full disk."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from factories import make_images, run_cli
from factories.stores import SMALL_HARVEST, store_as_dict

from inception_sae import ActivationStore
from inception_sae.data.harvest import HarvestConfig, harvest
from inception_sae.data.images import Preprocess, load_image
from inception_sae.data.sampling import select_positions
from inception_sae.errors import UserError


def run(image_dir: Path, out: Path, **kw) -> ActivationStore:
    cfg = HarvestConfig(images=image_dir, layer=kw.pop("layer", "mixed4d"), out=out, **{**SMALL_HARVEST, **kw})
    result = harvest(cfg)
    assert result.complete
    return ActivationStore.open(out)


def fresh(model, image_dir: Path, image_id: str, layer: str = "mixed4d") -> torch.Tensor:
    x = load_image(image_dir / image_id, Preprocess(56, 48)).unsqueeze(0)
    with torch.no_grad():
        return model.capture(x, [layer])[layer][0]  # (C, H, W)


def test_top_norm_equals_brute_force():
    norms = torch.rand(5, 30)
    norms[0, :] = 0.0  # ties: lowest indices first
    got = select_positions(norms, 4, "top-norm", [[0]] * 5)
    for b in range(5):
        brute = sorted(range(30), key=lambda p: (-norms[b, p].item(), p))[:4]
        assert got[b].tolist() == brute


def test_sampled_rules_without_replacement():
    norms = torch.rand(3, 16)
    norms[:, :10] = 0  # only 6 non-zero positions
    for rule in ("norm-weighted", "uniform"):
        got = select_positions(norms, 8, rule, [[1, b, 0] for b in range(3)])
        assert all(len(set(r)) == 8 for r in got.tolist())
    got = select_positions(norms, 8, "norm-weighted", [[1, b, 0] for b in range(3)])
    assert all(set(range(10, 16)) <= set(r) for r in got.tolist())  # non-zero norms come first


def test_norm_weighted_follows_the_norm():
    norms = torch.tensor([[1.0, 2.0, 0.0, 7.0]])
    firsts = [select_positions(norms, 1, "norm-weighted", [[s, 0, 0]])[0, 0] for s in range(3000)]
    freq = np.bincount(firsts, minlength=4) / 3000
    np.testing.assert_allclose(freq, [0.1, 0.2, 0.0, 0.7], atol=0.03)


@pytest.mark.parametrize("sampling", ["top-norm", "norm-weighted", "uniform"])
def test_stored_vectors_equal_a_fresh_capture(model, image_dir, tmp_path, sampling):
    store = run(image_dir, tmp_path / "s", sampling=sampling, per_image=5, max_images=3)
    assert len(store) == 15 and store.manifest["sampling"] == sampling and store.d == 528
    for img in range(3):
        acts = fresh(model, image_dir, store.images[img])  # (C, 3, 3)
        for r in np.flatnonzero(store.image_ids == img):
            _, _, y, x = store.provenance[r]
            np.testing.assert_allclose(store.vectors[r].astype(np.float32), acts[:, y, x], rtol=2e-3, atol=2e-3)
        if sampling == "top-norm":
            norms = acts.flatten(1).norm(dim=0)  # (9,)
            mine = store.positions[store.image_ids == img]
            top = norms[mine[:, 0] * acts.shape[2] + mine[:, 1]]
            assert sorted(top.tolist()) == sorted(norms.topk(5).values.tolist())


def test_independent_of_batching_and_branch_layer(image_dir, tmp_path):
    kw = {"sampling": "norm-weighted", "per_image": 3, "layer": "mixed4d_5x5", "max_images": 5}
    a = store_as_dict(run(image_dir, tmp_path / "a", batch_size=2, shard_size=4, **kw))
    b = store_as_dict(run(image_dir, tmp_path / "b", batch_size=5, **kw))
    assert a.keys() == b.keys() and len(a) == 15
    assert all(np.allclose(a[k], b[k], atol=1e-3) for k in a)
    assert next(iter(a.values())).shape == (64,)  # the 5x5 branch of mixed4d (channels 384-447)


def test_views_are_reproducible_and_all_positions(image_dir, tmp_path):
    a = run(image_dir, tmp_path / "a", sampling="all", views=3, max_images=2, dtype="float32")
    assert len(a) == 2 * 3 * 9 and sorted(set(a.views.tolist())) == [0, 1, 2]
    b = run(image_dir, tmp_path / "b", sampling="all", views=3, max_images=2, dtype="float32", batch_size=1)
    np.testing.assert_allclose(np.asarray(a.vectors), np.asarray(b.vectors), atol=1e-4)
    v0, v1 = (np.asarray(a.vectors[(a.views == v) & (a.image_ids == 0)]) for v in (0, 1))
    assert not np.allclose(v0, v1)  # an augmented view differs from the eval crop


def test_corrupt_images_are_counted_not_fatal(tmp_path):
    folder = make_images(tmp_path / "img", 4, suffix=".png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "empty.png").write_bytes(b"")
    good = (folder / "img000.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    store = run(folder, tmp_path / "s", per_image=2)
    assert len(store) == 8
    skipped = store.manifest["skipped"]
    assert skipped["total"] == 3 and store.manifest["num_images"] == 7
    assert sorted(x for ex in skipped["examples"].values() for x in ex) == ["broken.jpg", "empty.png", "truncated.png"]


def test_refuses_a_different_command_and_resumes_the_same(image_dir, tmp_path):
    out = tmp_path / "s"
    first = run(image_dir, out, per_image=2, max_images=3)
    again = run(image_dir, out, per_image=2, max_images=3)  # complete: nothing to do
    assert len(again) == len(first) == 6
    for change in ({"per_image": 3}, {"sampling": "uniform"}, {"layer": "mixed4c"}, {"seed": 1}, {"max_images": 4}):
        with pytest.raises(UserError, match="different harvest"):
            run(image_dir, out, **{"per_image": 2, "max_images": 3, **change})


def test_cli_one_line_errors(image_dir, tmp_path):
    base = ["harvest", "--images", str(image_dir), "--out", str(tmp_path / "s"), "--no-progress", "--weights", "random"]
    r = run_cli(*base, "--layer", "mixed4z")
    assert r.returncode == 2
    assert "unknown layer 'mixed4z'" in r.stderr
    (tmp_path / "empty").mkdir()
    r = run_cli("harvest", "--images", str(tmp_path / "empty"), "--layer", "mixed4d", "--out", "x")
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert err[-1].startswith("error: no images")


def test_full_disk_is_one_line_and_resumable(image_dir, tmp_path, monkeypatch):
    import inception_sae.data.store as store_mod
    from inception_sae import fsio

    real, calls = store_mod.atomic_save_npy, []
    real_write = fsio._HashingWriter.write

    def write(self, data):
        if len(calls) > 4:  # two shards (vectors + provenance files) fit, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    def counting(path, array):
        calls.append(path)
        return real(path, array)

    monkeypatch.setattr(fsio._HashingWriter, "write", write)
    monkeypatch.setattr(store_mod, "atomic_save_npy", counting)
    kw = {"per_image": 2, "shard_size": 2, "batch_size": 1, "max_images": 4}
    with pytest.raises(UserError, match="disk full"):
        run(image_dir, tmp_path / "s", **kw)
    partial = ActivationStore.open(tmp_path / "s")
    assert partial.status == "in_progress" and len(partial.shards) == 2 and partial.verify() == []
    assert not [p for p in (tmp_path / "s" / "shards").iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr(store_mod, "atomic_save_npy", real)
    monkeypatch.setattr(fsio._HashingWriter, "write", real_write)
    resumed = store_as_dict(run(image_dir, tmp_path / "s", **kw))
    whole = store_as_dict(run(image_dir, tmp_path / "w", **kw))
    assert resumed.keys() == whole.keys() and all(np.array_equal(resumed[k], whole[k]) for k in whole)


def test_enospc_becomes_a_user_error(tmp_path, monkeypatch):
    from inception_sae import fsio

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fsio.os, "fsync", full)
    with pytest.raises(UserError, match="disk full"):
        fsio.atomic_save_npy(tmp_path / "a.npy", np.zeros(3))
    assert list(tmp_path.iterdir()) == []  # no tmp file left behind


def test_harvest_real_sample_smoke(sample_dir, tmp_path):
    folder = tmp_path / "img"
    folder.mkdir()
    for p in sorted(sample_dir.glob("*.jpg"))[:2]:
        shutil.copy(p, folder / p.name)  # a tmp copy of two files, not into the repo
    store = run(folder, tmp_path / "s", resize=256, crop=224, per_image=10, batch_size=2)
    assert len(store) == 20 and store.positions.max() < 14 and store.positions.max() > 0
