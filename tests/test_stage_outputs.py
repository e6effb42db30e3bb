"""Each stage's output class says whether a folder is complete: written whole, yes; cut short or unfinished, no."""

from __future__ import annotations

import json

import numpy as np
import torch
from analysis_helpers import write_sae

from inception_sae.analysis.folder import Analysis
from inception_sae.circuits.folder import CircuitsFolder
from inception_sae.compare.report import CompareFolder, CompareResult
from inception_sae.data.store import MANIFEST, ActivationStore
from inception_sae.featvis.index import FeatvisFolder
from inception_sae.pipeline.stages import ALL_STAGES, Paths, artefact
from inception_sae.sae.eval_stage import EvalReport
from inception_sae.sae.folder import SAEFolder
from inception_sae.site.folder import SiteFolder


def test_store_is_complete_only_with_every_shard_whole(tmp_path):
    vectors = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    store = ActivationStore.write(tmp_path / "s", vectors, "mixed3a", shard_size=20)
    assert ActivationStore.is_complete(store.path) and len(ActivationStore.read(store.path)) == 50
    shard = store.path / store.shards[1]["file"]
    whole = shard.read_bytes()
    shard.write_bytes(whole[: len(whole) - 8 * 4 * 3])  # three rows short
    assert not ActivationStore.is_complete(store.path)
    shard.write_bytes(whole)
    manifest = json.loads((store.path / MANIFEST).read_text())
    (store.path / MANIFEST).write_text(json.dumps({**manifest, "status": "in_progress"}))
    assert not ActivationStore.is_complete(store.path)
    assert not ActivationStore.is_complete(tmp_path / "absent")


def test_sae_folder_is_complete_only_with_its_summary_and_whole_weights(tmp_path):
    folder = write_sae(tmp_path / "sae", torch.randn(16, 8), "mixed3a")
    assert not SAEFolder.is_complete(folder)  # training has not written its summary
    (folder / "train_summary.json").write_text("{}")
    assert SAEFolder.is_complete(folder) and SAEFolder.d_sae(folder) == 16
    assert SAEFolder.read(folder).d_sae == 16
    weights = folder / "sae_weights.safetensors"
    whole = weights.read_bytes()
    for cut in (whole[: len(whole) // 2], whole + b"\0" * 8, whole[:8], b""):  # short, long, header only, empty
        weights.write_bytes(cut)
        assert not SAEFolder.is_complete(folder), len(cut)
    weights.write_bytes(whole)
    (folder / "cfg.json").write_text('{"d_sae": 1')  # cut short
    assert not SAEFolder.is_complete(folder) and SAEFolder.d_sae(folder) == 0


def test_eval_report_round_trips_and_a_cut_file_is_not_complete(tmp_path):
    path = tmp_path / "layer" / "eval.json"
    report = EvalReport("sae", "random:0", True, layer="mixed3a", store={"fvu": 0.25, "held_out": True})
    assert not EvalReport.is_complete(path)
    report.write(path)
    assert EvalReport.is_complete(path) and EvalReport.read(path) == report
    path.write_text(path.read_text()[:20])
    assert not EvalReport.is_complete(path)


def test_summary_files_mark_analysis_circuits_and_compare_complete(tmp_path):
    analysis = tmp_path / "analysis"
    (analysis / "features").mkdir(parents=True)
    (analysis / "features" / "0.json").write_text('{"id": 0}')
    assert not Analysis.is_complete(analysis)
    Analysis.write_summary(analysis, {"layer": "mixed3a", "counts": {"features": 1}})
    assert Analysis.is_complete(analysis)
    assert Analysis.read(analysis).layer == "mixed3a" and Analysis.read(analysis).feature_ids == [0]
    (tmp_path / "c").mkdir()
    CircuitsFolder.write_summary(tmp_path / "c", {"focus": "mixed3b/f/2"})
    assert CircuitsFolder.is_complete(tmp_path / "c") and CircuitsFolder.read(tmp_path / "c")["focus"] == "mixed3b/f/2"
    result = {"a": {"layer": "mixed3a"}, "b": {"layer": "mixed3b"}, "same_layer": False, "thresholds": [0.7, 0.9],
              "dominance": {}, "features_a": {"id": [0, 1, 2, 3], "corr": [0.9, 0.95, 0.5, None],
                                              "corr_above_null": [True, False, True, False],
                                              "corr_null_best": [0.1, 0.2, 0.1, None]},
              "features_b": {"id": [0]}, "seconds": 1.0,
              "activation": {"a_to_b": {"share_above_null": 0.5}, "null": {"a_to_b": {}}}}  # fmt: skip
    assert not CompareFolder.is_complete(tmp_path / "cmp")
    CompareFolder.write(tmp_path / "cmp", result)
    assert CompareFolder.is_complete(tmp_path / "cmp") and (tmp_path / "cmp" / "compare.png").is_file()
    back = CompareFolder.read(tmp_path / "cmp")
    assert isinstance(back, CompareResult) and back.to_dict() == result and back.decoder is None
    assert back.matched_share(0.7) == 0.25 and back.share_above_null == 0.5  # only feature 0: r >= 0.7 and above
    for folder, name in ((analysis, "summary.json"), (tmp_path / "cmp", "compare.json")):
        (folder / name).write_text((folder / name).read_text()[:10])
    assert not Analysis.is_complete(analysis) and not CompareFolder.is_complete(tmp_path / "cmp")


def test_featvis_is_complete_for_the_requested_ids_with_their_pngs(tmp_path):
    out = tmp_path / "fv"
    index = FeatvisFolder.load(out, "random:0")
    index["layers"] = {"mixed3a": {"f": {"items": {str(i): {"png": f"mixed3a/f/{i}.png"} for i in (1, 2)}}}}
    out.mkdir()
    FeatvisFolder.write(out, index)
    (out / "mixed3a" / "f").mkdir(parents=True)
    (out / "mixed3a" / "f" / "1.png").write_bytes(b"png")
    assert FeatvisFolder.is_complete(out, "mixed3a", [1])
    assert not FeatvisFolder.is_complete(out, "mixed3a", [1, 2])  # 2 is recorded but its PNG is missing
    assert not FeatvisFolder.is_complete(out, "mixed3a", [1, 3])  # 3 was never rendered
    assert not FeatvisFolder.is_complete(out, "mixed3b", [1]) and not FeatvisFolder.is_complete(out, "mixed3a", None)
    assert FeatvisFolder.read(out) == index


def test_site_is_complete_only_after_the_build_report(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<html>")
    SiteFolder.mark_building(site)
    assert not SiteFolder.is_complete(site)
    SiteFolder.write_report(site, {"files": 3})
    assert SiteFolder.is_complete(site) and SiteFolder.read(site) == {"files": 3}
    (site / "index.html").unlink()
    assert not SiteFolder.is_complete(site)


def test_every_stage_has_an_output_class_and_a_path(tmp_path):
    paths, layers = Paths(tmp_path), ("mixed3a", "mixed3b")
    for name in ALL_STAGES:
        assert callable(artefact(name).is_complete)
        outs = paths.outputs(name, layers)
        assert outs and all(not artefact(name).is_complete(o) for o in outs if name != "featvis")
    assert paths.outputs("circuits", layers) == [tmp_path / "circuits" / "mixed3a__mixed3b"]
    assert paths.outputs("eval", layers) == [tmp_path / "mixed3a" / "eval.json", tmp_path / "mixed3b" / "eval.json"]
