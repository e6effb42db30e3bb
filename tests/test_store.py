"""The activation store: bring-your-own writes, sharded memory-mapped reads, verify, stats."""

from __future__ import annotations

import json

import numpy as np
import pytest
from factories import run_cli

from inception_sae import ActivationStore
from inception_sae.errors import UserError


@pytest.fixture
def written(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((103, 8)).astype(np.float32)
    ids = rng.integers(0, 5, 103)
    pos = rng.integers(0, 14, (103, 2))
    images = [f"a/{i}.jpg" for i in range(5)]
    store = ActivationStore.write(
        tmp_path / "s", vectors, "mixed4d", image_ids=ids, positions=pos, images=images, shard_size=25
    )
    return store, vectors, ids, pos, images


def test_write_round_trips(written):
    store, vectors, ids, pos, images = written
    again = ActivationStore.open(store.path)
    assert len(again) == 103 and again.d == 8 and again.layer == "mixed4d" and len(again.shards) == 5
    np.testing.assert_array_equal(np.asarray(again.vectors), vectors)
    np.testing.assert_array_equal(again.image_ids, ids)
    np.testing.assert_array_equal(again.positions, pos)
    np.testing.assert_array_equal(again.views, 0)
    assert again.images == images and again.manifest["status"] == "complete"
    assert isinstance(np.load(store.path / again.shards[0]["file"], mmap_mode="r"), np.memmap)


def test_float16_and_unknown_provenance(tmp_path):
    v = np.arange(12, dtype=np.float64).reshape(4, 3)
    store = ActivationStore.write(tmp_path / "s", v, dtype="float16")
    assert store.vectors.dtype == np.float16 and store.layer is None
    np.testing.assert_array_equal(store.image_ids, -1)
    with pytest.raises(UserError, match="already holds"):
        ActivationStore.write(tmp_path / "s", v)
    with pytest.raises(UserError, match="not an activation store"):
        ActivationStore.open(tmp_path)


def test_sharded_indexing_matches_numpy(written):
    store, vectors, *_ = written
    a = store.vectors
    assert a.shape == vectors.shape and len(a) == 103
    rng = np.random.default_rng(1)
    fancy = rng.integers(-103, 103, 40)
    mask = rng.random(103) < 0.3
    for key in (7, -1, slice(20, 80), slice(None, None, 7), slice(90, 200), fancy, mask, [3, 3, 99], (fancy, 2)):
        np.testing.assert_array_equal(a[key], vectors[key])
    np.testing.assert_array_equal(a[10:60, 1:3], vectors[10:60, 1:3])
    with pytest.raises(IndexError):
        a[103]


def test_verify_detects_corruption(written):
    store, *_ = written
    assert store.verify() == []
    r = run_cli("store", "verify", str(store.path))
    assert r.returncode == 0
    f = store.path / store.shards[2]["file"]
    data = bytearray(f.read_bytes())
    data[-3] ^= 0xFF
    f.write_bytes(bytes(data))
    assert any("sha256 mismatch" in p for p in store.verify())
    r = run_cli("store", "verify", str(store.path))
    assert r.returncode == 1
    r = run_cli("store", "info", str(store.path))
    assert r.returncode == 0
    assert '"vectors": 103' in r.stdout


def test_stats_equal_numpy_and_are_cached(written):
    store, vectors, *_ = written
    s = store.stats(chunk=17)
    v = vectors.astype(np.float64)
    np.testing.assert_allclose(s.mean, v.mean(0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(s.var, v.var(0), rtol=1e-9)
    assert s.mean_sq_norm == pytest.approx((v**2).sum(1).mean(), rel=1e-10)
    cached = json.loads((store.path / "stats.json").read_text())
    assert cached["count"] == 103
    np.testing.assert_allclose(ActivationStore.open(store.path).stats().var, s.var)
