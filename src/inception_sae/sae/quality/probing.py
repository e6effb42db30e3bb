"""k-sparse probing: how well do the k latents most tied to a label predict it? (Gao et al. 2024; Gurnee et al.)

For a binary label on per-input codes (n, m) (:func:`sparse_probe`): the inputs are split, stratified and
seeded, into train (70%) and test (30%). On train, latents are ranked by the difference of their mean code on
positive and negative inputs; for each k the top k feed a logistic regression (standardised inputs,
balanced class weights, scikit-learn). On test: F1 of the positive class with a paired-bootstrap 95%
interval, and accuracy with its Wilson interval, with ``n`` the test inputs. The baseline is the label's
majority rate (accuracy) and the F1 of always answering "positive".
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .intervals import paired_interval, share

KS = (1, 2, 5)  #: probe sizes
TEST_FRACTION = 0.3
MIN_POSITIVE = 10  #: a probe needs twice this many positive and negative inputs


def _f1(y: np.ndarray, pred: np.ndarray) -> float:
    """F1 of the positive class (0 with no positive prediction or label): sklearn's, in numpy for the bootstrap."""
    tp = float(np.sum(y & pred))
    denom = float(np.sum(y)) + float(np.sum(pred))
    return 2 * tp / denom if denom else 0.0


def top_latents(codes: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` latents with the largest mean code on positives minus negatives (descending)."""
    diff = codes[y].mean(0) - codes[~y].mean(0)
    return np.argsort(-diff, kind="stable")[:k]


def sparse_probe(codes: np.ndarray, y: np.ndarray, ks=KS, seed: int = 0) -> dict:
    """Held-out F1 and accuracy of k-sparse logistic probes for label ``y`` (see the module docstring)."""
    codes, y = np.asarray(codes, dtype=np.float32), np.asarray(y, bool)
    n_pos = int(y.sum())
    if min(n_pos, len(y) - n_pos) < 2 * MIN_POSITIVE:
        return {"skipped": f"needs >= {2 * MIN_POSITIVE} positive and negative inputs (has {n_pos} of {len(y)})"}
    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=TEST_FRACTION, stratify=y, random_state=seed)
    yte = y[te]
    probes = []
    for k in ks:
        cols = top_latents(codes[tr], y[tr], min(k, codes.shape[1]))
        model = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=1000))
        model.fit(codes[tr][:, cols], y[tr])
        pred = model.predict(codes[te][:, cols]).astype(bool)
        acc = share(int((pred == yte).sum()), len(te))
        probes.append({"k": int(k), "latents": cols.tolist(), "f1": _f1(yte, pred),
                       "f1_interval": paired_interval(_f1, yte, pred, seed),
                       "accuracy": acc["rate"], "accuracy_interval": acc["interval"]})  # fmt: skip
    majority = max(yte.mean(), 1 - yte.mean())
    return {"train": len(tr), "test": len(te), "positive_test": int(yte.sum()), "probes": probes,
            "baseline_accuracy": float(majority), "baseline_f1": _f1(yte, np.ones_like(yte))}  # fmt: skip
