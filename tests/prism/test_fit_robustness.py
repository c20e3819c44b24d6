"""PRISM on tissue it was not tuned to, against independent references.

The voxels come from dipy's ``multi_tensor`` (full tensors, not PRISM's stick-and-zeppelin,
diffusivities unlike the model's constants); the truth is dipy's input.
"""

import numpy as np
import pytest

from prismflow.metrics.peaks import score_peaks
from prismflow.phantoms.multitensor import TissueSpec, make_multitensor_phantom, scheme
from prismflow.prism.config import PrismConfig
from prismflow.prism.fit import PrismModel
from prismflow.prism.response import estimate_diffusivities


@pytest.mark.parametrize("evals", [(1.5e-3, 0.4e-3), (2.0e-3, 0.25e-3)])
def test_estimated_diffusivities_match_a_known_single_tensor(evals):
    """A zeppelin with f_in = 0 *is* a cylindrical tensor, so the estimate must find λ∥, λ⊥."""
    tissue = TissueSpec("fixed", (evals[0],) * 2, (evals[1],) * 2, (0.5, 0.5), (0.0, 0.0))
    ph = make_multitensor_phantom(scheme("3shell"), tissue, snr=30, n_single=60, angles_deg=(),
                                  n_three=0, seed=2)
    est = estimate_diffusivities(ph.signal, ph.acquisition)
    assert abs(est.diffusivities.axial / evals[0] - 1) < 0.10, est.to_dict()
    assert abs(est.diffusivities.radial / evals[1] - 1) < 0.10, est.to_dict()
    assert est.sources["axial"].startswith("data")


def _single_fibre_phantom(name, seed=3):
    # per-fibre random λ∥ 1.4–2.2e-3, λ⊥ 0.2–0.6e-3, 0–30 % free water: unlike the model's
    # constants (1.7e-3 / 0.3e-3) in almost every voxel; plus 90° crossings so that a rule which
    # simply never reports a second fibre cannot pass
    return make_multitensor_phantom(scheme(name), "random", snr=30, n_single=60,
                                    angles_deg=(90,), n_per_angle=20, n_three=0, seed=seed)


def test_no_spurious_fibres_on_mismatched_single_fibres():
    ph = _single_fibre_phantom("3shell")
    fit = PrismModel(ph.acquisition, PrismConfig(device="cpu")).fit(ph.signal, progress=False)
    s = score_peaks(fit.directions, fit.present(), ph.true_dirs, ph.n_fibres)
    by = s.by_group(ph.angle_deg.astype(int))
    # the old fixed constants + fraction thresholds gave FP1 ≈ 40 % on this tissue
    assert s.single_fibre_fp_rate() <= 0.05, s.single_fibre_fp_rate()
    assert by[0] < 2.0, by
    two = ph.n_fibres == 2
    assert np.mean(s.matched[two] == 2) >= 0.8, np.mean(s.matched[two] == 2)
    assert fit.info["selection"]["tested"], fit.info["selection"]
    assert fit.config["diffusivity_source"].startswith("csf")


def test_single_shell_single_fibres_not_worse_than_csd():
    """One shell: PRISM's single-fibre error within 0.5° of dipy CSD on the same voxels."""
    from prismflow.baselines import get_method

    ph = _single_fibre_phantom("single")
    single = ph.n_fibres == 1
    fit = PrismModel(ph.acquisition, PrismConfig(device="cpu")).fit(ph.signal, progress=False)
    csd = get_method("dipy-csd", response="data").fit_peaks(ph.signal, ph.acquisition)
    p = score_peaks(fit.directions[single], fit.present()[single], ph.true_dirs[single],
                    ph.n_fibres[single])
    c = score_peaks(csd.directions[single], csd.amplitudes[single] > 0, ph.true_dirs[single],
                    ph.n_fibres[single])
    assert p.overall_deg <= c.overall_deg + 0.5, (p.overall_deg, c.overall_deg)
    assert p.single_fibre_fp_rate() <= 0.05
    assert fit.info["single_shell"] and np.all(fit.fractions[:, 1:3] < 1e-6)


def test_three_fibre_voxels_resolved_better_than_csd():
    """Three fibres ≥ 45° apart (each ≥ 20 %, dipy tensors): PRISM beats dipy CSD on them.

    The rank-weighted sparsity prior once erased most true third fibres (growth 128: 21.0° vs
    dipy CSD's 20.5°, all three found in 20 % vs 23 % of voxels on this phantom); the fibre count
    is now left to the evidence test. Single-fibre voxels are included so that CSD's response
    from the data is a fair one.
    """
    from prismflow.baselines import get_method

    ph = make_multitensor_phantom(scheme("3shell"), "random", snr=30, n_single=40, angles_deg=(),
                                  n_three=30, seed=5)
    three = ph.n_fibres == 3
    fit = PrismModel(ph.acquisition, PrismConfig(device="cpu")).fit(ph.signal, progress=False)
    csd = get_method("dipy-csd", response="data").fit_peaks(ph.signal, ph.acquisition)
    p = score_peaks(fit.directions[three], fit.present()[three], ph.true_dirs[three], ph.n_fibres[three])
    c = score_peaks(csd.directions[three], csd.amplitudes[three] > 0, ph.true_dirs[three],
                    ph.n_fibres[three])
    assert p.overall_deg < c.overall_deg, (p.overall_deg, c.overall_deg)
    assert np.mean(p.matched == 3) > np.mean(c.matched == 3), (np.mean(p.matched == 3),
                                                               np.mean(c.matched == 3))
