"""``BlochTorreySimulator``: the acquisition fixed once, meshes in, signals out.

The same contract as :func:`prismflow.remidi.simulate_signal`, in the library's
Model → predict shape: the protocol (sequences × b-values × directions) and the physics
are validated once on construction; ``predict(mesh)`` (or calling the object) returns the
signal, differentiable w.r.t. ``mesh.vertices``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...io.errors import InputError
from .matrix_formalism import (B_SCALE, _as_bvalues, _as_directions, _as_sequences,
                               project_operators, signal_from_operators)

__all__ = ["BlochTorreySimulator"]


@dataclass(frozen=True, eq=False)
class BlochTorreySimulator:
    """Matrix-formalism simulator for one acquisition.

    Parameters
    ----------
    sequences : Waveform or list of Waveform — e.g. ``[PGSE(5, 10), PGSE(5, 25)]`` (ms).
    bvalues : (n_b,) — s/mm².
    directions : (n_dir, 3) — unit gradient directions (normalised here).
    diffusivity : float — mm²/s.
    n_eig : int, optional — fixed eigenpair count (recommended while optimising a mesh).
    length_scale_um : float, optional — eigen cut-off ℓ (µm) when ``n_eig`` is None.
    precision : "double" | "single" — propagation arithmetic (eigenproblem always float64).
    tol : float — propagation error bound per segment (relative to S(b=0)).

    Examples
    --------
    >>> sim = BlochTorreySimulator([PGSE(5, 10)], [0, 1000], [[1, 0, 0]])  # doctest: +SKIP
    >>> sim(cylinder_mesh(3, 9)).shape                                       # doctest: +SKIP
    torch.Size([1, 2, 1])
    """

    sequences: object
    bvalues: object
    directions: object
    diffusivity: float = 2e-3
    n_eig: int | None = None
    length_scale_um: float | None = None
    precision: str = "double"
    tol: float = 1e-9
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "sequences", _as_sequences(self.sequences))
        object.__setattr__(self, "bvalues", _as_bvalues(self.bvalues))
        object.__setattr__(self, "directions", _as_directions(self.directions))
        if self.precision not in ("double", "single"):
            raise InputError(f"precision must be 'double' or 'single'; got {self.precision!r}")
        if self.n_eig is not None and int(self.n_eig) < 1:
            raise InputError(f"n_eig must be >= 1; got {self.n_eig}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """(n_seq, n_b, n_dir) of the predicted signal."""
        return (len(self.sequences), int(self.bvalues.shape[0]), int(self.directions.shape[0]))

    def predict(self, mesh, *, normalize: bool = True) -> torch.Tensor:
        """Signal of ``mesh``, shape (n_seq, n_b, n_dir), float64, normalised by b = 0."""
        ops = project_operators(mesh, self.diffusivity, self.n_eig, self.length_scale_um,
                                **self.options)
        dtype = torch.float64 if self.precision == "double" else torch.float32
        tol = max(self.tol, 1e-6) if dtype == torch.float32 else self.tol
        return signal_from_operators(ops, self.sequences, self.bvalues * B_SCALE,
                                     self.directions, normalize=normalize, tol=tol, dtype=dtype)

    __call__ = predict

    def with_vertices(self, mesh, vertices: torch.Tensor) -> torch.Tensor:
        """Signal of ``mesh``'s connectivity at new vertex positions (µm, (V, 3))."""
        return self.predict(mesh.with_vertices(vertices))

