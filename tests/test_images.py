"""Image folders and robust decoding: broken files are counted, odd formats converted."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from inception_sae.data.images import ImageDataset, Preprocess, SkipLog, iter_batches, load_image, wnid_of
from inception_sae.errors import UserError


@pytest.fixture
def broken_folder(tmp_path):
    """Good images in odd formats next to deliberately broken files."""
    root = tmp_path / "train"
    (root / "n01440764").mkdir(parents=True)
    (root / "n02102040").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(root / "n01440764" / "good.JPEG")
    Image.fromarray(rgb).convert("CMYK").save(root / "n01440764" / "cmyk.jpg")
    Image.fromarray(rgb[..., 0]).save(root / "n01440764" / "grey.png")
    Image.fromarray((rng.integers(0, 65535, (64, 80))).astype(np.uint16)).save(root / "n02102040" / "deep16.png")
    rgba = np.concatenate([rgb[:64, :64], np.full((64, 64, 1), 100, np.uint8)], -1)
    Image.fromarray(rgba, "RGBA").save(root / "n02102040" / "alpha.png")
    Image.fromarray(rgb[:100, :100]).convert("P").save(root / "n02102040" / "palette.gif")
    Image.fromarray(rgb[:20, :12]).save(root / "n02102040" / "small.png")  # tiny but decodable
    Image.fromarray(rgb[:3, :3]).save(root / "n02102040" / "tiny.png")  # too small: skipped
    good = (root / "n01440764" / "good.JPEG").read_bytes()
    (root / "n02102040" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "n02102040" / "zero.jpg").write_bytes(b"")
    (root / "n02102040" / "text.png").write_bytes(b"hello, I am not a PNG")
    (root / "n02102040" / "notes.txt").write_text("ignored: not an image extension")
    return root


def test_broken_folder_is_converted_or_counted(broken_folder):
    ds = ImageDataset.from_folder(broken_folder)
    assert len(ds) == 11  # notes.txt is not listed
    skips = SkipLog()
    seen = []
    for images, idx in iter_batches(ds, batch_size=4, skips=skips):
        assert images.shape[1:] == (3, 224, 224) and images.dtype == torch.float32
        assert images.min() >= 0 and images.max() <= 1
        seen += [ds.image_id(i) for i in idx]
    assert skips.total == 4, skips.to_dict()
    assert skips.counts["too_small"] == 1
    assert skips.counts["not_an_image"] + skips.counts["corrupt"] == 3
    assert "n02102040/truncated.jpg" not in seen
    assert {"n01440764/cmyk.jpg", "n01440764/grey.png", "n02102040/deep16.png", "n02102040/alpha.png"} <= set(seen)
    assert "skipped 4 images" in skips.summary()


def test_ids_are_stable_and_labels_come_from_wnid_folders(broken_folder):
    a, b = ImageDataset.from_folder(broken_folder), ImageDataset.from_folder(broken_folder)
    assert [a.image_id(i) for i in range(len(a))] == [b.image_id(i) for i in range(len(b))]
    assert a.label(0) == "n01440764"
    assert wnid_of(__import__("pathlib").Path("n01440764.jpg")) == "n01440764"
    assert wnid_of(__import__("pathlib").Path("foo/bar.jpg")) is None


def test_greyscale_and_16bit_become_rgb(broken_folder):
    grey = load_image(broken_folder / "n01440764" / "grey.png")
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    deep = load_image(broken_folder / "n02102040" / "deep16.png")
    assert deep.max() > 0.5  # scaled from 16 bits, not clipped to black/white garbage
    assert 0.2 < deep.mean() < 0.8


def test_resize_and_crop_geometry(tmp_path):
    img = np.zeros((300, 600, 3), np.uint8)
    img[:, 295:305] = 255  # a vertical bar at the centre
    Image.fromarray(img).save(tmp_path / "wide.png")
    x = load_image(tmp_path / "wide.png", Preprocess(256, 224))
    assert x.shape == (3, 224, 224)
    col = x[0].mean(0)
    assert 105 <= int(col.argmax()) <= 118  # bar stays centred
    y = load_image(tmp_path / "wide.png", Preprocess(resize=0, crop=0))
    assert y.shape == (3, 300, 600)
    with pytest.raises(ValueError):
        Preprocess(resize=200, crop=224)


def test_file_list_and_empty_folder(tmp_path, tiny_images):
    lst = tmp_path / "list.txt"
    lst.write_text("imgs/img001.jpg\n# comment\nimgs/img000.jpg\n")
    ds = ImageDataset.from_path(lst)
    assert [ds.image_id(i) for i in range(len(ds))] == ["imgs/img001.jpg", "imgs/img000.jpg"]
    assert ds[0][0].shape == (3, 224, 224)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        ImageDataset.from_folder(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageDataset.from_folder(tmp_path / "nope")


def test_unreadable_image_lists_are_one_line_errors_naming_the_list(tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_bytes(b"\xff\xfeimg.jpg\n")  # not UTF-8
    with pytest.raises(UserError, match=f"cannot read the image list {lst}"):
        ImageDataset.from_path(lst)
    outside = tmp_path / "sub" / "list.txt"
    outside.parent.mkdir()
    outside.write_text(f"{tmp_path / 'img.jpg'}\n")
    with pytest.raises(UserError, match=r"names .*img\.jpg, outside its folder"):
        ImageDataset.from_path(outside)


def test_workers_are_capped_at_the_cores_with_one_note(tiny_images, monkeypatch, capsys):
    import os
    import warnings

    from inception_sae.data import images

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)  # torch's count too
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(images, "_capped_noted", set())
    assert images.usable_workers(14) == 2 and images.usable_workers(1) == 1 and images.usable_workers(0) == 0
    ds = ImageDataset.from_folder(tiny_images, Preprocess(resize=40, crop=32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "will create 14 worker processes" warning would fail here
        for _ in range(2):  # a stage that makes two loaders still says it once
            assert sum(len(idx) for _, idx in iter_batches(ds, 4, workers=14)) == len(ds)
    err = capsys.readouterr().err
    assert err.count("14 workers asked, 2 used") == 1, err
