"""Several layers in one pass over the images: the same stores as separate harvests, one forward per batch,
resumable when killed, each store from its own position."""

from __future__ import annotations

import numpy as np
import pytest
from factories import run_cli
from factories.stores import SMALL_HARVEST, store_as_dict

from inception_sae import ActivationStore
from inception_sae.data import harvest as hv
from inception_sae.data.harvest import HarvestConfig, HarvestPassConfig, harvest, harvest_layers, run
from inception_sae.errors import UserError

LAYERS = ("mixed4c", "mixed4d_5x5", "mixed5b")


def configs(image_dir, root, **kw) -> list[HarvestConfig]:
    return [HarvestConfig(images=image_dir, layer=x, out=root / x, **{**SMALL_HARVEST, **kw}) for x in LAYERS]


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_one_pass_equals_separate_harvests_with_one_forward_per_batch(image_dir, tmp_path, monkeypatch):
    kw = {"per_image": 3, "max_images": 6}
    for c in configs(image_dir, tmp_path / "apart", **kw):
        assert harvest(c).complete
    calls = []
    real = hv.capture_views
    monkeypatch.setattr(hv, "capture_views", lambda m, v, layers: calls.append(tuple(layers)) or real(m, v, layers))
    results = harvest_layers(configs(image_dir, tmp_path / "one", **kw))
    assert all(r.complete and r.images == 6 for r in results)
    assert calls == [LAYERS] * 2  # 6 images in batches of 4: two forwards, each for every layer
    for x in LAYERS:
        assert same(
            store_as_dict(ActivationStore.open(tmp_path / "one" / x)),
            store_as_dict(ActivationStore.open(tmp_path / "apart" / x)),
        )


@pytest.mark.slow
def test_killed_pass_resumes_to_the_same_stores_and_a_finished_store_is_left_alone(image_dir, tmp_path, monkeypatch):
    kw = {"per_image": 2, "max_images": 8, "batch_size": 2, "shard_size": 2}
    whole = {
        x: store_as_dict(ActivationStore.open(r.store))
        for x, r in zip(LAYERS, harvest_layers(configs(image_dir, tmp_path / "w", **kw)), strict=True)
    }
    assert harvest(configs(image_dir, tmp_path / "k", **kw)[0]).complete  # one layer finished on its own first
    real, calls = hv.capture_views, []

    def dying(m, v, layers):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(m, v, layers)

    monkeypatch.setattr(hv, "capture_views", dying)
    with pytest.raises(KeyboardInterrupt):
        harvest_layers(configs(image_dir, tmp_path / "k", **kw))
    partial = ActivationStore.open(tmp_path / "k" / LAYERS[1])
    assert partial.status == "in_progress" and 0 < len(partial) < len(whole[LAYERS[1]])
    monkeypatch.setattr(hv, "capture_views", real)
    results = harvest_layers(configs(image_dir, tmp_path / "k", **kw))
    assert results[0].images == 0 and all(r.complete for r in results)  # the finished store was not redone
    for x in LAYERS:
        assert same(store_as_dict(ActivationStore.open(tmp_path / "k" / x)), whole[x]), x


def test_a_pass_refuses_harvests_that_differ_in_shared_settings(image_dir, tmp_path):
    a, b = configs(image_dir, tmp_path)[:2]
    with pytest.raises(UserError, match="must share seed"):
        harvest_layers([a, HarvestConfig(**{**b.__dict__, "seed": 1})])
    with pytest.raises(UserError, match="its own store folder"):
        harvest_layers([a, HarvestConfig(**{**b.__dict__, "out": a.out})])


def test_cli_several_layers_write_one_store_each(image_dir, tmp_path):
    out = tmp_path / "stores"
    args = ["harvest", "--images", str(image_dir), "--out", str(out), "--weights", "random", "--no-progress",
            "--layer", "mixed4c", "--layer", "mixed4d", "--resize", "56", "--crop", "48", "--workers", "0",
            "--max-images", "3", "--per-image", "2"]  # fmt: skip
    r = run_cli(*args)
    assert r.returncode == 0
    err = r.stderr
    for x in ("mixed4c", "mixed4d"):
        st = ActivationStore.open(out / x)
        assert st.status == "complete" and len(st) == 6 and f"{out / x}: complete" in err


def test_stage_run_names_its_layers_and_takes_the_loaded_network(image_dir, tmp_path, model, monkeypatch):
    kw = {"per_image": 2, "max_images": 4}
    for c in configs(image_dir, tmp_path / "apart", **kw)[:2]:
        assert harvest(c).complete
    from inception_sae.models import weights

    def no_load(*_a, **_k):
        raise AssertionError("the stage loaded a network although it was given one")

    monkeypatch.setattr(weights, "load_model", no_load)
    small = {k: v for k, v in SMALL_HARVEST.items() if k not in ("weights", "progress")}
    cfg = HarvestPassConfig(images=image_dir, layers=LAYERS[:2], outs=(tmp_path / "a", tmp_path / "b"),
                            **small, **kw, weights="random")  # fmt: skip
    results = run(cfg, model, progress=False)  # the random:0 network the separate harvests loaded
    assert [r.store for r in results] == [tmp_path / "a", tmp_path / "b"] and all(r.complete for r in results)
    for x, out in zip(LAYERS[:2], ("a", "b"), strict=True):
        assert same(store_as_dict(ActivationStore.open(tmp_path / out)),
                    store_as_dict(ActivationStore.open(tmp_path / "apart" / x)))  # fmt: skip


def test_a_pass_config_names_one_store_per_distinct_layer(image_dir, tmp_path):
    with pytest.raises(UserError, match="at least one layer"):
        HarvestPassConfig(images=image_dir, layers=(), outs=())
    with pytest.raises(UserError, match="2 layers need 2 store folders"):
        HarvestPassConfig(images=image_dir, layers=LAYERS[:2], outs=(tmp_path,))
    with pytest.raises(UserError, match="named twice"):
        HarvestPassConfig(images=image_dir, layers=(LAYERS[0],) * 2, outs=(tmp_path / "a", tmp_path / "b"))
