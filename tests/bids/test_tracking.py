"""Tracking on known peaks gives the phantom's known connectome."""

from __future__ import annotations

import numpy as np

from prismflow.phantoms.bids_phantom import make_bundle_phantom
from prismflow.tracking import (
    TrackingConfig, connectome, load_connectome_csv, load_trk, save_connectome_csv, save_trk,
    track_peaks)


def test_true_peaks_join_the_right_labels(tmp_path):
    ph = make_bundle_phantom(snr=np.inf)
    mask = ph.tissue[..., 0] < 0.5
    sl = track_peaks(ph.directions, ph.fibre_fractions, mask, ph.affine, TrackingConfig())
    assert len(sl) > 100
    lengths = [np.linalg.norm(np.diff(s, axis=0), axis=1).sum() for s in sl]
    assert min(lengths) >= TrackingConfig().min_length_mm
    matrix, labels = connectome(sl, ph.dseg, ph.affine)
    assert list(labels) == [1, 2, 3, 4]
    # bundle A joins labels 1-2, bundle B joins 3-4, nothing else
    assert matrix[0, 1] > 50 and matrix[2, 3] > 50
    assert matrix[0, 1] + matrix[2, 3] == matrix[np.triu_indices(4)].sum()
    import nibabel as nib

    ref = nib.Nifti1Image(ph.dseg, ph.affine)
    save_trk(sl, ref, tmp_path / "t.trk")
    back = load_trk(tmp_path / "t.trk", reference=ref)
    assert len(back) == len(sl)
    np.testing.assert_allclose(back[0], sl[0], atol=1e-3)
    save_connectome_csv(matrix, labels, tmp_path / "c.csv")
    m2, l2 = load_connectome_csv(tmp_path / "c.csv")
    np.testing.assert_array_equal(m2, matrix)
    np.testing.assert_array_equal(l2, labels)


def test_no_peaks_no_streamlines():
    ph = make_bundle_phantom()
    z = np.zeros_like(ph.fibre_fractions)
    assert track_peaks(ph.directions * 0, z, np.ones(z.shape[:3], bool), ph.affine) == []
