"""The BIDS app with ``--worker dask`` against a dask.distributed LocalCluster."""

from __future__ import annotations

import pytest

from prismflow.cli.run import main


def test_participant_on_dask_localcluster(tmp_path, synthetic_bids):
    distributed = pytest.importorskip("dask.distributed")
    recipe = tmp_path / "mask.yaml"
    recipe.write_text("name: mask\ndescription: mask only\nsteps:\n  - {action: mask, method: all}\n")
    out = tmp_path / "out"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        rc = main([str(synthetic_bids), str(out), "participant", "--worker", "dask",
                   "--dask-address", cluster.scheduler_address, "--recipe", str(recipe),
                   "-w", str(tmp_path / "work"), "--skip-bids-validation"])
    assert rc == 0
    for sub in ("01", "02"):
        assert (out / f"sub-{sub}" / "dwi" / f"sub-{sub}_space-dwi_desc-brain_mask.nii.gz").is_file()
