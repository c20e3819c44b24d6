"""Tracking on known peaks gives the phantom's known connectome."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

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
    # bundle A joins labels 1-2, bundle B joins 3-4, never A to B
    assert matrix[0, 1] > 50 and matrix[2, 3] > 50
    assert matrix[:2, 2:].sum() == 0
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


def test_ends_just_outside_labels_are_assigned():
    """A streamline that stops half a voxel past its labelled end voxels still counts."""
    labels = np.zeros((10, 3, 3), np.int16)
    labels[1, 1, 1], labels[8, 1, 1] = 1, 2
    line = np.stack([np.linspace(0.5, 8.5, 17), np.ones(17), np.ones(17)], axis=1)
    m, ids = connectome([line], labels, np.eye(4), search_mm=1.0)
    assert m[0, 1] == 1
    m, ids = connectome([line], labels, np.eye(4), search_mm=0.0)
    assert m.sum() == 0


@pytest.mark.mrtrix
@pytest.mark.skipif(shutil.which("tckgen") is None, reason="MRtrix3 not installed")
def test_mrtrix_tckgen_task_on_true_peaks(tmp_path):
    """tracker: mrtrix — tckgen FACT on scanner-frame peaks gives the same connectome."""
    import nibabel as nib

    from prismflow.prism.fixels import bvec_frame_to_world
    from prismflow.tasks.tracking import TrackPeaksMrtrix, streamline_count

    ph = make_bundle_phantom(snr=np.inf)
    world = bvec_frame_to_world(ph.directions, ph.affine) * ph.fibre_fractions[..., None]
    peaks = tmp_path / "scanner_peaks_truth.nii.gz"
    nib.save(nib.Nifti1Image(world.reshape(ph.dseg.shape + (6,)).astype(np.float32), ph.affine), peaks)
    mask = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image((ph.tissue[..., 0] < 0.5).astype(np.uint8), ph.affine), mask)
    cfg = TrackingConfig().to_dict()
    cfg.pop("peak_threshold")
    res = TrackPeaksMrtrix(peaks=peaks, mask=mask, config=cfg, seed=1)(cache_root=tmp_path / "c")
    assert res.method == "truth"
    assert streamline_count(res.tractogram) > 100
    sl = load_trk(res.tractogram, reference=nib.load(mask))
    matrix, _ = connectome(sl, ph.dseg, ph.affine)
    assert matrix[0, 1] > 50 and matrix[2, 3] > 50 and matrix[:2, 2:].sum() == 0
