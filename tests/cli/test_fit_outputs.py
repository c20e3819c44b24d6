"""prismflow-fit output locations: a file as --out, an unwritable place, the umask.

Bad output locations are checked before the fit: one line, exit 2, nothing written.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from prismflow.cli.fit import main
from prismflow.io import write_bval_bvec


@pytest.fixture
def dataset(tmp_path):
    from prismflow.phantoms.crossing import make_crossing_phantom

    ph = make_crossing_phantom(snr=30, angles_deg=(90,), n_per_angle=8, n_single=8, seed=2)
    dwi = ph.signal.reshape(4, 2, 2, -1).astype(np.float32)
    nib.save(nib.Nifti1Image(dwi, np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / "dwi.nii.gz")
    write_bval_bvec(ph.acquisition, tmp_path / "dwi.bval", tmp_path / "dwi.bvec")
    return tmp_path


def _run(d: Path, out, *extra, umask: int | None = None) -> tuple[int, str]:
    """Run prismflow-fit in this process; return (exit status, stderr)."""
    args = [str(d / "dwi.nii.gz"), "--bval", str(d / "dwi.bval"), "--bvec", str(d / "dwi.bvec"),
            "--out", str(out), "--iters", "5", "-q", "--no-fixels", *extra]
    old = os.umask(umask) if umask is not None else None
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            rc = main(args)
    finally:
        if old is not None:
            os.umask(old)
    return rc, err.getvalue()


def _listing(d: Path) -> list[str]:
    return sorted(p.relative_to(d).as_posix() for p in d.rglob("*"))


def _one_line_exit_2(result, match: str):
    rc, stderr = result
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert rc == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("prismflow-fit: error:"), stderr
    assert match in lines[0] and "Traceback" not in stderr


def test_out_is_an_existing_file(dataset):
    target = dataset / "result.nii.gz"
    target.write_text("not a directory")
    before = _listing(dataset)
    _one_line_exit_2(_run(dataset, target), "exists and is not a directory")
    assert _listing(dataset) == before and target.read_text() == "not a directory"
    # --force does not replace a file either
    _one_line_exit_2(_run(dataset, target, "--force"), "exists and is not a directory")


def test_out_below_a_file(dataset):
    (dataset / "afile").write_text("x")
    before = _listing(dataset)
    _one_line_exit_2(_run(dataset, dataset / "afile" / "out"), "is a file, not a directory")
    assert _listing(dataset) == before


def test_out_cannot_be_written(dataset, tmp_path_factory):
    if os.geteuid() == 0:
        # root writes through file modes: use a place no one can create files in
        target = Path("/proc/prismflow-test/out")
        before = None
    else:
        locked = tmp_path_factory.mktemp("locked")
        locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
        target = locked / "sub" / "out"
        before = _listing(locked)
    _one_line_exit_2(_run(dataset, target), "cannot write there")
    assert not target.exists()
    if before is not None:
        assert _listing(target.parent.parent) == before


def test_output_directory_follows_the_umask(dataset):
    # 0o027 gives 0o750 (was 0o700, from the temporary folder renamed into place)
    assert _run(dataset, dataset / "out027", umask=0o027)[0] == 0
    assert stat.S_IMODE((dataset / "out027").stat().st_mode) == 0o750
