"""Peak scoring on hand-built cases with known answers."""

import numpy as np

from prismflow.metrics.peaks import score_peaks


def _unit(*v):
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def test_perfect_antipodal_prediction_scores_zero():
    true = np.array([[_unit(1, 0, 0), _unit(0, 1, 0)]])
    pred = np.array([[-_unit(0, 1, 0), _unit(1, 0, 0), np.zeros(3)]])
    s = score_peaks(pred, np.array([[True, True, False]]), true, np.array([2]))
    assert s.best_match_deg[0] < 1e-6 and s.recall == 1 and s.precision == 1


def test_single_bisector_peak_on_narrow_crossing():
    a = np.deg2rad(15)
    true = np.array([[_unit(1, 0, 0), _unit(np.cos(a), np.sin(a), 0)]])
    pred = np.array([[_unit(np.cos(a / 2), np.sin(a / 2), 0), np.zeros(3)]])
    s = score_peaks(pred, np.array([[True, False]]), true, np.array([2]))
    np.testing.assert_allclose(s.best_match_deg[0], 7.5, atol=1e-6)
    assert s.recall == 0.5 and s.precision == 1.0    # one-to-one matching


def test_false_positive_on_single_fibre_and_missing_prediction():
    true = np.array([[_unit(0, 0, 1), np.zeros(3)], [_unit(0, 0, 1), np.zeros(3)]])
    pred = np.array([[_unit(0, 0, 1), _unit(1, 0, 0)], [np.zeros(3), np.zeros(3)]])
    s = score_peaks(pred, np.array([[True, True], [False, False]]), true, np.array([1, 1]))
    assert s.single_fibre_fp_rate() == 0.5
    np.testing.assert_allclose(s.best_match_deg, [0.0, 90.0], atol=1e-6)
    assert s.recall == 0.5 and s.precision == 0.5
