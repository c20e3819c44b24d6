"""Diffusion-encoding waveforms: PGSE and general piecewise-constant effective gradients.

A waveform is the *effective* time profile f(t) of the gradient (the sign flip of the 180°
refocusing pulse already applied), piecewise constant: segments of duration τ_j (ms) with
amplitude a_j (dimensionless, |a| ≤ 1 by convention). The gradient is g(t) = f(t)·g·u; the
b-value is b = γ²g²·∫₀ᵀ F(t)² dt with F(t) = ∫₀ᵗ f, so the waveform's ``b_factor_ms3`` =
∫F² (ms³) turns b into the wavenumber amplitude q = γg = sqrt(b / b_factor).

Units: ms. PGSE: b = γ²g²δ²(Δ − δ/3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...io.errors import InputError

__all__ = ["Waveform", "PGSE", "DoublePGSE", "OGSE", "PiecewiseConstant"]


@dataclass(frozen=True)
class Waveform:
    """A piecewise-constant effective gradient profile.

    Parameters
    ----------
    durations_ms : tuple of float — segment durations τ_j, ms (≥ 0).
    amplitudes : tuple of float — segment amplitudes a_j (dimensionless).
    """

    durations_ms: tuple
    amplitudes: tuple

    def __post_init__(self):
        d = tuple(float(x) for x in self.durations_ms)
        a = tuple(float(x) for x in self.amplitudes)
        if len(d) != len(a) or not d:
            raise InputError(f"a waveform needs as many durations as amplitudes (got {len(d)} "
                             f"and {len(a)}), at least one")
        if any(x < 0 or not np.isfinite(x) for x in d):
            raise InputError(f"segment durations must be finite and >= 0 ms; got {d}")
        if not all(np.isfinite(a)):
            raise InputError(f"segment amplitudes must be finite; got {a}")
        object.__setattr__(self, "durations_ms", d)
        object.__setattr__(self, "amplitudes", a)

    @property
    def echo_time_ms(self) -> float:
        """Total duration T (ms)."""
        return float(sum(self.durations_ms))

    @property
    def zeroth_moment_ms(self) -> float:
        """∫₀ᵀ f(t) dt (ms): zero for an echo."""
        return float(np.dot(self.durations_ms, self.amplitudes))

    @property
    def b_factor_ms3(self) -> float:
        """∫₀ᵀ F(t)² dt with F(t) = ∫₀ᵗ f (ms³); b = q²·b_factor with q = γg."""
        F0 = 0.0
        total = 0.0
        for tau, a in zip(self.durations_ms, self.amplitudes):
            total += tau * (F0 * F0 + F0 * a * tau + a * a * tau * tau / 3.0)
            F0 += a * tau
        return total

    def segments(self) -> tuple[np.ndarray, np.ndarray]:
        """(durations (J,) ms, amplitudes (J,))."""
        return np.asarray(self.durations_ms), np.asarray(self.amplitudes)

    def is_pgse_like(self) -> bool:
        """True for [τ, +a], [gap, 0], [τ, −a]: the signal then needs one pulse propagation."""
        d, a = self.durations_ms, self.amplitudes
        return (len(d) == 3 and a[1] == 0.0 and d[0] == d[2] and a[0] == -a[2] and a[0] != 0)


def PiecewiseConstant(durations_ms, amplitudes) -> Waveform:
    """A general piecewise-constant effective waveform (see :class:`Waveform`)."""
    return Waveform(tuple(durations_ms), tuple(amplitudes))


def PGSE(delta_ms: float, Delta_ms: float) -> Waveform:
    """Pulsed-gradient spin echo: pulse duration δ and separation Δ (ms), Δ ≥ δ > 0.

    Effective profile +1 on [0, δ], 0 on [δ, Δ], −1 on [Δ, Δ+δ]; b = γ²g²δ²(Δ − δ/3).
    """
    if not (delta_ms > 0 and Delta_ms >= delta_ms):
        raise InputError(f"PGSE needs Δ >= δ > 0 ms; got δ={delta_ms}, Δ={Delta_ms}")
    return Waveform((delta_ms, Delta_ms - delta_ms, delta_ms), (1.0, 0.0, -1.0))


def DoublePGSE(delta_ms: float, Delta_ms: float, mixing_ms: float = 0.0) -> Waveform:
    """Two PGSE blocks (same direction) separated by a mixing time (ms)."""
    one = PGSE(delta_ms, Delta_ms)
    d = one.durations_ms + ((mixing_ms,) if mixing_ms > 0 else ()) + one.durations_ms
    a = one.amplitudes + ((0.0,) if mixing_ms > 0 else ()) + one.amplitudes
    return Waveform(d, a)


def OGSE(delta_ms: float, Delta_ms: float, n_periods: int) -> Waveform:
    """Square-wave oscillating gradient: each lobe of duration δ holds ``n_periods`` periods.

    The second lobe starts Δ after the first and is sign-flipped (refocusing), so the
    waveform is an echo.
    """
    if n_periods < 1:
        raise InputError(f"OGSE needs n_periods >= 1; got {n_periods}")
    if not (delta_ms > 0 and Delta_ms >= delta_ms):
        raise InputError(f"OGSE needs Δ >= δ > 0 ms; got δ={delta_ms}, Δ={Delta_ms}")
    h = delta_ms / (2 * n_periods)
    lobe_d = (h,) * (2 * n_periods)
    lobe_a = (1.0, -1.0) * n_periods
    gap = Delta_ms - delta_ms
    d = lobe_d + ((gap,) if gap > 0 else ()) + lobe_d
    a = lobe_a + ((0.0,) if gap > 0 else ()) + tuple(-x for x in lobe_a)
    return Waveform(d, a)
