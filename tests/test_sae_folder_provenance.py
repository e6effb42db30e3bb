"""An SAE folder carries its harvest (cfg.json ``data``): moving or deleting the store changes no later number.

A tiny harvest at a non-default preprocessing (resize 80, crop 64) and rule (top-norm, 4 per image) is
trained on; eval and analyze then run with the store in place, moved, and deleted, and give the same
splice-back and analysis numbers each time. A folder that records no harvest and has no store is refused
in one line naming the flag, unless the flag is given.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from factories import make_images, one_line_error, run_cli

from inception_sae import ActivationStore

HARVEST = ["--layer", "mixed3a", "--weights", "random", "--sampling", "top-norm", "--per-image", "4",
           "--resize", "80", "--crop", "64", "--workers", "0", "--batch-size", "8", "--no-progress"]  # fmt: skip
TRAIN = ["--k", "4", "--latents", "64", "--batch-size", "16", "--samples", "256", "--held-out", "12",
         "--checkpoint-every", "0", "--no-progress"]  # fmt: skip
ANALYZE = ["--weights", "random", "--input-size", "64", "--batch-size", "8", "--n-top", "3", "--render-top", "0",
           "--render-intervals", "0", "--no-umap", "--no-logit-effect", "--checkpoint-every-s", "0"]  # fmt: skip
EVAL = ["--weights", "random", "--max-images", "4", "--batch-size", "4"]
#: summary.json keys that name this run rather than measure the SAE
RUN_KEYS = ("timings_s", "config", "files")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """Images (4 classes x 4), their store and an SAE trained on it."""
    tmp = tmp_path_factory.mktemp("provenance")
    images = make_images(tmp / "imgs", 4, classes=4, suffix=".png")
    store, sae = tmp / "store", tmp / "sae"
    r = run_cli("harvest", "--images", str(images), "--out", str(store), *HARVEST)
    assert r.returncode == 0
    r = run_cli("train", "--store", str(store), "--out", str(sae), *TRAIN)
    assert r.returncode == 0
    return {"tmp": tmp, "images": images, "store": store, "sae": sae}


def evaluate(t: dict[str, Path], name: str, *extra: str, sae: Path | None = None) -> dict:
    rep = t["tmp"] / f"{name}.json"
    args = ["eval", "--sae", str(sae or t["sae"]), "--images", str(t["images"]), "--report", str(rep), *EVAL]
    r = run_cli(*args, *extra)
    assert r.returncode == 0
    return json.loads(rep.read_text())


def analyze(t: dict[str, Path], name: str, *extra: str, sae: Path | None = None) -> dict:
    """summary.json minus what names the run, and every feature's JSON."""
    out = t["tmp"] / name
    args = ["analyze", "--sae", str(sae or t["sae"]), "--images", str(t["images"]), "--out", str(out), *ANALYZE]
    r = run_cli(*args, *extra)
    assert r.returncode == 0
    summary = json.loads((out / "summary.json").read_text())
    feats = {p.name: json.loads(p.read_text()) for p in sorted((out / "features").glob("*.json"))}
    return {"summary": {k: v for k, v in summary.items() if k not in RUN_KEYS}, "features": feats}


def old_folder(t: dict[str, Path], name: str, store: Path) -> Path:
    """A copy of the SAE folder as written before cfg.json recorded its data, naming ``store``."""
    folder = t["tmp"] / name
    shutil.copytree(t["sae"], folder)
    cfg = json.loads((folder / "cfg.json").read_text())
    del cfg["data"]
    (folder / "cfg.json").write_text(json.dumps({**cfg, "store": str(store)}))
    return folder


def test_cfg_json_records_the_harvest(trained):
    cfg = json.loads((trained["sae"] / "cfg.json").read_text())
    data, store = cfg["data"], ActivationStore.open(trained["store"])
    assert data["rule"] == {"sampling": "top-norm", "per_image": 4, "seed": 0}
    assert data["preprocess"]["resize"] == 80 and data["preprocess"]["crop"] == 64
    assert data["layer"] == "mixed3a" and data["model"] == "random:0" and data["views"] == 1
    assert data["store"]["path"] == str(trained["store"]) and data["store"]["fingerprint"] == store.fingerprint
    assert data["store"]["vectors"] == len(store) == 16 * 4
    assert data["images"]["root"] == str(trained["images"].resolve()) and data["images"]["count"] == 16
    assert data["held_out"]["rows"] == cfg["training"]["held_out_rows"] == [52, 64]  # three whole images
    assert len(data["held_out"]["images"]) == 3


