"""Paired comparison of two methods scored on the same voxels: the mean difference and its
bootstrap interval, so that a benchmark can tell a gap from the noise of its sample size.

Units are those of the inputs (degrees for angular errors). Deterministic from ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairedDifference:
    """mean(a − b) over paired samples and its percentile-bootstrap interval."""

    mean: float
    low: float
    high: float
    level: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        """True when the interval lies entirely on one side of 0 (a gap the sample resolves)."""
        return self.low > 0.0 or self.high < 0.0

    def __str__(self) -> str:
        return f"{self.mean:+.2f}, {100 * self.level:.0f} % CI {self.low:+.2f} to {self.high:+.2f}"


def paired_difference(a, b, *, n_boot: int = 4000, level: float = 0.95,
                      seed: int = 0) -> PairedDifference:
    """mean(a − b) with a percentile-bootstrap interval over the pairs (resampled together).

    a, b : (n,) the two methods' scores of the same n items (NaNs are an error: every item
    must be scored by both). n_boot : resamples; level : two-sided coverage.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"a and b must be equal-length non-empty 1-D arrays, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("a and b must be finite: every item must be scored by both methods")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    d = a - b
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    tail = 0.5 * (1.0 - level)
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return PairedDifference(mean=float(d.mean()), low=float(low), high=float(high), level=level,
                            n=int(d.size))
