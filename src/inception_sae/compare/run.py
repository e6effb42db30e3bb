"""``compare A B``: how many features of one SAE reappear in another (same layer or another layer).

Same layer: decoder cosine (best match each way, one-to-one assignment). With images: the
correlation of the two SAEs' codes on the same image positions (finer grid pooled onto the
coarser), against a null with the images shuffled. Every share is reported overall, per
dominant branch and per firing-frequency band; ``compare.json`` holds every feature's matches.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..analysis.branches import dominant_branches, label_source
from ..errors import UserError
from ..models.choice import Model
from ..sae.model import TopKSAE
from ..settings import Settings
from . import match, summary
from .report import CompareFolder, CompareResult


@dataclass(frozen=True, kw_only=True)
class CompareSettings(Settings):
    """How two SAEs are compared: what ``run``'s ``compare`` section and the command's flags set."""

    max_images: int = 256
    """images used for the correlation: a seeded spread over the class folders, as every stage takes (`subset` in
    compare.json)"""
    batch_size: int = 16
    """images per batch (at least 3: the null pairs each image with others, in several shuffles)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_size < 3:
            raise UserError(
                f"batch_size must be at least 3 (the null pairs each image with others), got {self.batch_size}"
            )


@dataclass(frozen=True, kw_only=True)
class CompareConfig(CompareSettings, Model):
    """What ``compare`` reads and writes, how, and with which network."""

    sae_a: Path
    """first SAE folder"""
    sae_b: Path
    """second SAE folder"""
    out: Path
    """folder for compare.json and compare.png"""
    images: Path | None = None
    """image folder or list; needed to compare different layers"""
    analysis_a: Path | None = None
    """analysis folder of A (dominant branches, frequencies)"""
    analysis_b: Path | None = None
    """analysis folder of B"""


def side_info(path: Path, sae) -> dict:
    return {"path": str(path), "layer": sae.layer, "d_in": sae.d_in, "d_sae": sae.d_sae, "k": sae.k,
            "model": sae.meta.get("model")}  # fmt: skip


def feature_columns(sim_best: match.BestMatch, one: match.Assignment, prefix: str) -> dict:
    return {
        f"{prefix}_match": sim_best.index.tolist(),
        prefix: summary.rounded(sim_best.value),
        f"{prefix}_1to1_match": one.index.tolist(),
        f"{prefix}_1to1": summary.rounded(one.value),
    }


def matching_block(sim: Tensor, dom: tuple[list[str], list[str]], freq: tuple[Tensor, Tensor] | None,
                   above_null: tuple[Tensor, Tensor] | None = None) -> tuple[dict, dict, dict]:  # fmt: skip
    """Shares of one similarity matrix, and the per-feature columns of each side."""
    best_a, best_b = match.best_matches(sim)
    one_a = match.one_to_one(sim)
    one_b_index = torch.full((sim.shape[1],), -1, dtype=torch.long)
    ok = one_a.index >= 0
    one_b_index[one_a.index[ok]] = ok.nonzero().flatten()
    one_b = match.Assignment(one_b_index, match.matched_values(sim.T, one_b_index), one_a.method)
    block: dict = {"assignment": one_a.method}
    for f, (side, best, one) in enumerate((("a_to_b", best_a, one_a), ("b_to_a", best_b, one_b))):
        d = dom[f]
        extra = above_null[f] if above_null is not None else None
        block[side] = {
            "n": int(best.value.numel()),
            "best_share_above": summary.shares(best.value),
            "one_to_one_share_above": summary.shares(one.value),
            "by_branch": summary.grouped(best.value, d, extra=extra),
        }
        if extra is not None:
            block[side]["share_above_null"] = float(extra.float().mean())
        if freq is not None:
            bands = [summary.freq_band(x) for x in freq[f].tolist()]
            block[side]["by_frequency"] = summary.grouped(best.value, bands, summary.band_order(), extra)
    return block, {"best": best_a, "one": one_a}, {"best": best_b, "one": one_b}


