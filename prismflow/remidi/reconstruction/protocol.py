"""Acquisition protocol for mesh reconstruction: PGSE sequences × b-values × directions.

A :class:`Protocol` is immutable and validated once. Its JSON file format (used by
``prismflow-mesh reconstruct --protocol``)::

    {
      "sequences": [{"type": "PGSE", "delta_ms": 5, "Delta_ms": 10},
                    {"type": "PGSE", "delta_ms": 5, "Delta_ms": 25}],
      "bvalues_s_per_mm2": [0, 500, 1000, 2000],
      "directions": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
      "diffusivity_mm2_per_s": 0.002,
      "n_eig": 84,
      "length_scale_um": null
    }

``directions`` may instead be an integer n: n deterministic unit vectors on a hemisphere
(Fibonacci lattice, see :func:`hemisphere_directions`). ``n_eig``/``length_scale_um`` are optional
(simulator eigenpair truncation); keep ``n_eig`` fixed when optimising. The signal matching a
protocol has shape (n_seq, n_b, n_dir) in this order, normalised by its b = 0 value.
Units: ms, s/mm², mm²/s, µm.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from ...io.errors import InputError
from ...io.gradients import fibonacci_hemisphere

__all__ = ["Protocol", "paper_protocol", "hemisphere_directions", "load_signal"]


def hemisphere_directions(n: int) -> torch.Tensor:
    """n unit vectors spread over the upper hemisphere (Fibonacci lattice), deterministic.

    One hemisphere suffices because the signal is symmetric, S(g) = S(−g). The lattice is
    prismflow's one direction set, :func:`prismflow.io.gradients.fibonacci_hemisphere`.

    Returns
    -------
    Tensor, shape (n, 3), float64.
    """
    if n < 1:
        raise ValueError(f"need at least one direction, got {n}")
    return torch.from_numpy(fibonacci_hemisphere(n)).to(torch.float64)


@dataclass(frozen=True)
class Protocol:
    """PGSE sequences × b-values × gradient directions.

    Parameters
    ----------
    sequences : tuple of (delta_ms, Delta_ms) — PGSE pulse duration and separation, ms.
    bvalues : tuple of float — s/mm²; the first must be 0 (signals are normalised by it).
    directions : tuple of (x, y, z) — unit gradient directions (normalised on construction).
    diffusivity : float — intrinsic diffusivity, mm²/s.
    n_eig : int, optional — fixed number of eigenpairs for the simulator.
    length_scale_um : float, optional — eigen cut-off length scale, µm (if n_eig is None).
    """

    sequences: tuple[tuple[float, float], ...]
    bvalues: tuple[float, ...]
    directions: tuple[tuple[float, float, float], ...]
    diffusivity: float = 2e-3
    n_eig: int | None = None
    length_scale_um: float | None = None
    source: str = field(default="<memory>", compare=False)

    def __post_init__(self) -> None:
        src = self.source
        if not self.sequences:
            raise InputError(f"{src}: protocol lists no sequences")
        for d, big in self.sequences:
            if not (d > 0 and big >= d):
                raise InputError(f"{src}: PGSE needs 0 < delta_ms <= Delta_ms, got ({d}, {big})")
        if len(self.bvalues) < 2 or self.bvalues[0] != 0:
            raise InputError(f"{src}: bvalues_s_per_mm2 must start with 0 and list at least one "
                             f"non-zero b-value, got {list(self.bvalues)}")
        if any(b < 0 for b in self.bvalues):
            raise InputError(f"{src}: b-values must be >= 0 s/mm², got {list(self.bvalues)}")
        dirs = []
        for g in self.directions:
            if len(g) != 3:
                raise InputError(f"{src}: each direction needs 3 components, got {list(g)}")
            norm = math.sqrt(sum(c * c for c in g))
            if not norm > 0:
                raise InputError(f"{src}: zero-length gradient direction {list(g)}")
            dirs.append(tuple(float(c) / norm for c in g))
        if not dirs:
            raise InputError(f"{src}: protocol lists no directions")
        object.__setattr__(self, "directions", tuple(dirs))
        if not self.diffusivity > 0:
            raise InputError(f"{src}: diffusivity_mm2_per_s must be > 0, got {self.diffusivity}")
        if self.n_eig is not None and int(self.n_eig) < 2:
            raise InputError(f"{src}: n_eig must be >= 2, got {self.n_eig}")

    # -- shapes and tensors -------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        """(n_seq, n_b, n_dir) — the shape of the matching signal."""
        return (len(self.sequences), len(self.bvalues), len(self.directions))

    def bvalue_tensor(self) -> torch.Tensor:
        """b-values, shape (n_b,), float64, s/mm²."""
        return torch.tensor(self.bvalues, dtype=torch.float64)

    def direction_tensor(self) -> torch.Tensor:
        """Unit directions, shape (n_dir, 3), float64."""
        return torch.tensor(self.directions, dtype=torch.float64)

    def pgse(self) -> list:
        """The sequences as :class:`prismflow.remidi.PGSE` objects."""
        from ..simulator import PGSE

        return [PGSE(d, big) for d, big in self.sequences]

    def with_(self, **changes) -> "Protocol":
        """A new protocol with some fields replaced (``directions`` may be an int)."""
        d = self.to_dict()
        d.update(changes)
        return Protocol.from_dict(d, source=self.source)

    # -- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-ready dict in the file format of the module docstring."""
        return {
            "sequences": [{"type": "PGSE", "delta_ms": d, "Delta_ms": big}
                          for d, big in self.sequences],
            "bvalues_s_per_mm2": list(self.bvalues),
            "directions": [list(g) for g in self.directions],
            "diffusivity_mm2_per_s": self.diffusivity,
            "n_eig": self.n_eig,
            "length_scale_um": self.length_scale_um,
        }

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "<dict>") -> "Protocol":
        """Validate and build from the JSON structure; raises InputError naming ``source``."""
        if not isinstance(data, dict):
            raise InputError(f"{source}: expected a JSON object, got {type(data).__name__}")
        known = {"sequences", "bvalues_s_per_mm2", "directions", "diffusivity_mm2_per_s", "n_eig",
                 "length_scale_um"}
        unknown = set(data) - known
        if unknown:
            raise InputError(f"{source}: unknown protocol keys {sorted(unknown)}; "
                             f"expected some of {sorted(known)}")
        for key in ("sequences", "bvalues_s_per_mm2", "directions"):
            if key not in data:
                raise InputError(f"{source}: protocol is missing '{key}'")
        try:
            seqs = []
            for s in data["sequences"]:
                kind = str(s.get("type", "PGSE")).upper()
                if kind != "PGSE":
                    raise InputError(f"{source}: only PGSE sequences are supported, got {kind!r}")
                seqs.append((float(s["delta_ms"]), float(s["Delta_ms"])))
            bvals = tuple(float(b) for b in data["bvalues_s_per_mm2"])
            dirs = data["directions"]
            if isinstance(dirs, int):
                dirs = hemisphere_directions(dirs).tolist()
            dirs = tuple(tuple(float(c) for c in g) for g in dirs)
            n_eig = data.get("n_eig")
            ls = data.get("length_scale_um")
            return cls(tuple(seqs), bvals, dirs,
                       diffusivity=float(data.get("diffusivity_mm2_per_s", 2e-3)),
                       n_eig=None if n_eig is None else int(n_eig),
                       length_scale_um=None if ls is None else float(ls), source=source)
        except InputError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise InputError(f"{source}: malformed protocol ({type(err).__name__}: {err}); see "
                             "prismflow.remidi.reconstruction.protocol for the format") from err

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Protocol":
        """Read a protocol JSON file; raises InputError with the file name on any problem."""
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError as err:
            raise InputError(f"{path}: protocol file not found") from err
        except json.JSONDecodeError as err:
            raise InputError(f"{path}: not valid JSON ({err})") from err
        return cls.from_dict(data, source=path)


