"""MRtrix3 CSD and MSMT-CSD through nipype interfaces (``dwi2response``, ``dwi2fod``).

The V voxels are written to a temporary NIfTI of shape (V, 1, 1, N) with a 2-mm diagonal
affine and FSL bval/bvec files; MRtrix3 runs through ``nipype.interfaces.mrtrix3`` (plus small
``CommandLine`` subclasses for ``sh2peaks`` and ``amp2response``); the FOD image is read back and
its peaks found by the shared rule (:mod:`.peaks`), or by ``sh2peaks`` on request.

Frames (FIELD-NOTES trap): MRtrix3 reads FSL bvecs in image-axis convention, negates x when the
image affine has a positive determinant, and rotates them into scanner space; its FOD SH
coefficients and ``sh2peaks`` directions are in scanner space. :func:`scanner_to_bvec` undoes
that, so returned directions are in the bvec frame like every other method.

References
----------
Tournier et al. (2019) NeuroImage 202:116137 — MRtrix3.
Tournier, Calamante, Connelly (2007) NeuroImage 35:1459 — CSD.
Jeurissen et al. (2014) NeuroImage 103:411 — MSMT-CSD.
Dhollander, Raffelt, Connelly (2016) ISMRM Workshop — dhollander response estimation.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from prismflow.io import Acquisition, InputError, write_bval_bvec

from .base import BaselineMethod
from .peaks import apply_rule, peaks_from_sh
from .responses import (ResponseTruth, isotropic_response, select_shell, shell_groups,
                        zonal_tensor_response)

logger = logging.getLogger(__name__)

#: MRtrix3 SH basis in dipy's terms (FIELD-NOTES).
MRTRIX_BASIS = {"basis_type": "tournier07", "legacy": False}
#: affine of the temporary images: 2-mm voxels, positive determinant (x flip applies).
TEMP_AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def mrtrix_available() -> bool:
    """True when ``dwi2fod`` is on PATH."""
    return shutil.which("dwi2fod") is not None


def _interfaces():
    """nipype CommandLine subclasses for the MRtrix3 commands nipype lacks (built lazily)."""
    from nipype.interfaces.base import (CommandLine, CommandLineInputSpec, File, TraitedSpec,
                                        traits)

    class Sh2PeaksInputSpec(CommandLineInputSpec):
        in_file = File(exists=True, argstr="%s", position=-2, mandatory=True,
                       desc="input FOD image (SH coefficients)")
        out_file = File(argstr="%s", position=-1, mandatory=True, desc="output peaks image")
        num = traits.Int(argstr="-num %d", desc="number of peaks per voxel (default 3)")
        threshold = traits.Float(argstr="-threshold %g", desc="absolute amplitude threshold")
        mask_file = File(exists=True, argstr="-mask %s", desc="only voxels in this mask")
        nthreads = traits.Int(argstr="-nthreads %d", nohash=True, desc="number of threads")

    class Sh2PeaksOutputSpec(TraitedSpec):
        out_file = File(exists=True, desc="peaks image: 3 × num frames, scanner space")

    class Sh2Peaks(CommandLine):
        """``sh2peaks``: peaks of an SH image (directions scaled by amplitude, scanner frame)."""

        _cmd = "sh2peaks"
        input_spec = Sh2PeaksInputSpec
        output_spec = Sh2PeaksOutputSpec

        def _list_outputs(self):
            return {"out_file": os.path.abspath(self.inputs.out_file)}

    class Amp2ResponseInputSpec(CommandLineInputSpec):
        amps_file = File(exists=True, argstr="%s", position=-4, mandatory=True,
                         desc="DWI amplitudes with the gradient table in the header (.mif)")
        mask_file = File(exists=True, argstr="%s", position=-3, mandatory=True,
                         desc="single-fibre voxel mask")
        directions_file = File(exists=True, argstr="%s", position=-2, mandatory=True,
                               desc="fibre directions (e.g. tensor2metric -vector)")
        out_file = File(argstr="%s", position=-1, mandatory=True, desc="response text file")
        shells = traits.List(traits.Float, argstr="-shells %s", sep=",",
                             desc="b-values of the shells to use")
        lmax = traits.List(traits.Int, argstr="-lmax %s", sep=",",
                           desc="maximum harmonic degree, one per shell (b=0 included)")
        isotropic = traits.Bool(argstr="-isotropic", desc="isotropic response")
        nthreads = traits.Int(argstr="-nthreads %d", nohash=True, desc="number of threads")

    class Amp2ResponseOutputSpec(TraitedSpec):
        out_file = File(exists=True, desc="response file, one row per shell")

    class Amp2Response(CommandLine):
        """``amp2response``: response function from single-fibre voxels and their directions."""

        _cmd = "amp2response"
        input_spec = Amp2ResponseInputSpec
        output_spec = Amp2ResponseOutputSpec

        def _list_outputs(self):
            return {"out_file": os.path.abspath(self.inputs.out_file)}

    return Sh2Peaks, Amp2Response


def _csd_estimate_fod():
    """nipype's ``EstimateFOD`` always appends default GM/CSF outputs; ``dwi2fod csd`` takes
    exactly one response and one output, so this subclass drops them."""
    from nipype.interfaces.mrtrix3 import EstimateFOD

    class SingleTissueEstimateFOD(EstimateFOD):
        def _parse_inputs(self, skip=None):
            skip = list(skip or []) + ["gm_txt", "gm_odf", "csf_txt", "csf_odf"]
            return super()._parse_inputs(skip=skip)

        def _list_outputs(self):
            return {"wm_odf": os.path.abspath(self.inputs.wm_odf)}

    return SingleTissueEstimateFOD


def scanner_to_bvec(dirs: np.ndarray, affine: np.ndarray = TEMP_AFFINE) -> np.ndarray:
    """MRtrix3 scanner-space directions (..., 3) to the FSL bvec frame of an image
    (:func:`prismflow.io.peaks.scanner_to_bvec`)."""
    from ..io.peaks import scanner_to_bvec as convert

    return convert(dirs, affine)


def bvec_to_scanner(dirs: np.ndarray, affine: np.ndarray = TEMP_AFFINE) -> np.ndarray:
    """FSL bvec-frame directions (..., 3) to MRtrix3 scanner space
    (:func:`prismflow.io.peaks.bvec_to_scanner`)."""
    from ..io.peaks import bvec_to_scanner as convert

    return convert(dirs, affine)


def write_response(path: Path, rows: np.ndarray) -> None:
    """An MRtrix3 response text file: one row per shell (ascending b), zonal SH coefficients."""
    rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
    np.savetxt(path, rows, fmt="%.8g")


class _MrtrixBase(BaselineMethod):
    """Shared I/O for the MRtrix3 methods.

    Parameters
    ----------
    nthreads : int — ``-nthreads`` for every MRtrix3 command (default 1).
    peak_source : "shared" (FOD read back, shared peak rule; default) or "sh2peaks" (MRtrix3
        ``sh2peaks`` Newton-refined peaks, then the shared relative threshold/separation).
    keep_dir : str or None — keep the working directory here (debugging); default: a temp dir.
    """

    def __init__(self, *, nthreads: int = 1, peak_source: str = "shared",
                 keep_dir: str | None = None, **kwargs):
        super().__init__(**kwargs)
        if peak_source not in ("shared", "sh2peaks"):
            raise InputError(f"peak_source must be 'shared' or 'sh2peaks'; got {peak_source!r}")
        self.nthreads = int(nthreads)
        self.peak_source = peak_source
        self.keep_dir = keep_dir

    @staticmethod
    def _env():
        return {"MRTRIX_QUIET": "1", "OMP_NUM_THREADS": "1"}

    def _run(self, interface, cwd: Path):
        if not mrtrix_available():
            raise RuntimeError("MRtrix3 is not installed (dwi2fod not on PATH); "
                               "apt-get install -y mrtrix3")
        interface.inputs.environ = self._env()
        logging.getLogger("nipype.interface").setLevel(logging.WARNING)
        try:
            result = interface.run(cwd=str(cwd))
        except Exception as err:  # nipype raises when declared outputs are missing
            raise RuntimeError(f"{self.name}: {interface.cmdline} failed: {err}") from err
        # nipype's MRtrix3 interfaces do not raise on a non-zero exit: check it here
        rc = getattr(result.runtime, "returncode", 0)
        if rc not in (0, None):
            err_lines = [ln for ln in str(getattr(result.runtime, "stderr", "")).splitlines()
                         if "ERROR" in ln] or ["(no stderr)"]
            raise RuntimeError(f"{self.name}: `{interface.cmdline}` exited with {rc}: "
                               + " | ".join(err_lines[-3:]))
        return result

    def _write_inputs(self, data: np.ndarray, acq: Acquisition, work: Path):
        import nibabel as nib

        V = data.shape[0]
        img = nib.Nifti1Image(data.reshape(V, 1, 1, -1).astype(np.float32), TEMP_AFFINE)
        nib.save(img, work / "dwi.nii")
        nib.save(nib.Nifti1Image(np.ones((V, 1, 1), np.uint8), TEMP_AFFINE), work / "mask.nii")
        write_bval_bvec(acq, work / "dwi.bval", work / "dwi.bvec")
        return (str(work / "dwi.bvec"), str(work / "dwi.bval"))

    def _tensor_responses(self, work: Path, grad, files: dict, data: np.ndarray,
                          acq: Acquisition, wm_shell: float | None = None) -> str:
        """Responses from tensor-selected voxels (FIELD-NOTES route): ``dwi2tensor`` ->
        ``tensor2metric -vector -fa -adc`` -> ``amp2response`` on the highest-FA voxels
        (FA >= 0.7, at most 300) for WM; ``amp2response -isotropic`` on GM-like
        (FA < 0.2, MD 0.6–1.2e-3 mm²/s) and CSF-like (FA < 0.1, MD > 2e-3) voxels, or, with
        fewer than 5 such voxels, the default isotropic diffusivities (0.8e-3 / 3.0e-3 mm²/s)
        scaled by the WM voxels' mean b=0 signal. Returns a description."""
        import nibabel as nib
        from nipype.interfaces.mrtrix3 import FitTensor, MRConvert, TensorMetrics

        _, Amp2Response = _interfaces()
        V = data.shape[0]
        # amp2response reads the gradient table from the image header only
        self._run(MRConvert(in_file=str(work / "dwi.nii"), out_file=str(work / "dwi.mif"),
                            grad_fsl=grad, nthreads=self.nthreads, args="-force"), work)
        self._run(FitTensor(in_file=str(work / "dwi.nii"), out_file=str(work / "dt.nii"),
                            grad_fsl=grad, in_mask=str(work / "mask.nii"),
                            nthreads=self.nthreads), work)
        self._run(TensorMetrics(in_file=str(work / "dt.nii"), out_fa=str(work / "fa.nii"),
                                out_adc=str(work / "md.nii"), out_evec=str(work / "v1.nii"),
                                modulate="none", nthreads=self.nthreads), work)
        fa = np.nan_to_num(np.asarray(nib.load(work / "fa.nii").dataobj).reshape(V))
        md = np.nan_to_num(np.asarray(nib.load(work / "md.nii").dataobj).reshape(V))
        wm = fa >= 0.7
        if wm.sum() < 5:
            wm = fa >= np.quantile(fa, 0.9)
        if wm.sum() > 300:
            wm &= fa >= np.sort(fa[wm])[-300]
        masks = {"wm": wm, "gm": (fa < 0.2) & (md > 0.6e-3) & (md < 1.2e-3),
                 "csf": (fa < 0.1) & (md > 2e-3)}
        s0 = float(np.mean(data[wm][:, acq.b0_mask])) if np.any(acq.b0_mask) else 1.0
        notes = []
        if wm_shell is not None:
            masks = {"wm": wm}
        for t, m in masks.items():
            if t != "wm" and m.sum() < 5:
                d = ResponseTruth().gm_diffusivity if t == "gm" else ResponseTruth().csf_diffusivity
                write_response(files[t], np.array(
                    [[isotropic_response(b, d, s0)] for b, _ in shell_groups(acq)]))
                notes.append(f"{t.upper()}: no voxels, default {d:g} mm²/s")
                continue
            mpath = work / f"{t}_sf.nii"
            nib.save(nib.Nifti1Image(m.reshape(V, 1, 1).astype(np.uint8), TEMP_AFFINE), mpath)
            a2r = Amp2Response(amps_file=str(work / "dwi.mif"), mask_file=str(mpath),
                               directions_file=str(work / "v1.nii"), out_file=str(files[t]),
                               nthreads=self.nthreads)
            if t == "wm" and wm_shell is not None:  # single-shell CSD: one row
                a2r.inputs.shells = [float(wm_shell)]
                a2r.inputs.lmax = [self.lmax]
            elif t == "wm":
                a2r.inputs.lmax = [0 if b == 0 else self.lmax for b, _ in shell_groups(acq)]
            else:
                a2r.inputs.isotropic = True
            self._run(a2r, work)
            notes.append(f"{t.upper()}: amp2response on {int(m.sum())} voxels")
        return "; ".join(notes)

    def _peaks_from_fod(self, fod_path: Path, work: Path, V: int):
        import nibabel as nib

        if self.peak_source == "sh2peaks":
            Sh2Peaks, _ = _interfaces()
            sp = Sh2Peaks(in_file=str(fod_path), out_file=str(work / "peaks.nii"),
                          num=self.rule.n_peaks * 2, nthreads=self.nthreads)
            self._run(sp, work)
            raw = np.asarray(nib.load(work / "peaks.nii").dataobj, dtype=np.float64)
            raw = np.nan_to_num(raw.reshape(V, -1, 3))
            amp = np.linalg.norm(raw, axis=2)
            unit = np.where(amp[..., None] > 0, raw / np.maximum(amp[..., None], 1e-12), 0.0)
            unit = scanner_to_bvec(unit)
            # apply the shared rule's threshold/separation/count on MRtrix's own peaks
            return apply_rule(unit, amp, self.rule)
        coef = np.asarray(nib.load(fod_path).dataobj, dtype=np.float64).reshape(V, -1)
        lmax = int(round((np.sqrt(8 * coef.shape[1] + 1) - 3) / 2))
        dirs, amps = peaks_from_sh(coef, lmax, self.rule, **MRTRIX_BASIS)
        return scanner_to_bvec(dirs), amps

    def _workdir(self):
        if self.keep_dir:
            Path(self.keep_dir).mkdir(parents=True, exist_ok=True)
            return _Keep(self.keep_dir)
        return tempfile.TemporaryDirectory(prefix=f"{self.name}-")