def image_batches(images: Path, max_images: int, batch_size: int, seed: int):
    """The seeded class-spread subset of ``max_images`` images every stage takes (``data.subsets``), in batches;
    the count used and the subset's record."""
    from ..data.images import ImageDataset, iter_batches
    from ..data.subsets import take_spread

    ds = ImageDataset.from_path(images)
    record = take_spread(ds, max_images, seed)
    return (images for images, _ in iter_batches(ds, batch_size)), len(ds), record


def check_pair(a, b, images: Path | None) -> bool:
    """True when both SAEs read the same layer; raise on pairs that cannot be compared."""
    same = a.d_in == b.d_in and (a.layer == b.layer or not a.layer or not b.layer)
    if not same and images is None:
        raise UserError(
            f"the SAEs read different layers ({a.layer}, d={a.d_in} vs {b.layer}, d={b.d_in}): "
            "comparing them needs --images (activation correlation)"
        )
    if images is not None and (not a.layer or not b.layer):
        raise UserError("an SAE's cfg.json names no 'layer': the activation comparison cannot tell what to capture")
    return same


def run(cfg: CompareConfig, model=None, progress: Callable[[int, int], None] | None = None) -> CompareResult:
    """Run the comparison of ``cfg`` and write ``compare.json``, ``compare.png`` in ``cfg.out``.

    ``model`` is ``cfg``'s network when already loaded; ``progress(done, total)`` counts images.
    """
    t0 = time.perf_counter()
    a, b = TopKSAE.load(cfg.sae_a, cfg.device), TopKSAE.load(cfg.sae_b, cfg.device)
    same = check_pair(a, b, cfg.images)
    result: dict = {"a": side_info(cfg.sae_a, a), "b": side_info(cfg.sae_b, b), "same_layer": same,
                    "thresholds": list(summary.THRESHOLDS)}  # fmt: skip
    cols_a: dict = {"id": list(range(a.d_sae))}
    cols_b: dict = {"id": list(range(b.d_sae))}
    freq, acc = None, None
    if cfg.images is not None:
        acc, positions, n_images, subset = correlations(cfg, a, b, model, progress)
    rms = (acc.channel_rms(a.layer), acc.channel_rms(b.layer)) if acc is not None else (None, None)
    dom = (
        dominant_branches(a.W_dec, a.layer, rms[0], cfg.analysis_a),
        dominant_branches(b.W_dec, b.layer, rms[1], cfg.analysis_b),
    )
    cols_a["dominant_branch"], cols_b["dominant_branch"] = dom
    result["dominance"] = {
        "a": label_source(cfg.analysis_a, rms[0], "the compared images"),
        "b": label_source(cfg.analysis_b, rms[1], "the compared images"),
    }
    if acc is not None:
        freq = acc.frequencies()
        corr = acc.correlation()
        live = (freq[0] > 0, freq[1] > 0)
        sides = match.activation_matches(acc, corr)
        tests, r2 = (sides[0].test, sides[1].test), (sides[0].position_r2, sides[1].position_r2)
        tied, above = (sides[0].tied, sides[1].tied), (sides[0].above, sides[1].above)
        block, ca, cb = matching_block(corr, dom, freq, above)
        for f, side in enumerate(("a_to_b", "b_to_a")):
            block[side]["position_tied"] = int(tied[f].sum())
        block["null"] = {"method": f"side B's codes from another image at the same positions, {acc.shuffles} "
                         "shuffles of the images within each batch; each feature's best match against its own "
                         f"null (Fisher z), calibrated on the {match.POOL_FEATURES} features nearest in firing "
                         f"frequency, at p <= {match.NULL_ALPHA:g}; position-tied features (chance-corrected "
                         f"position R^2 > {match.POSITION_R2:g}) never match",
                         "shuffles": acc.shuffles, "alpha": match.NULL_ALPHA, "pool_features": match.POOL_FEATURES,
                         "position_r2_threshold": match.POSITION_R2,
                         "a_to_b": summary_null(tests[0], live[0], tied[0]),
                         "b_to_a": summary_null(tests[1], live[1], tied[1])}  # fmt: skip
        block["branch_pairs"] = summary.branch_pairs(above[0] & live[0], ca["best"].index, *dom)
        result["activation"] = block
        result["images"] = {"source": str(cfg.images), "count": n_images, "positions_per_image": positions,
                            "positions": acc.n, "grid": "finer layer average-pooled onto the coarser grid",
                            "subset": subset}  # fmt: skip
        for f, (cols, c) in enumerate(((cols_a, ca), (cols_b, cb))):
            cols.update(frequency=summary.rounded(freq[f], 6), **feature_columns(c["best"], c["one"], "corr"))
            cols["corr_above_null"] = above[f].tolist()
            cols["corr_null_best"] = summary.rounded(tests[f].location)
            cols["corr_null_q99"] = summary.rounded(tests[f].threshold)
            cols["corr_p"] = summary.rounded(tests[f].p, 5)
            cols["position_r2"] = summary.rounded(r2[f], 3)
            cols["position_tied"] = tied[f].tolist()
    if same:
        sim = match.decoder_cosine(a.W_dec, b.W_dec)
        block, ca, cb = matching_block(sim, dom, freq)
        result["decoder"] = block
        cols_a.update(feature_columns(ca["best"], ca["one"], "cos"))
        cols_b.update(feature_columns(cb["best"], cb["one"], "cos"))
    result["features_a"], result["features_b"] = cols_a, cols_b
    result["seconds"] = round(time.perf_counter() - t0, 2)
    CompareFolder.write(cfg.out, result)
    return CompareResult.from_dict(cfg.out, result)


