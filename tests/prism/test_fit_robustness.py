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


def test_information_criterion_prices_and_their_order():
    """The selectable criteria: their price per parameter (ln N, 2 ln ln N, 2 for N = 48, by
    hand: 3.871, 2.707, 2) and, on the same inputs, a smaller price never keeps fewer fibres.

    The inputs are PRISM-model voxels with two fibres 20° apart (50/50) at σ = 0.03 of b0 and
    the truth as the fit, so the evidence for the second fibre is weak and the criteria differ.
    """
    import torch

    from prismflow.phantoms.schemes import multishell_scheme
    from prismflow.prism.config import Diffusivities
    from prismflow.prism.model import AcquisitionTensors, constrain, tissue_signal
    from prismflow.prism.selection import penalty_per_param, select_fibres

    assert penalty_per_param(48) == pytest.approx(3.8712, abs=1e-4)
    assert penalty_per_param(48, "hqc") == pytest.approx(2.7071, abs=1e-4)
    assert penalty_per_param(48, "aic") == 2.0
    with pytest.raises(ValueError, match="criterion"):
        penalty_per_param(48, "mdl")

    acq = multishell_scheme(n_dirs=15, n_b0=3, seed=0)
    d = Diffusivities()
    at = AcquisitionTensors(acq, d, dtype=torch.float64)
    v = 60
    g = torch.Generator().manual_seed(4)
    first = torch.nn.functional.normalize(torch.randn(v, 3, generator=g, dtype=torch.float64), dim=1)
    helper = torch.nn.functional.normalize(torch.randn(v, 3, generator=g, dtype=torch.float64), dim=1)
    perp = torch.nn.functional.normalize(torch.cross(first, helper, dim=1), dim=1)
    a = np.deg2rad(20.0)
    second = np.cos(a) * first + np.sin(a) * perp
    raw = {"s0_raw": torch.full((v,), float(np.log(np.expm1(1.0))), dtype=torch.float64),
           "logits": torch.tensor([[-9.0, -9.0, -9.0, 0.0, 0.0]], dtype=torch.float64).repeat(v, 1),
           "dirs_raw": torch.stack([first, second], 1),
           "fin_raw": torch.zeros(v, 2, dtype=torch.float64)}
    with torch.no_grad():
        clean = tissue_signal(constrain(**raw), at, fused=False)
    y = clean + 0.03 * torch.randn(clean.shape, generator=g, dtype=torch.float64)
    offset = torch.zeros(v, 5, dtype=torch.float64)
    kept = {}
    for crit in ("aic", "hqc", "bic"):
        _, off, rec = select_fibres(raw, offset, at, y, 0.03, axial=d.axial, radial=d.radial,
                                    min_fraction=0.1, relative_fraction=0.15, criterion=crit)
        assert rec["criterion"] == crit and f"c = {penalty_per_param(len(acq), crit):.2f}" in rec["rule"]
        kept[crit] = int((off[:, 3:] > -15).sum())
    assert kept["aic"] >= kept["hqc"] >= kept["bic"] >= v, kept
    assert kept["aic"] > kept["bic"], kept          # the criteria do differ on this evidence
