"""The quality panel on a planted hierarchy stored as labelled images: absorption, probing, stability, L0 advice
across a k sweep with two seeds per k (docs/quality.md).

The store holds one row per "image": planted_hierarchy rows with 2 parents of 8 children each, parent 0 named
WordNet "dog" (its children: 8 dog breeds), parent 1 "bird" (8 bird species), rows without a tree labelled with
one of 50 other classes; true L0 = 4. One `train` pass fits k in 1, 2, 4, 8, 16 with seeds 0 and 1 (256 latents,
200,000 samples, 8,192 held-out rows); `eval` then measures each seed-0 SAE against its seed-1 sibling, the k=4
one also against the sweep. Prints one JSON line per k and writes results/quality_panel.json.

    PYTHONPATH=src python benchmarks/quality_panel.py --out /tmp/quality_panel
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from inception_sae import ActivationStore
from inception_sae.cli import main
from inception_sae.data.labels import load_labels
from inception_sae.data.synthetic import planted_hierarchy
from inception_sae.data.wordnet import load_hierarchy

KS = (1, 2, 4, 8, 16)
DOG, BIRD = "n02084071", "n01503061"


def write_store(path: Path) -> float:
    h = planted_hierarchy(60_000, d=64, parents=2, children=8, background=128, p_tree=0.5, background_active=3)
    hier, labels = load_hierarchy(), load_labels()
    dogs, birds = hier.covers[DOG][:8], hier.covers[BIRD][:8]
    others = [c for c in range(1, 1001) if c not in hier.covers[DOG] and c not in hier.covers[BIRD]][:50]
    rng = np.random.default_rng(1)
    cls = np.where(h.child >= 0, np.array(dogs + birds)[np.maximum(h.child, 0)], rng.choice(others, len(h.child)))
    ids = [f"{labels.wnids[c]}/img_{i:05d}.png" for i, c in enumerate(cls)]
    ActivationStore.write(path, h.x, "mixed4a", image_ids=np.arange(len(ids)), images=ids, meta={"model": "random:0"})
    return h.true_l0


def row(k: int, q: dict) -> dict:
    ab = {p["concept"]: p for p in q["absorption"]["parents"]}
    pr = {c["concept"]: c for c in q["probing"]["concepts"] if c.get("probes")}
    (st,) = q["stability"]["siblings"]
    out = {"k": k}
    for name in ("dog", "bird"):
        a = ab[name]["absorbed"]
        out[f"absorbed_{name}"] = [round(a["rate"], 3), *(round(v, 3) for v in a["interval"]), a["n"]]
        out[f"probe_f1_{name}"] = {p["k"]: round(p["f1"], 3) for p in pr[name]["probes"]}
    out["mean_cosine"] = round(st["mean_cosine"]["mean"], 3)
    out["above_0.9"] = round(st["above_0.9"]["rate"], 3)
    out["mcc"] = round(st["mcc"]["mean"], 3)
    out["l0_advice"] = q["l0"].get("l0")
    return out


def run(out: Path) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    store, sweep = out / "store", out / "sweep"
    true_l0 = write_store(store) if not (store / "manifest.json").exists() else None
    train = ["train", "--store", str(store), "--out", str(sweep), "--latents", "256", "--samples", "200000",
             "--held-out", "8192", "--batch-size", "256", "--lr", "4e-3", "--no-progress",
             "--seed", "0", "--seed", "1"]  # fmt: skip
    assert main([*train, *[a for k in KS for a in ("--k", str(k))]]) == 0
    rows = []
    for k in KS:
        sae = sweep / f"k{k}_m256_init_s0"
        sibs = [sweep / f"k{k}_m256_init_s1"] + ([sweep / f"k{j}_m256_init_s0" for j in KS if j != k] if k == 4 else [])
        rep = out / f"eval_k{k}.json"
        args = ["eval", "--sae", str(sae), "--store", str(store), "--report", str(rep)]
        assert main([*args, *[a for s in sibs for a in ("--sibling", str(s))]]) == 0
        rows.append(row(k, json.loads(rep.read_text())["quality"]))
        print(json.dumps({**rows[-1], "true_l0": true_l0}))
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("/tmp/quality_panel"))
    args = ap.parse_args()
    rows = run(args.out)
    res = Path(__file__).with_name("results") / "quality_panel.json"
    res.write_text(json.dumps(rows, indent=1))
