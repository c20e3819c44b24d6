"""dipy constrained spherical deconvolution: single-shell CSD and multi-shell multi-tissue CSD.

References
----------
Tournier, Calamante, Connelly (2007) NeuroImage 35:1459 — CSD.
Jeurissen et al. (2014) NeuroImage 103:411 — MSMT-CSD.
"""

from __future__ import annotations

import logging

import numpy as np

from prismflow.io import Acquisition

from .base import BaselineMethod
from .peaks import peaks_from_sh
from .responses import ResponseTruth, select_shell, single_fibre_candidates

logger = logging.getLogger(__name__)

#: dipy's SH basis for CSD/MSMT fits (``real_sh_descoteaux`` default).
DIPY_BASIS = {"basis_type": "descoteaux07", "legacy": True}


class DipyCSD(BaselineMethod):
    """dipy single-shell CSD (``ConstrainedSphericalDeconvModel``), lmax 8.

    Parameters
    ----------
    shell_bval : float — the shell fed to CSD with the b=0 volumes, s/mm² (default 1000, as the
        PRISM paper's CSD baseline, so our numbers are comparable with its anchors).
    sh_order_max : int — maximum SH order (default 8).
    fa_threshold : float — FA of the single-fibre voxels used for a data response (default 0.7).
    Others as :class:`BaselineMethod`.

    Responses: "oracle" gives dipy the true tensor eigenvalues and S0; "data" runs
    ``response_from_mask_ssst`` on the highest-FA voxels (FA >= ``fa_threshold``, at most 300).
    """

    name = "dipy-csd"

    def __init__(self, *, shell_bval: float = 1000.0, sh_order_max: int = 8,
                 fa_threshold: float = 0.7, **kwargs):
        super().__init__(**kwargs)
        self.shell_bval = float(shell_bval)
        self.sh_order_max = int(sh_order_max)
        self.fa_threshold = float(fa_threshold)

    def _fit(self, data: np.ndarray, acq: Acquisition):
        from dipy.reconst.csdeconv import ConstrainedSphericalDeconvModel, response_from_mask_ssst

        idx = select_shell(acq, self.shell_bval)
        sub_acq = acq.select(idx)
        sub = data[:, idx]
        gtab = sub_acq.to_dipy()
        if self.response == "oracle":
            response = (np.array(self.oracle.wm_evals), float(self.oracle.s0))
            source = "oracle: true tensor eigenvalues and S0"
        else:
            sel = single_fibre_candidates(sub, sub_acq, fa_threshold=self.fa_threshold)
            response, _ratio = response_from_mask_ssst(gtab, sub[:, None, None, :],
                                                       sel[:, None, None])
            source = f"data: response_from_mask_ssst on {int(sel.sum())} high-FA voxels"
        model = ConstrainedSphericalDeconvModel(gtab, response, sh_order_max=self.sh_order_max)
        fit = model.fit(sub)
        dirs, amps = peaks_from_sh(fit.shm_coeff, self.sh_order_max, self.rule, **DIPY_BASIS)
        info = {"shell_bval": float(np.round(np.median(sub_acq.bvals[~sub_acq.b0_mask]))),
                "n_volumes": int(len(idx)), "sh_order_max": self.sh_order_max,
                "response_source": source,
                "response_function": {"evals_mm2_s": [float(x) for x in response[0]],
                             "s0": float(response[1])},
                "amplitude": "FOD value at the peak"}
        return dirs, amps, info


