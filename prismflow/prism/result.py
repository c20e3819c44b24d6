"""The result of a PRISM fit: per-voxel maps as numpy arrays, maps as volumes, NIfTI output.

Axis letters: V voxels (the True voxels of ``mask``, C order), N measurements, K fibres,
S slabs. Directions are in the gradient (bvec) frame unless stated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io.nifti import save_json_atomic, save_nifti_atomic
from .fixels import bvec_frame_to_world, fibre_present, peaks_array


@dataclass
class PrismFit:
    """Fitted parameters of the voxels of ``mask``.

    mask : (X, Y, Z) bool.
    s0 : (V,) — S0 in data units.
    fractions : (V, 3 + K) — [csf, gm, restricted, fibre_1..K] volume fractions.
    directions : (V, K, 3) — unit fibre directions sorted by fraction, z ≥ 0 hemisphere.
    f_in : (V, K) — intra-axonal fraction per fibre (one value repeated over a voxel's fibres
        with ``PrismConfig.shared_f_in``, the default).
    predicted : (V, N) float32 — predicted signal (data units), calibration included.
    bias : (V,) — multiplicative bias field (1 when off).
    meas_scale, meas_offset : (S, N) — per-measurement log-scale a_n and offset c_n per slab.
    sigma : (S,) — learned σ relative to the b0 signal per slab (NaN in MSE mode).
    residual_rms : (V,) — root-mean-square residual in data units.
    config : the ``PrismConfig.to_dict()`` that produced it; info : run facts (loss, time...).
    """

    mask: np.ndarray
    s0: np.ndarray
    fractions: np.ndarray
    directions: np.ndarray
    f_in: np.ndarray
    predicted: np.ndarray
    bias: np.ndarray
    meas_scale: np.ndarray
    meas_offset: np.ndarray
    sigma: np.ndarray
    residual_rms: np.ndarray
    config: dict
    info: dict = field(default_factory=dict)

    @property
    def n_fibres(self) -> int:
        return int(self.directions.shape[1])

    @property
    def fibre_fractions(self) -> np.ndarray:
        """(V, K) fibre volume fractions."""
        return self.fractions[:, 3:]

    def present(self) -> np.ndarray:
        """(V, K) bool — fibres reported as present (thresholds from the config)."""
        return fibre_present(self.fibre_fractions, min_fraction=self.config["min_fibre_fraction"],
                             relative_fraction=self.config["relative_fibre_fraction"])

    def peaks(self) -> np.ndarray:
        """(V, 3K) peaks in the bvec frame: direction × fraction, zero where absent."""
        return peaks_array(self.directions, self.fibre_fractions, self.present())

    def volume(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """Scatter per-voxel ``values`` (V, ...) into a (X, Y, Z, ...) volume."""
        out = np.full(self.mask.shape + values.shape[1:], fill, dtype=values.dtype)
        out[self.mask] = values
        return out

    def maps(self, affine: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Named output volumes. With ``affine``, ``peaks`` is in scanner (MRtrix3) frame."""
        k = self.n_fibres
        wm = self.fibre_fractions.sum(1)
        tissue = np.column_stack([self.fractions[:, :3], wm]).astype(np.float32)
        present = self.present()
        dirs = self.directions * present[..., None]
        peaks_world = peaks_array(bvec_frame_to_world(self.directions, affine)
                                  if affine is not None else self.directions,
                                  self.fibre_fractions, present)
        return {
            "tissue_fractions": self.volume(tissue),
            "fibre_directions": self.volume(dirs.reshape(-1, 3 * k).astype(np.float32)),
            "fibre_fractions": self.volume(self.fibre_fractions.astype(np.float32)),
            "peaks": self.volume(peaks_world.astype(np.float32)),
            "n_fibres": self.volume(present.sum(1).astype(np.int16)),
            "f_in": self.volume(self.f_in.astype(np.float32)),
            "s0": self.volume(self.s0.astype(np.float32)),
            "bias_field": self.volume(self.bias.astype(np.float32), fill=1.0),
            "residual_rms": self.volume(self.residual_rms.astype(np.float32)),
            "predicted": self.volume(self.predicted.astype(np.float32)),
        }

    def predict(self, acq, *, bias: bool = True) -> np.ndarray:
        """(V, N) signal of the fitted tissue parameters at acquisition ``acq``, data units.

        dipy's Model → Fit → predict: the forward model of the reported (merged, sorted)
        parameters with the fit's diffusivities, times the bias field when ``bias``. The
        per-measurement affine calibration belongs to the acquisition that was fitted, so it is
        left out; for that acquisition, with calibration off, this is ``self.predicted``.
        """
        from .config import Diffusivities
        from .model import predict

        signal = predict(acq, s0=self.s0, fractions=self.fractions, directions=self.directions,
                         f_in=self.f_in, diffusivities=Diffusivities(**self.config["diffusivities"]))
        return signal * self.bias[:, None] if bias else signal

    def save(self, out_dir: str | Path, affine: np.ndarray, *,
             names: dict[str, str] | None = None, extra_sidecar: dict | None = None) -> dict[str, Path]:
        """Write every map as NIfTI (+ JSON sidecar) under ``out_dir``, atomically.

        ``names`` maps a map key to a file name (default ``<key>.nii.gz``). Also writes
        ``calibration.json`` (per-measurement affine, σ per slab). Returns key → path.
        """
        from ..io.derivatives import output_sidecar

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        written = {}
        base = {"Software": "prismflow", "Model": "PRISM", "Config": self.config,
                **(extra_sidecar or {})}
        for key, data in self.maps(affine).items():
            fname = (names or {}).get(key, f"{key}.nii.gz")
            path = save_nifti_atomic(data, affine, out_dir / fname)
            # description and unit from the derivatives table (one source for both CLIs)
            side = dict(base, **output_sidecar(key, "prism"))
            save_json_atomic(side, out_dir / (fname.replace(".nii.gz", "").replace(".nii", "") + ".json"))
            written[key] = path
        calib = {"meas_log_scale": self.meas_scale, "meas_offset": self.meas_offset,
                 "sigma_relative_to_b0": self.sigma, "info": self.info}
        written["calibration"] = save_json_atomic(calib, out_dir / (names or {}).get("calibration", "calibration.json"))
        return written
