"""Noise σ of b0-normalised data from the spread of repeated b=0 volumes: the one estimate.

Per voxel the sample variance s² (ddof 1) of its m b=0 values is σ² χ²_{m−1}/(m − 1). The
median over voxels (robust to voxels with artefacts) is rescaled by the median of that law:

    σ² = median_v(s²_v) · (m − 1) / median(χ²_{m−1}).

The plain median of s is biased low: −7 % in σ with 6 b=0 volumes, −2 % with 18 (measured on
dipy multi-tensor phantoms at SNR 20 and 30; this estimate: within 1–2 % of the true σ).
Units: σ relative to the b0 signal (dimensionless).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import chi2


def b0_noise_sigma(y_b0: np.ndarray) -> float:
    """σ from (V, m) b0-normalised b=0 values (m ≥ 2); NaN when it cannot be estimated."""
    y_b0 = np.asarray(y_b0, dtype=np.float64)
    if y_b0.ndim != 2 or y_b0.shape[0] == 0 or y_b0.shape[1] < 2:
        return float("nan")
    m = y_b0.shape[1]
    var = float(np.median(y_b0.var(axis=1, ddof=1)))
    return float(np.sqrt(var * (m - 1) / chi2.ppf(0.5, m - 1)))