class DipyMSMT(BaselineMethod):
    """dipy multi-shell multi-tissue CSD (``dipy.reconst.mcsd``; WM lmax 8 + GM + CSF).

    Slow: one cvxpy QP per voxel (≈ 13 voxels/s on one core).

    Responses: "oracle" builds ``multi_shell_fiber_response`` from the true WM tensor and the
    GM/CSF diffusivities of :class:`ResponseTruth`; "data" runs ``response_from_mask_msmt``
    on DTI-selected masks (WM: FA >= 0.7; GM: FA < 0.2 and MD in [0.6, 1.2]e-3; CSF: FA < 0.1
    and MD > 2e-3 mm²/s). A tissue without voxels (e.g. a WM-only phantom) gets the
    ResponseTruth defaults scaled by the WM voxels' mean b=0 signal — recorded in ``info``.
    """

    name = "dipy-msmt"

    def __init__(self, *, sh_order_max: int = 8, fa_threshold: float = 0.7, **kwargs):
        super().__init__(**kwargs)
        self.sh_order_max = int(sh_order_max)
        self.fa_threshold = float(fa_threshold)

    def _responses(self, data: np.ndarray, acq: Acquisition, ubvals: np.ndarray):
        n_shells = len(ubvals) - 1
        if self.response == "oracle":
            o = self.oracle
            wm = np.tile([*o.wm_evals, o.s0], (n_shells, 1))
            gm = np.tile([o.gm_diffusivity] * 3 + [o.s0], (n_shells, 1))
            csf = np.tile([o.csf_diffusivity] * 3 + [o.s0], (n_shells, 1))
            return wm, gm, csf, "oracle: true WM tensor, GM/CSF diffusivities, S0"
        from dipy.reconst.dti import TensorModel
        from dipy.reconst.mcsd import response_from_mask_msmt

        fit = TensorModel(acq.to_dipy()).fit(np.maximum(data, 1e-6))
        fa, md = np.nan_to_num(fit.fa), np.nan_to_num(fit.md)
        wm_sel = single_fibre_candidates(data, acq, fa_threshold=self.fa_threshold)
        gm_sel = (fa < 0.2) & (md > 0.6e-3) & (md < 1.2e-3)
        csf_sel = (fa < 0.1) & (md > 2e-3)
        # dipy fails on an empty tissue mask: stand in the WM mask, replace the result below
        gm_use = gm_sel if gm_sel.sum() >= 5 else wm_sel
        csf_use = csf_sel if csf_sel.sum() >= 5 else wm_sel
        wm, gm, csf = response_from_mask_msmt(
            acq.to_dipy(), data[:, None, None, :], wm_sel[:, None, None],
            gm_use[:, None, None], csf_use[:, None, None])
        notes = [f"data: response_from_mask_msmt (WM {int(wm_sel.sum())} voxels, "
                 f"GM {int(gm_sel.sum())}, CSF {int(csf_sel.sum())})"]
        s0 = float(np.mean(data[wm_sel][:, acq.b0_mask])) if np.any(acq.b0_mask) else 1.0
        d = ResponseTruth()
        if gm_sel.sum() < 5 or not np.all(np.isfinite(gm)):
            gm = np.tile([d.gm_diffusivity] * 3 + [s0], (n_shells, 1))
            notes.append("GM: no voxels, default 0.8e-3 mm²/s")
        if csf_sel.sum() < 5 or not np.all(np.isfinite(csf)):
            csf = np.tile([d.csf_diffusivity] * 3 + [s0], (n_shells, 1))
            notes.append("CSF: no voxels, default 3.0e-3 mm²/s")
        return np.asarray(wm), np.asarray(gm), np.asarray(csf), "; ".join(notes)

    def _fit(self, data: np.ndarray, acq: Acquisition):
        from dipy.core.gradients import unique_bvals_tolerance
        from dipy.reconst.mcsd import MultiShellDeconvModel, multi_shell_fiber_response

        gtab = acq.to_dipy()
        ubvals = unique_bvals_tolerance(gtab.bvals, tol=20)
        wm, gm, csf, source = self._responses(data, acq, ubvals)
        response = multi_shell_fiber_response(self.sh_order_max, ubvals, wm, gm, csf)
        model = MultiShellDeconvModel(gtab, response, sh_order_max=self.sh_order_max)
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = model.fit(data)
        coef = np.asarray(fit.shm_coeff)
        n_failed = int(np.sum(~np.isfinite(coef[:, 0])))
        dirs, amps = peaks_from_sh(coef, self.sh_order_max, self.rule, **DIPY_BASIS)
        vf = np.nan_to_num(np.asarray(fit.volume_fractions))
        info = {"shells": [float(b) for b in ubvals], "sh_order_max": self.sh_order_max,
                "response_source": source, "n_solver_failures": n_failed,
                "mean_volume_fractions_csf_gm_wm": [float(x) for x in vf.mean(axis=0)],
                "amplitude": "WM FOD value at the peak"}
        return dirs, amps, info
