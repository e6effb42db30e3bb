"""Dead and dense latents with their sample: one definition, an interval, and "too few rows" below a minimum."""

from __future__ import annotations

import numpy as np
import pytest

from inception_sae.sae.metrics import DEAD_THRESHOLD, firing_summary, wilson

#: A planted SAE's true firing rates: 10% silent, 5% rare but below the dead threshold, 5% just above it,
#: 5% dense, the rest ordinary. True dead share 15%, dense 5%.
RATES = np.concatenate([np.zeros(100), np.full(50, 3e-5), np.full(50, 3e-4), np.full(50, 0.3), np.full(750, 1e-2)])


@pytest.mark.parametrize("n", [1_000, 10_000, 50_000, 200_000, 1_000_000, 5_000_000])
def test_planted_dead_share_within_its_interval_at_every_sample_size(n):
    rng = np.random.default_rng(n)
    hits = 0
    for _ in range(20):
        s = firing_summary(rng.binomial(n, RATES), n, "planted rows")
        lo, hi = s["dense_interval"]
        assert lo <= 0.05 <= hi
        if n < 38_415:
            assert s["dead_fraction"] is None and "too few rows" in s["status"] and s["never_fired"] >= 100
            continue
        lo, hi = s["dead_interval"]
        hits += lo <= 0.15 <= hi
        assert lo <= s["dead_fraction"] <= hi
    if n >= 38_415:
        assert hits >= 19, (n, hits)  # 95% intervals per latent: the share's bounds hold nearly always


def test_interval_narrows_with_rows_and_never_fired_is_not_dead():
    rng = np.random.default_rng(0)
    wide = firing_summary(rng.binomial(50_000, RATES), 50_000, "rows")
    narrow = firing_summary(rng.binomial(5_000_000, RATES), 5_000_000, "rows")
    assert np.diff(narrow["dead_interval"]) < np.diff(wide["dead_interval"])
    assert narrow["dead_interval"] == pytest.approx([0.15, 0.15], abs=0.002)
    assert wide["never_fired"] > 100  # rare live latents did not fire on these rows: not all of them are dead


def test_wilson_zero_count_is_about_the_rule_of_three():
    lo, hi = wilson(np.array([0.0]), 10_000)
    assert lo[0] == 0 and hi[0] == pytest.approx(3.84 / 10_000, rel=0.01)
    assert pytest.approx(38_415, rel=0.001) == 3.84 / DEAD_THRESHOLD