class _Keep:
    def __init__(self, path):
        self.path = path

    def __enter__(self):
        return self.path

    def __exit__(self, *exc):
        return False


class MrtrixCSD(_MrtrixBase):
    """MRtrix3 ``dwi2fod csd`` on one shell (lmax 8) through nipype's ``EstimateFOD``.

    Parameters
    ----------
    shell_bval : float — shell fed to CSD with the b=0 volumes, s/mm² (default 1000, as the
        PRISM paper's CSD baseline).
    lmax : int — maximum SH degree (default 8).
    data_algorithm : "tensor" (default), "tournier" or "tax" — the "data" response route.
    Others as :class:`_MrtrixBase` / :class:`BaselineMethod`.

    Responses: "oracle" writes the response file directly from the true tensor (zonal SH of the
    axially symmetric tensor signal, :func:`zonal_tensor_response`); "data" with "tensor" runs
    ``dwi2tensor`` → ``tensor2metric -vector -fa`` → ``amp2response -shells b`` on the
    highest-FA voxels (FA >= 0.7, at most 300; what ``dwi2response fa`` does, which nipype
    lacks). ``dwi2response tournier`` (``-number`` min(300, V/10)) is available but fails on the
    crossing benchmark, where only 6 % of voxels are single fibres: its iterations converge on
    crossing voxels and the response gets too fat (overall 14.1° vs 8.1° at SNR 30; with
    ``-number 68`` 24.7°, no crossing resolved). ``tax`` errors out there.
    """

    name = "mrtrix-csd"

    def __init__(self, *, shell_bval: float = 1000.0, lmax: int = 8,
                 data_algorithm: str = "tensor", **kwargs):
        super().__init__(**kwargs)
        if data_algorithm not in ("tournier", "tax", "tensor"):
            raise InputError("data_algorithm must be tournier, tax or tensor; "
                             f"got {data_algorithm!r}")
        self.shell_bval = float(shell_bval)
        self.lmax = int(lmax)
        self.data_algorithm = data_algorithm

    def _fit(self, data, acq):
        from nipype.interfaces.mrtrix3 import ResponseSD

        EstimateFOD = _csd_estimate_fod()
        idx = select_shell(acq, self.shell_bval)
        sub_acq = acq.select(idx)
        sub = data[:, idx]
        V = sub.shape[0]
        b = float(np.round(np.median(sub_acq.bvals[~sub_acq.b0_mask]) / 100) * 100)
        with self._workdir() as tmp:
            work = Path(tmp)
            grad = self._write_inputs(sub, sub_acq, work)
            resp = work / "wm_response.txt"
            if self.response == "oracle":
                o = self.oracle
                write_response(resp, zonal_tensor_response(b, o.wm_evals, o.s0, self.lmax))
                source = "oracle: response file written from the true tensor (zonal SH)"
            else:
                if self.data_algorithm == "tensor":
                    source = "data: " + self._tensor_responses(work, grad, {"wm": resp}, sub,
                                                               sub_acq, wm_shell=b)
                else:
                    number = int(max(5, min(300, V // 10)))
                    extra = f"-number {number}"
                    if self.data_algorithm == "tournier":
                        extra += f" -iter_voxels {int(min(V, 10 * number))}"
                    rsd = ResponseSD(algorithm=self.data_algorithm, in_file=str(work / "dwi.nii"),
                                     grad_fsl=grad, wm_file=str(resp), max_sh=[self.lmax],
                                     nthreads=self.nthreads, args=extra)
                    self._run(rsd, work)
                    source = f"data: dwi2response {self.data_algorithm} {extra}"
            fod = work / "wm_fod.nii"
            est = EstimateFOD(algorithm="csd", in_file=str(work / "dwi.nii"), wm_txt=str(resp),
                              wm_odf=str(fod), grad_fsl=grad, mask_file=str(work / "mask.nii"),
                              max_sh=[self.lmax], nthreads=self.nthreads)
            self._run(est, work)
            dirs, amps = self._peaks_from_fod(fod, work, V)
            rows = np.atleast_2d(np.loadtxt(resp, comments="#")).tolist()
        info = {"shell_bval": b, "n_volumes": int(len(idx)), "lmax": self.lmax,
                "response_source": source, "response_rows": rows,
                "peak_source": self.peak_source, "nthreads": self.nthreads,
                "amplitude": "FOD value at the peak",
                "frame": "scanner -> bvec (x negated: affine det > 0)"}
        return dirs, amps, info


class MrtrixMSMT(_MrtrixBase):
    """MRtrix3 ``dwi2fod msmt_csd`` (WM lmax 8, GM and CSF lmax 0) on all shells.

    Responses: "oracle" writes the three response files directly (WM: zonal SH of the true
    tensor per shell, b=0 row l=0 only; GM/CSF: isotropic exponentials); "data" runs
    ``dwi2response dhollander -erode 0`` (needs GM/CSF-like voxels in the input).
    """

    name = "mrtrix-msmt"

    def __init__(self, *, lmax: int = 8, tensor_fallback: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.lmax = int(lmax)
        self.tensor_fallback = bool(tensor_fallback)

    def _fit(self, data, acq):
        from nipype.interfaces.mrtrix3 import EstimateFOD, ResponseSD

        V = data.shape[0]
        with self._workdir() as tmp:
            work = Path(tmp)
            grad = self._write_inputs(data, acq, work)
            files = {t: work / f"{t}_response.txt" for t in ("wm", "gm", "csf")}
            if self.response == "oracle":
                o = self.oracle
                wm, gm, csf = [], [], []
                n_l = self.lmax // 2 + 1
                for b, _ in shell_groups(acq):
                    row = (zonal_tensor_response(b, o.wm_evals, o.s0, self.lmax) if b > 0
                           else np.r_[o.s0 * np.sqrt(4 * np.pi), np.zeros(n_l - 1)])
                    wm.append(row)
                    gm.append([isotropic_response(b, o.gm_diffusivity, o.s0)])
                    csf.append([isotropic_response(b, o.csf_diffusivity, o.s0)])
                for t, rows in zip(("wm", "gm", "csf"), (wm, gm, csf)):
                    write_response(files[t], np.array(rows))
                source = "oracle: response files written from the true tensor / diffusivities"
            else:
                rsd = ResponseSD(algorithm="dhollander", in_file=str(work / "dwi.nii"),
                                 grad_fsl=grad, wm_file=str(files["wm"]),
                                 gm_file=str(files["gm"]), csf_file=str(files["csf"]),
                                 nthreads=self.nthreads, args="-erode 0")
                try:
                    self._run(rsd, work)
                    source = "data: dwi2response dhollander -erode 0"
                except RuntimeError as err:
                    if not self.tensor_fallback:
                        raise
                    logger.warning("%s: dhollander failed (%s); falling back to tensor-selected "
                                   "single-fibre voxels + amp2response", self.name,
                                   str(err).splitlines()[0][:200])
                    source = ("data: dhollander failed (no GM/CSF-like voxels?); fallback "
                              + self._tensor_responses(work, grad, files, data, acq))
            fods = {t: work / f"{t}_fod.nii" for t in ("wm", "gm", "csf")}
            est = EstimateFOD(algorithm="msmt_csd", in_file=str(work / "dwi.nii"),
                              wm_txt=str(files["wm"]), wm_odf=str(fods["wm"]),
                              gm_txt=str(files["gm"]), gm_odf=str(fods["gm"]),
                              csf_txt=str(files["csf"]), csf_odf=str(fods["csf"]),
                              grad_fsl=grad, mask_file=str(work / "mask.nii"),
                              max_sh=[self.lmax, 0, 0], nthreads=self.nthreads)
            self._run(est, work)
            dirs, amps = self._peaks_from_fod(fods["wm"], work, V)
            rows = {t: np.atleast_2d(np.loadtxt(f, comments="#")).tolist()
                    for t, f in files.items()}
        info = {"shells": [b for b, _ in shell_groups(acq)], "lmax": [self.lmax, 0, 0],
                "response_source": source, "response_rows": rows,
                "peak_source": self.peak_source, "nthreads": self.nthreads,
                "amplitude": "WM FOD value at the peak",
                "frame": "scanner -> bvec (x negated: affine det > 0)"}
        return dirs, amps, info
