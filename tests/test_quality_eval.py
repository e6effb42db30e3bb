"""`eval` writes the quality panel: absorption and probing on labelled images, stability, L0 advice."""

import json

import torch
from factories import run_cli
from factories.quality import labelled_store, save_sae

from inception_sae.sae.model import TopKSAE


def test_eval_writes_the_quality_panel(tmp_path):
    store, D = labelled_store(tmp_path)
    a = save_sae(tmp_path / "a", D, 2)
    sibs = [save_sae(tmp_path / "b", D, 2, noise=0.2, seed=1)]
    sibs += [save_sae(tmp_path / f"k{k}", D, k, seed=k) for k in (1, 4, 8)]
    rep = tmp_path / "eval.json"
    args = ["eval", "--sae", str(a), "--store", str(store.path), "--report", str(rep), "--max-vectors", "4000"]
    r = run_cli(*args, *[x for s in sibs for x in ("--sibling", str(s))])
    assert r.returncode == 0
    q = json.loads(rep.read_text())["quality"]
    assert q["rows"] == [0, len(store)] == [0, 3200]  # not the training store: its last (here all) rows
    dog = next(p for p in q["absorption"]["parents"] if p["concept"] == "dog")
    # every dog row holds the dog direction: absorbed only where the encoder's top 2 miss it by interference
    assert dog["absorbed"]["rate"] < 0.06 and dog["parent_f1"] > 0.95 and dog["absorbed"]["n"] > 100
    assert q["absorption"]["images"] == q["absorption"]["labelled_images"] == 800
    probe = next(c for c in q["probing"]["concepts"] if c["concept"] == "dog")
    assert probe["probes"][0]["f1"] > 0.95 and probe["test"] > 200
    (stab,) = q["stability"]["siblings"]
    assert stab["sae"] == str(sibs[0]) and stab["mean_cosine"]["mean"] > 0.95 and stab["rows"] == 3200
    assert stab["baseline_mean_cosine"]["mean"] < 0.6
    assert [p["k"] for p in q["l0"]["points"]] == [1, 2, 4, 8]  # one per k
    # tied planted dictionaries with k above a row's one or two directions add interference, not detail
    assert [p["fvu"] for p in q["l0"]["points"]][1:] == sorted(p["fvu"] for p in q["l0"]["points"][1:])
    assert q["l0"]["l0"] is None and "does not fall" in q["l0"]["note"]
    out = r.stdout
    assert "absorption dog: " in out and "stability vs" in out and "L0 advice" in out


def test_images_without_class_labels_skip_absorption_and_probing(tmp_path):
    store, D = labelled_store(tmp_path, labelled=False)
    a = save_sae(tmp_path / "a", D, 2)
    rep = tmp_path / "eval.json"
    r = run_cli("eval", "--sae", str(a), "--store", str(store.path), "--report", str(rep))
    assert r.returncode == 0
    q = json.loads(rep.read_text())["quality"]
    assert q["absorption"]["skipped"].startswith("skipped: no labels")
    assert q["probing"]["skipped"].startswith("skipped: no labels")
    assert "no sibling" in q["stability"]["skipped"] and q["l0"]["l0"] is None
    assert "absorption: skipped: no labels" in r.stdout


def test_sibling_of_another_layer_is_a_one_line_error(tmp_path):
    store, D = labelled_store(tmp_path)
    a = save_sae(tmp_path / "a", D, 2)
    other = TopKSAE.from_tensors({"W_enc": torch.zeros(32, 8), "W_dec": torch.zeros(8, 32), "b_enc": torch.zeros(8),
                                  "b_dec": torch.zeros(32)}, 2, meta={"layer": "mixed4a"})  # fmt: skip
    other.save(tmp_path / "other")
    r = run_cli("eval", "--sae", str(a), "--store", str(store.path), "--sibling", str(tmp_path / "other"))
    assert r.returncode == 2 and "sibling" in r.stderr and len(r.stderr.strip().splitlines()) == 1