def summary_null(test: match.NullTest, live: Tensor, tied: Tensor) -> dict:
    """One side's per-feature null over the features that fire: its thresholds' spread, position-tied count."""
    thr, loc = test.threshold[live], test.location[live]
    if not thr.numel():
        return {"q99_median": None, "q99_range": None, "median": None, "n": 0, "position_tied": 0}
    q = torch.quantile(thr.double(), torch.tensor([0.05, 0.5, 0.95], dtype=torch.float64)).tolist()
    return {"q99_median": q[1], "q99_range": [q[0], q[2]], "median": float(loc.median()), "n": int(thr.numel()),
            "position_tied": int((tied & live).sum())}  # fmt: skip


def correlations(cfg: CompareConfig, a, b, model, progress):
    """Stream the images through model and both SAEs; (accumulator, positions per image, images, their subset)."""
    from ..models import load_model

    if model is None:
        model = load_model(cfg.weights, seed=cfg.seed, device=cfg.device)
    for sae, name in ((a, "A"), (b, "B")):
        channels = model.layer_info(sae.layer).channels
        if channels != sae.d_in:
            raise UserError(f"SAE {name} expects d_in={sae.d_in} but {sae.layer} has {channels} channels")
    assert cfg.images is not None  # called only with images
    batches, n, subset = image_batches(cfg.images, cfg.max_images, cfg.batch_size, cfg.seed)
    if min(n, cfg.batch_size) < 3:  # two images have one shuffle only: no spread for the per-feature null
        raise UserError(f"{cfg.images}: the shuffled-image null needs batches of at least 3 images "
                        f"({n} images, batch size {cfg.batch_size})")  # fmt: skip
    done = 0

    def tick(k: int) -> None:
        nonlocal done
        done += k
        if progress is not None:
            progress(done, n)

    from .codes import accumulate

    acc, positions = accumulate(model, a, b, a.layer, b.layer, batches, cfg.device, tick, seed=cfg.seed)
    return acc, positions, done, subset
