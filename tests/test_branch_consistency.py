"""Cross-layer branch consistency: chance from the pairs' margins, distinct partners as the unit.

Simulated pairs (downstream feature, its top upstream partner) with dominant branches: a planted
5x5 -> 5x5 preference must be found; skewed partner choice, hub partners and a skewed downstream
margin without any label dependence must not be mistaken for agreement.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from inception_sae.circuits.validate import MIN_PAIRS, MIN_PARTNERS, branch_consistency, label_agreement
from inception_sae.compare.summary import branch_pairs

BRANCHES = ["1x1", "3x3", "5x5", "pool", "none"]  # codes 0..4; 2 is 5x5
UP_P = [0.15, 0.15, 0.15, 0.15, 0.4]  # upstream features' dominant branches
DOWN_SKEW = [0.1, 0.1, 0.4, 0.1, 0.3]  # a downstream layer rich in 5x5 features


def names(codes) -> list[str]:
    return [BRANCHES[c] for c in codes]


def planted(rng, m_up: int = 200, m_down: int = 300, strength: float = 0.8):
    """Downstream 5x5 features take an upstream 5x5 feature as top partner with probability ``strength``."""
    la, lb = rng.choice(5, m_up, p=UP_P), rng.choice(5, m_down, p=UP_P)
    ups = rng.integers(0, m_up, m_down)
    sel = (lb == 2) & (rng.random(m_down) < strength)
    ups[sel] = rng.choice(np.flatnonzero(la == 2), sel.sum())
    return la, ups, lb


def skewed(rng, m_up: int = 200, m_down: int = 150, hubs: int = 3, hub_share: float = 0.35, hub_labels=False):
    """No label dependence; partners 5x as likely 5x5, hubs, a 5x5-skewed downstream margin.

    A share ``hub_share`` of downstream features take one of ``hubs`` partners (drawn with the same
    5x5 preference); with ``hub_labels`` the downstream features of one hub share one label drawn from
    the downstream margin (similar features sharing a partner), still independent of the hub's own.
    """
    la, lb = rng.choice(5, m_up, p=UP_P), rng.choice(5, m_down, p=DOWN_SKEW)
    w = np.where(la == 2, 5.0, 1.0) / np.where(la == 2, 5.0, 1.0).sum()
    ups = rng.choice(m_up, m_down, p=w)
    hub = rng.choice(m_up, hubs, replace=False, p=w)
    on_hub = rng.random(m_down) < hub_share
    ups[on_hub] = hub[rng.integers(0, hubs, on_hub.sum())]
    if hub_labels:
        for h in hub:
            lb[ups == h] = rng.choice(5, p=DOWN_SKEW)
    return la, ups, lb


def uniform(rng, m_up: int = 200, m_down: int = 150):
    return rng.choice(5, m_up, p=UP_P), rng.integers(0, m_up, m_down), rng.choice(5, m_down, p=UP_P)


def rejection_rate(simulate, replicates: int, alpha: float = 0.05, **kw) -> float:
    rng = np.random.default_rng(0)
    rejected = []
    for r in range(replicates):
        la, ups, lb = simulate(rng, **kw)
        res = branch_consistency(names(la), names(lb), ups, np.arange(len(lb)), permutations=500, seed=r, bootstrap=50)
        assert res.status == "ok"
        rejected.append(res.p_value <= alpha)
    return float(np.mean(rejected))


def test_planted_consistency_is_rejected():
    rate = rejection_rate(planted, 300)
    assert rate >= 0.9, f"planted 5x5 -> 5x5 consistency rejected in only {rate:.1%} of replicates"


@pytest.mark.parametrize("hub_labels", [False, True])
def test_skewed_partners_and_hubs_without_dependence_are_not_agreement(hub_labels):
    """The chance rate here is well above 1/4; a null over ALL upstream features rejects in ~65% of replicates."""
    rate = rejection_rate(skewed, 300, hub_labels=hub_labels)
    assert rate <= 0.08, f"false rejections at alpha 0.05: {rate:.1%} of 300 replicates"


def test_uniform_partners_without_dependence_are_not_agreement():
    rate = rejection_rate(uniform, 300)
    assert rate <= 0.08, f"false rejections at alpha 0.05: {rate:.1%} of 300 replicates"


def test_skewed_null_agreement_sits_at_chance_from_the_margins():
    """Agreement beyond 1/4 that the margins explain: difference near 0, chance well above the uniform rate."""
    rng = np.random.default_rng(1)
    diffs, chances = [], []
    for r in range(50):
        la, ups, lb = skewed(rng)
        res = branch_consistency(names(la), names(lb), ups, np.arange(len(lb)), permutations=100, seed=r, bootstrap=50)
        diffs.append(res.difference)
        chances.append(res.chance)
    assert abs(np.mean(diffs)) < 0.02 and np.mean(chances) > 0.4


def test_planted_agreement_by_hand():
    branches = ["1x1", "3x3", "5x5", "pool"]
    rng = np.random.default_rng(0)
    names_up = [branches[f % 4] for f in range(40)] + ["none"] * 60
    ups = rng.permutation(100)[:80]  # distinct partners
    names_down = [names_up[u] for u in ups]  # planted: partners share their branch
    same = branch_consistency(names_up, names_down, ups, np.arange(80), permutations=500)
    assert same.status == "ok" and same.labelled_pairs == sum(n != "none" for n in names_down)
    assert same.agreement == 1.0 and same.partner_agreement == pytest.approx(1.0)
    assert same.labelled_partners == same.labelled_pairs  # distinct partners: weighting changes nothing
    assert 0.2 < same.chance < 0.3 and same.ci95[0] > 0.5 and same.p_value < 0.01
    b5 = same.per_branch["5x5"]
    assert b5["up_only"] == b5["down_only"] == 0 and b5["both"] + b5["neither"] == same.labelled_pairs
    assert b5["odds_ratio"] > 10 and b5["ci95"][0] > 1 and b5["p_value"] < 0.01
    shuffled = branch_consistency(names_up, names_down[1:] + names_down[:1], ups, np.arange(80), permutations=500)
    assert shuffled.p_value > 0.2 and shuffled.ci95[0] < 0 < shuffled.ci95[1]


def test_hub_counts_once():
    """One hub partner whose 30 downstream features all agree with it is one observation, not 30."""
    rng = np.random.default_rng(3)
    names_up = ["5x5"] + [BRANCHES[c] for c in rng.integers(0, 4, 59)]
    ups = np.r_[np.zeros(30, int), rng.choice(np.arange(1, 60), 30, replace=False)]
    names_down = ["5x5"] * 30 + [BRANCHES[c] for c in rng.integers(0, 4, 30)]
    res = branch_consistency(names_up, names_down, ups, np.arange(60), permutations=1000)
    assert res.labelled_partners == 31 and res.agreement > 0.6  # the pairs agree far more often than 1/4 ...
    assert res.partner_agreement < 0.35 and res.p_value > 0.05  # ... but 31 partners do not


def test_margins_and_weights_by_hand():
    """Partner 0 (3x3) has 3 downstream features (3x3, 3x3, 1x1); 9 other partners one each."""
    up = ["3x3", "1x1", "1x1", "1x1", "1x1", "3x3", "3x3", "3x3", "1x1", "1x1"]
    ups = [0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    down = ["3x3", "3x3", "1x1", "1x1", "1x1", "3x3", "3x3", "3x3", "1x1", "3x3", "1x1", "1x1"]
    res = label_agreement([up[u] for u in ups], down, ups, permutations=200, bootstrap=50)
    assert res.status == "ok" and (res.labelled_pairs, res.partners) == (12, 10)
    assert res.pair_agreement == pytest.approx(8 / 12)  # pairs 0, 1, 3, 4, 7, 9, 10, 11 agree
    assert res.pair_chance == pytest.approx((6 * 6 + 6 * 6) / 144)  # up: 6 1x1, 6 3x3; down: 6 and 6
    assert res.agreement == pytest.approx((2 / 3 + 6) / 10)  # the hub counts once, with its share 2/3
    p_up = {"1x1": 6 / 10, "3x3": 4 / 10}  # partners' labels, each partner once
    p_down = {"1x1": (1 / 3 + 5) / 10, "3x3": (2 / 3 + 4) / 10}  # downstream labels, each partner's weight 1
    assert res.chance == pytest.approx(sum(p_up[b] * p_down[b] for b in p_up))
    assert res.difference == pytest.approx(res.agreement - res.chance)
    cells = {k: res.per_branch["1x1"][k] for k in ("both", "partner_only", "other_only", "neither")}
    assert cells == {"both": 4, "partner_only": 2, "other_only": 2, "neither": 4}
    assert res.per_branch["1x1"]["odds_ratio"] == pytest.approx(4.5**2 / 2.5**2)  # Haldane +0.5


@pytest.mark.parametrize(
    ("n_pairs", "partners", "status"),
    [
        (3, 3, f"not enough labelled pairs (3 < {MIN_PAIRS})"),
        (40, 2, f"not enough distinct labelled partners (2 < {MIN_PARTNERS})"),
    ],
)
def test_too_few_labelled_pairs_or_partners_say_so(n_pairs, partners, status):
    names_up = ["5x5", "3x3", "pool", "none"]
    ups = np.arange(n_pairs) % partners
    names_down = ["5x5"] * n_pairs + ["none"] * 10  # features labelled "none" are not pairs of the test
    res = branch_consistency(names_up, names_down, np.r_[ups, np.full(10, 3)], np.arange(n_pairs + 10))
    assert res.status == status and res.labelled_pairs == n_pairs and res.pairs == n_pairs + 10
    d = res.to_dict()
    for key in ("agreement", "chance", "partner_agreement", "partner_chance", "difference", "ci95", "p_value"):
        assert d[key] is None, key
    b5 = d["per_branch"]["5x5"]
    assert b5["odds_ratio"] is None and b5["ci95"] is None and b5["both"] + b5["down_only"] == n_pairs
    json.dumps(d, allow_nan=False)


def test_result_is_json_safe():
    rng = np.random.default_rng(2)
    la, ups, lb = skewed(rng)
    d = branch_consistency(names(la), names(lb), ups, np.arange(len(lb)), permutations=100, bootstrap=50).to_dict()
    assert d["status"] == "ok" and d["upstream_features"] >= d["labelled_partners"]
    assert sum(sum(row.values()) for row in d["table"].values()) == d["pairs"] == len(lb)
    assert json.loads(json.dumps(d, allow_nan=False)) == d


def test_branch_pairs_matches_branch_consistency():
    """compare's matched pairs: side-A features with their side-B best match, side B as the partners."""
    rng = np.random.default_rng(4)
    la, ups, lb = skewed(rng)  # upstream = side B (the partners), downstream = side A
    matched = torch.from_numpy(rng.random(len(lb)) < 0.8)
    partner = torch.from_numpy(ups)
    bp = branch_pairs(matched, partner, names(lb), names(la), permutations=300, bootstrap=100, seed=7)
    index = matched.nonzero().flatten().numpy()
    bc = branch_consistency(names(la), names(lb), ups[index], index, permutations=300, seed=7, bootstrap=100)
    assert bp["status"] == bc.status == "ok" and bp["pairs"] == bc.pairs
    assert bp["pairs_with_both_dominant"] == bc.labelled_pairs and bp["partners"] == bc.labelled_partners
    assert bp["same_branch_share"] == pytest.approx(bc.agreement)
    assert bp["chance_same_branch"] == pytest.approx(bc.chance)
    assert bp["partner_same_branch_share"] == pytest.approx(bc.partner_agreement)
    assert bp["partner_chance_same_branch"] == pytest.approx(bc.partner_chance)
    assert bp["difference"] == pytest.approx(bc.difference) and bp["ci95"] == pytest.approx(bc.ci95)
    assert bp["p_value"] == pytest.approx(bc.p_value)
    assert bp["per_branch"]["5x5"]["a_only"] == bc.per_branch["5x5"]["down_only"]
    assert bp["table"] == _transpose(bc.table)
    few = branch_pairs(torch.tensor([True, True, False]), torch.tensor([0, 1, 0]), ["5x5"] * 3, ["5x5", "3x3"])
    assert few["status"] == f"not enough labelled pairs (2 < {MIN_PAIRS})" and few["same_branch_share"] is None
    json.dumps(bp, allow_nan=False)


def _transpose(table: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for a, row in table.items():
        for b, n in row.items():
            out.setdefault(b, {})[a] = n
    return out
