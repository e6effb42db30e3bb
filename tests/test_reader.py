"""Shuffled chunked batches from a store: exactly once per epoch, exact resume, disjoint ranks."""

from __future__ import annotations

import numpy as np
import pytest

from inception_sae import ActivationStore
from inception_sae.data.reader import StoreSource
from inception_sae.data.source import BatchSource


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    n, d = 960, 4
    v = np.zeros((n, d), np.float32)
    v[:, 0] = np.arange(n)  # the row id, to check coverage
    v[:, 1:] = np.random.default_rng(0).standard_normal((n, d - 1))
    return ActivationStore.write(tmp_path_factory.mktemp("r") / "s", v, shard_size=100)


def rows_of(batch) -> list[int]:
    return batch[:, 0].numpy().astype(int).tolist()


def test_every_vector_once_per_epoch(store):
    src = StoreSource(store, 64, seed=3, chunk_rows=50, window_chunks=3)
    assert isinstance(src, BatchSource) and src.d == 4
    for epoch in range(2):
        seen = [r for _ in range(960 // 64) for r in rows_of(src.next_batch())]
        assert sorted(seen) == list(range(960)), epoch
        assert src.epoch == epoch
    first = [rows_of(src.next_batch())]
    assert src.epoch == 2 and first != seen[:64]


def test_order_is_shuffled_but_chunked(store):
    src = StoreSource(store, 64, seed=0, chunk_rows=50, window_chunks=3)
    rows = rows_of(src.next_batch())
    assert rows != sorted(rows)
    assert len({r // 50 for r in rows}) <= 3  # a batch comes from one window of 3 chunks


def test_cursor_resume_gives_the_same_batches(store):
    a = StoreSource(store, 48, seed=1, chunk_rows=40, window_chunks=2)
    for _ in range(25):  # into the second epoch
        a.next_batch()
    state = a.state_dict()
    expected = [a.next_batch() for _ in range(6)]
    b = StoreSource(store, 48, seed=99)
    b.load_state_dict(state)
    for e in expected:
        assert (b.next_batch() == e).all()


def test_ranks_are_disjoint_parts_of_the_global_batch(store):
    world = 3
    ranks = [StoreSource(store, 32, seed=2, rank=r, world=world, chunk_rows=64) for r in range(world)]
    single = StoreSource(store, 32 * world, seed=2, chunk_rows=64)
    for _ in range(4):
        parts = [set(rows_of(r.next_batch())) for r in ranks]
        assert all(not (parts[i] & parts[j]) for i in range(world) for j in range(i + 1, world))
        assert set().union(*parts) == set(rows_of(single.next_batch()))


class RecordingVectors:
    """Stands in for ``store.vectors`` and records every row range the reader reads."""

    def __init__(self, vectors) -> None:
        self.inner, self.read = vectors, np.zeros(len(vectors), np.int64)

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, key):
        assert isinstance(key, slice), "the reader reads sequential blocks only"
        start, stop, _ = key.indices(len(self.inner))
        self.read[start:stop] += 1
        return self.inner[key]


def test_held_out_rows_are_never_read(store):
    src = StoreSource(store, 40, seed=4, chunk_rows=30, window_chunks=5, held_out=(700, 860))
    src.vectors = rec = RecordingVectors(store.vectors)
    assert src.n == 800
    for epoch in range(3):
        seen = [r for _ in range(800 // 40) for r in rows_of(src.next_batch())]
        assert sorted(seen) == [r for r in range(960) if not 700 <= r < 860], epoch
    assert rec.read[700:860].sum() == 0  # not one held-out row was read
    assert (rec.read[:700] > 0).all() and (rec.read[860:] > 0).all()
    resumed = StoreSource(store, 40, seed=0)
    resumed.load_state_dict(src.state_dict())  # the held-out range travels with the cursor
    assert resumed.held_out == (700, 860) and (resumed.next_batch() == src.next_batch()).all()
    with pytest.raises(ValueError, match="not inside"):
        StoreSource(store, 40, held_out=(900, 1000))


@pytest.fixture(scope="module")
def image_store(tmp_path_factory):
    """1,000 images of 40 consecutive rows each (like 4 views x 10 positions), 10 classes in random order."""
    n, per = 40_000, 40
    images = [f"n{c:08d}/img{i}.png" for i, c in enumerate(np.random.default_rng(0).integers(0, 10, n // per))]
    v = np.zeros((n, 2), np.float32)
    v[:, 0] = np.arange(n)
    return ActivationStore.write(tmp_path_factory.mktemp("m") / "s", v, image_ids=np.arange(n) // per, images=images)


def test_many_small_chunks_mix_many_images_per_batch(image_store):
    few = StoreSource(image_store, 512, seed=0, chunk_rows=400, window_chunks=4)  # 40-image windows, <= 2 a batch
    many = StoreSource(image_store, 512, seed=0, chunk_rows=8, window_chunks=200)  # same rows, 200 places
    m_few, m_many = few.mixing(batches=6), many.mixing(batches=6)
    assert m_few["images_per_batch"] <= 80 and m_many["images_per_batch"] >= 150
    assert m_many["classes_per_batch"] == 10 and m_many["images"] == 1000 and m_many["classes"] == 10
    brute = [np.unique(rows // 40).size for rows in (many.next_rows()[0] for _ in range(6))]
    assert m_many["images_per_batch"] == pytest.approx(np.mean(brute), abs=0.05)  # mixing() left the cursor alone
