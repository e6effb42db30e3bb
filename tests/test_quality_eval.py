"""`eval` writes the quality panel: absorption and probing on labelled images, stability, L0 advice."""

import json

import numpy as np
import torch

from inception_sae import ActivationStore
from inception_sae.cli import main
from inception_sae.data.labels import load_labels
from inception_sae.data.wordnet import load_hierarchy
from inception_sae.sae.model import TopKSAE

ROWS_PER_IMAGE = 4


def labelled_store(tmp_path, labelled: bool = True):
    """Images of 8 dog breeds and 8 other classes, 4 rows each: one row holds the image's class direction (plus
    the dog direction for dogs), the others a background direction. Returns the store and the dictionary
    (classes, then dog, then 16 background directions)."""
    hier, labels = load_hierarchy(), load_labels()
    dogs = hier.covers["n02084071"][:8]
    others = [c for c in range(1, 1000) if c not in hier.covers["n02084071"]][:8]
    classes = dogs + others
    rng = np.random.default_rng(0)
    D = rng.standard_normal((len(classes) + 1 + 16, 48))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    n_img = 800
    cls = rng.integers(0, len(classes), n_img)
    rows, image = [], []
    for i, c in enumerate(cls):
        x = (1 + rng.exponential()) * D[c] + (1 + rng.exponential()) * D[len(classes)] * (c < len(dogs))
        rows.append(x)
        for _ in range(ROWS_PER_IMAGE - 1):
            rows.append((1 + rng.exponential()) * D[len(classes) + 1 + rng.integers(16)])
        image += [i] * ROWS_PER_IMAGE
    ids = [f"{labels.wnids[classes[c]] if labelled else 'folder'}/img_{i:04d}.png" for i, c in enumerate(cls)]
    v = np.asarray(rows, np.float32) + 0.01 * rng.standard_normal((len(rows), 48)).astype(np.float32)
    store = ActivationStore.write(tmp_path / ("store" if labelled else "plain"), v, "mixed3a", image_ids=image,
                                  images=ids, meta={"model": "random:0"})  # fmt: skip
    return store, torch.as_tensor(D, dtype=torch.float32)


def save_sae(path, D, k, noise=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = D[torch.randperm(len(D), generator=g)] + noise * torch.randn(D.shape, generator=g) / 7
    W = W / W.norm(dim=1, keepdim=True)
    t = {"W_enc": W.t().contiguous(), "W_dec": W, "b_enc": torch.zeros(len(W)), "b_dec": torch.zeros(W.shape[1])}
    sae = TopKSAE.from_tensors(t, k, seed=seed, meta={"layer": "mixed3a", "model": "random:0"})
    sae.save(path)
    return path


def test_eval_writes_the_quality_panel(tmp_path, capsys):
    store, D = labelled_store(tmp_path)
    a = save_sae(tmp_path / "a", D, 2)
    sibs = [save_sae(tmp_path / "b", D, 2, noise=0.2, seed=1)]
    sibs += [save_sae(tmp_path / f"k{k}", D, k, seed=k) for k in (1, 4, 8)]
    rep = tmp_path / "eval.json"
    args = ["eval", "--sae", str(a), "--store", str(store.path), "--report", str(rep), "--max-vectors", "4000"]
    assert main([*args, *[x for s in sibs for x in ("--sibling", str(s))]]) == 0
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
    out = capsys.readouterr().out
    assert "absorption dog: " in out and "stability vs" in out and "L0 advice" in out


def test_images_without_class_labels_skip_absorption_and_probing(tmp_path, capsys):
    store, D = labelled_store(tmp_path, labelled=False)
    a = save_sae(tmp_path / "a", D, 2)
    rep = tmp_path / "eval.json"
    assert main(["eval", "--sae", str(a), "--store", str(store.path), "--report", str(rep)]) == 0
    q = json.loads(rep.read_text())["quality"]
    assert q["absorption"]["skipped"].startswith("skipped: no labels")
    assert q["probing"]["skipped"].startswith("skipped: no labels")
    assert "no sibling" in q["stability"]["skipped"] and q["l0"]["l0"] is None
    assert "absorption: skipped: no labels" in capsys.readouterr().out


def test_sibling_of_another_layer_is_a_one_line_error(tmp_path, capsys):
    store, D = labelled_store(tmp_path)
    a = save_sae(tmp_path / "a", D, 2)
    other = TopKSAE.from_tensors({"W_enc": torch.zeros(32, 8), "W_dec": torch.zeros(8, 32), "b_enc": torch.zeros(8),
                                  "b_dec": torch.zeros(32)}, 2, meta={"layer": "mixed4a"})  # fmt: skip
    other.save(tmp_path / "other")
    code = main(["eval", "--sae", str(a), "--store", str(store.path), "--sibling", str(tmp_path / "other")])
    assert code != 0 and "sibling" in capsys.readouterr().err
