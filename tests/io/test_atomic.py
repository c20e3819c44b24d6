"""Atomic writers: complete files with the permissions a plain open() gives, no temp left."""

import os

import numpy as np

from prismflow.io import save_json_atomic, save_nifti_atomic


def test_atomic_writes_honour_umask_and_leave_no_temp(tmp_path):
    old = os.umask(0o022)
    try:
        j = save_json_atomic({"a": np.float32(1.5)}, tmp_path / "x.json")
        n = save_nifti_atomic(np.zeros((2, 2, 2), np.float32), np.eye(4), tmp_path / "x.nii.gz")
    finally:
        os.umask(old)
    assert oct(j.stat().st_mode & 0o777) == oct(0o644)
    assert oct(n.stat().st_mode & 0o777) == oct(0o644)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json", "x.nii.gz"]
