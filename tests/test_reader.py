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