def paper_protocol(
    *,
    n_b: int = 21,
    b_max: float = 10000.0,
    n_dir: int = 30,
    delta_ms: float = 5.0,
    Delta_ms: tuple[float, ...] = (10.0, 25.0, 50.0),
    n_eig: int | None = None,
) -> Protocol:
    """The ReMiDi paper's protocol: b = 0…10000 s/mm² (21 values) × 30 directions × PGSE
    δ = 5 ms, Δ = 10/25/50 ms (diffusion times Δ − δ = 5/20/45 ms); D = 2e-3 mm²/s.

    Parameters
    ----------
    n_b : int — number of equally spaced b-values from 0 to ``b_max`` (s/mm²).
    n_dir : int — number of hemisphere directions (:func:`hemisphere_directions`).
    delta_ms, Delta_ms : PGSE timings, ms.
    n_eig : int, optional — fixed eigenpair count for the simulator.
    """
    bvals = tuple(float(b) for b in torch.linspace(0.0, b_max, n_b).tolist())
    dirs = tuple(tuple(g) for g in hemisphere_directions(n_dir).tolist())
    seqs = tuple((float(delta_ms), float(d)) for d in Delta_ms)
    return Protocol(seqs, bvals, dirs, n_eig=n_eig, source="paper_protocol")


def load_signal(path: str | os.PathLike) -> np.ndarray:
    """Read a b0-normalised signal file: ``.npy``, ``.json`` (a nested list or
    ``{"signal": [...]}``) or whitespace/comma separated text.

    Returns
    -------
    ndarray, float64 — as stored; :func:`prismflow.remidi.reconstruct_from_signal` reshapes it to
    the protocol's (n_seq, n_b, n_dir) in C order. Raises InputError naming the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: signal file not found")
    try:
        if path.endswith(".npy"):
            arr = np.load(path, allow_pickle=False)
        elif path.endswith(".json"):
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            arr = data["signal"] if isinstance(data, dict) else data
        else:
            with open(path, encoding="utf-8") as fh:
                arr = [float(t) for t in fh.read().replace(",", " ").split()]
        arr = np.asarray(arr, dtype=np.float64)
    except (ValueError, KeyError, TypeError, OSError) as err:  # JSONDecodeError is a ValueError
        raise InputError(f"{path}: cannot read a numeric signal ({type(err).__name__}: {err})") \
            from err
    if arr.size == 0:
        raise InputError(f"{path}: signal file holds no values")
    return arr
