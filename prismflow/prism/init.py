"""Deterministic per-voxel random initialisation.

Values are a hash of (seed, global voxel index, slot), so a voxel starts from the same point
whether it is fitted in a small slab or in the whole volume — which is what lets a slab-wise
fit agree with a whole-volume fit.
"""

from __future__ import annotations

import numpy as np

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return x ^ (x >> np.uint64(31))


def hashed_uniform(seed: int, index: np.ndarray, n: int) -> np.ndarray:
    """(len(index), n) uniform numbers in (0, 1), a pure function of (seed, index, column)."""
    index = np.asarray(index, dtype=np.uint64).reshape(-1, 1)
    cols = np.arange(n, dtype=np.uint64)[None, :]
    with np.errstate(over="ignore"):
        key = _splitmix64(np.uint64(seed) * np.uint64(0x632BE59BD9B4E019) + np.uint64(1))
        x = _splitmix64(index * np.uint64(0x100000001B3) + cols + key)
    return ((x >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)


def hashed_normal(seed: int, index: np.ndarray, n: int) -> np.ndarray:
    """(len(index), n) standard normal numbers (Box–Muller on :func:`hashed_uniform`)."""
    u = hashed_uniform(seed, index, 2 * n)
    r = np.sqrt(-2.0 * np.log(u[:, :n]))
    return r * np.cos(2.0 * np.pi * u[:, n:])
