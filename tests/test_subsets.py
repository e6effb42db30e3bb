"""Class-spread subsets and the harvest's seeded visiting order on an ImageNet-shaped, class-sorted folder."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
from factories import make_images, run_cli
from factories.images import classes_per_window

from inception_sae import ActivationStore
from inception_sae.data.harvest import HarvestConfig, harvest
from inception_sae.data.reader import StoreSource
from inception_sae.data.subsets import class_of, spread_subset, subset_record, visit_order

IDS = [f"train/n{c:08d}/img{i:03d}.JPEG" for c in range(7) for i in range(10 + c)]  # class-sorted, uneven


def test_class_of_reads_wnid_folder_or_nothing():
    assert class_of("train/n01440764/x.JPEG") == "n01440764"
    assert class_of("n01440764_123.JPEG") == "n01440764"
    assert class_of("cats/a.png") == "cats" and class_of("a.png") == ""


def test_spread_subset_is_even_over_classes_and_seeded():
    chosen = spread_subset(IDS, 20, seed=3)
    per_class = Counter(class_of(IDS[i]) for i in chosen)
    assert len(chosen) == len(set(chosen)) == 20 and chosen == sorted(chosen)
    assert len(per_class) == 7 and set(per_class.values()) <= {2, 3}  # 20 = 6 x 3 + 1 x 2 ... evenly
    assert spread_subset(IDS, 20, seed=3) == chosen  # a rerun takes the same images
    assert spread_subset(IDS, 20, seed=4) != chosen
    assert spread_subset(IDS[:15], 15, seed=0) == list(range(15)) and spread_subset(IDS, None, 0) == list(range(91))
    first = list(range(20))  # what "the first 20" would be: two classes
    assert len({class_of(IDS[i]) for i in first}) == 2
    rec = subset_record(IDS, chosen, 3)
    assert rec["classes"] == 7 and rec["of"] == len(IDS) and rec["images"] == 20


def test_spread_subset_when_classes_run_out():
    ids = [f"a/{i}.png" for i in range(2)] + [f"b/{i}.png" for i in range(30)]
    chosen = spread_subset(ids, 10, seed=0)
    assert Counter(class_of(ids[i]) for i in chosen) == {"a": 2, "b": 8}


def test_visit_order_is_a_seeded_permutation():
    a = visit_order(50, 1)
    assert sorted(a.tolist()) == list(range(50)) and (a == visit_order(50, 1)).all() and (a != visit_order(50, 2)).any()


def test_harvest_of_a_class_sorted_folder_mixes_classes(tmp_path):
    folder = make_images(tmp_path / "train", 5, classes=6, suffix=".png")
    cfg = HarvestConfig(images=folder, layer="mixed4d", out=tmp_path / "s", weights="random", resize=56, crop=48,
                        workers=0, progress=False, batch_size=4, per_image=3, shard_size=7)  # fmt: skip
    assert harvest(cfg).complete
    store = ActivationStore.open(tmp_path / "s")
    labels = [class_of(store.images[i]) for i in store.image_ids]
    # 10 consecutive images (30 rows): in listing order 2-3 classes; drawn at random 6 x (1 - C(25,10)/C(30,10)) = 5.3
    assert classes_per_window(labels, 30) >= 4.5
    assert classes_per_window(sorted(labels), 30) <= 3
    visited = list(dict.fromkeys(store.image_ids.tolist()))  # images in the order the store holds them
    assert visited == visit_order(30, 0).tolist()
    mix = StoreSource(store, batch_size=45, chunk_rows=3, window_chunks=30).mixing(batches=2)  # 2 batches = one epoch
    assert mix["images_per_batch"] >= 20 and mix["classes_per_batch"] == 6 and mix["classes"] == 6
    r = run_cli("store", "info", str(tmp_path / "s"))
    assert r.returncode == 0
    info = json.loads(r.stdout)
    assert info["order"] == "seeded-shuffle" and info["batch_mixing"]["images_per_batch"] == 30  # one batch: all


def test_max_images_spreads_over_classes(tmp_path):
    folder = make_images(tmp_path / "train", 4, classes=6, suffix=".png")
    cfg = HarvestConfig(images=folder, layer="mixed4d", out=tmp_path / "s", weights="random", resize=56, crop=48,
                        workers=0, progress=False, per_image=1, max_images=12, seed=5)  # fmt: skip
    harvest(cfg)
    store = ActivationStore.open(tmp_path / "s")
    assert Counter(class_of(i) for i in store.images) == {f"n{c:08d}": 2 for c in range(6)}
    assert np.unique(store.image_ids).size == 12
    assert store.manifest["subset"]["classes"] == 6 and store.manifest["subset"]["of"] == 24
