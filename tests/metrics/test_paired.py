"""The paired bootstrap interval against normal theory (an independent reference)."""

import numpy as np
import pytest

from prismflow.metrics.paired import paired_difference


def test_interval_matches_the_normal_theory_interval_of_a_large_sample():
    # for n = 2000 paired differences ~ N(0.3, 1²) the bootstrap percentile interval of the
    # mean must agree with mean ± 1.96 s/√n (the central limit theorem) to a few per cent
    rng = np.random.default_rng(4)
    b = rng.normal(5.0, 2.0, 2000)
    a = b + rng.normal(0.3, 1.0, 2000)
    r = paired_difference(a, b, seed=1)
    d = a - b
    half = 1.959964 * d.std(ddof=1) / np.sqrt(d.size)
    assert r.mean == pytest.approx(d.mean())
    assert r.low == pytest.approx(d.mean() - half, abs=0.1 * half)
    assert r.high == pytest.approx(d.mean() + half, abs=0.1 * half)
    assert r.excludes_zero


def test_pairing_removes_the_shared_spread():
    # a and b share a large per-item spread; their difference is a constant 0.2 plus small
    # noise: the paired interval is narrow and excludes 0, although the unpaired spreads overlap
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 30, 40)
    a = base + 0.2 + rng.normal(0, 0.05, 40)
    r = paired_difference(a, base)
    assert r.excludes_zero and r.high - r.low < 0.1


def test_a_gap_within_the_noise_is_reported_as_such_and_seeds_repeat():
    rng = np.random.default_rng(2)
    b = rng.normal(10, 3, 40)
    a = b + rng.normal(0.0, 3.0, 40)
    r1, r2 = paired_difference(a, b, seed=7), paired_difference(a, b, seed=7)
    assert r1 == r2
    assert not r1.excludes_zero
    assert "CI" in str(r1)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="equal-length"):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        paired_difference([1.0, np.nan], [1.0, 2.0])