@pytest.mark.slow
def test_moving_or_deleting_the_store_changes_no_number(trained):
    t = trained
    old = old_folder(t, "old_sae", t["store"])  # written before the record: reads the store instead, once
    ev0, an0 = evaluate(t, "ev0"), analyze(t, "an0")
    ev_old, an_old = evaluate(t, "ev_old", sae=old), analyze(t, "an_old", sae=old)
    splice = ev0["splice"]
    assert splice["preprocess"] == {"resize": 80, "crop": 64}  # the harvest's, not 256/224
    assert splice["subset"]["from"].startswith("images of the store's held-out rows") and splice["images"] == 3
    assert splice["training_positions"]["rule"]["per_image"] == 4
    assert ev0["store"]["available"] and ev0["store"]["held_out"] and ev0["store"]["rows"] == [52, 64]
    tp = an0["summary"]["training_positions"]
    assert tp["positions"] == 16 * 4 and tp["rule"]["harvest_crop"] == 64 and "approximation" not in tp["note"]
    assert an0["summary"]["harvest"]["from"]["rule"] == "the SAE folder's cfg.json 'data'"
    assert "read once" in an_old["summary"]["harvest"]["from"]["rule"]  # and it says so
    assert ev_old["splice"]["training_positions"] == splice["training_positions"]
    assert an_old["features"] == an0["features"] and an_old["summary"]["counts"] == an0["summary"]["counts"]

    moved = t["tmp"] / "moved" / "store"
    shutil.move(str(t["store"]), moved)
    ev1, an1 = evaluate(t, "ev1"), analyze(t, "an1")
    assert ev1["splice"] == splice and an1 == an0
    assert ev1["store"]["available"] is False and "moved or deleted" in ev1["store"]["note"]
    given = evaluate(t, "ev_given", "--store", str(moved))  # recognised by its fingerprint, not its path
    assert given["store"]["held_out"] and given["store"]["fvu"] == ev0["store"]["fvu"]
    assert given["store"]["path"] == str(moved)

    shutil.rmtree(moved)
    ev2, an2 = evaluate(t, "ev2"), analyze(t, "an2")
    assert ev2["splice"] == splice and an2 == an0 and ev2["store"] == ev1["store"]


def test_a_folder_without_record_or_store_is_refused_unless_flagged(trained):
    t = trained
    gone = old_folder(t, "orphan_sae", t["tmp"] / "nowhere")
    base = ["--sae", str(gone), "--images", str(t["images"])]
    r = run_cli("analyze", *base, "--out", str(t["tmp"] / "refused"), *ANALYZE)
    assert r.returncode == 2
    one_line_error(r, "does not record the harvest rule", "is gone", "--harvest-rule")
    r = run_cli("eval", *base, *EVAL)
    assert r.returncode == 2
    one_line_error(r, "does not record the harvest rule", "preprocessing", "--harvest-rule", "--resize/--crop")

    flagged = analyze(t, "an_flag", "--harvest-rule", "top-norm:4", sae=gone)
    assert flagged["summary"]["harvest"]["from"]["rule"] == "--harvest-rule"
    assert flagged["summary"]["training_positions"]["positions"] == 16 * 4
    ev = evaluate(t, "ev_flag", "--harvest-rule", "top-norm:4", "--resize", "80", "--crop", "64", sae=gone)
    assert ev["splice"]["preprocess"] == {"resize": 80, "crop": 64} and ev["store"]["available"] is False
    none = analyze(t, "an_none", "--harvest-rule", "none", sae=gone)
    assert none["summary"]["training_positions"] is None and "none" in none["summary"]["harvest"]["rule_reason"]
