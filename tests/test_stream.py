"""Streaming batches straight from images through the model."""

from __future__ import annotations

import numpy as np

from inception_sae.data.images import ImageDataset, Preprocess
from inception_sae.data.source import BatchSource
from inception_sae.data.stream import StreamSource


def make(model, image_dir, **kw) -> StreamSource:
    ds = ImageDataset.from_folder(image_dir, Preprocess(56, 48))
    ds.files = ds.files[:6]
    args = {"per_image": 2, "window_images": 4, "image_batch": 3, "seed": 5, **kw}
    return StreamSource(model, ds, "mixed4d", 5, **args)


def test_stream_batches_cover_an_epoch(model, image_dir):
    src = make(model, image_dir)
    assert isinstance(src, BatchSource) and src.d == 528
    batches = [src.next_batch() for _ in range(3)]  # 15 vectors: one epoch (12) and 3 more
    assert all(b.shape == (5, 528) and b.dtype.name == "float32" for b in (x.numpy() for x in batches))
    epoch = np.concatenate([b.numpy() for b in batches])[:12]
    assert len({r.tobytes() for r in epoch}) == 12 and src.epoch == 1


def test_stream_cursor_resume(model, image_dir):
    a = make(model, image_dir)
    a.next_batch()
    state = a.state_dict()
    expected = [a.next_batch() for _ in range(2)]
    b = make(model, image_dir)
    b.load_state_dict(state)
    for e in expected:
        np.testing.assert_allclose(b.next_batch().numpy(), e.numpy(), atol=1e-5)


def test_stream_ranks_use_disjoint_images(model, image_dir):
    r0, r1 = (make(model, image_dir, rank=r, world=2) for r in (0, 1))
    assert not set(r0._my_images(0)) & set(r1._my_images(0))
    assert len(set(r0._my_images(0)) | set(r1._my_images(0))) == 6
