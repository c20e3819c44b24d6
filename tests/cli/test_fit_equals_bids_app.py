"""``prismflow-fit`` and the BIDS app fit PRISM through the same plan → slab → stitch path, so
the same data, seed and slabs give bit-identical maps (the reference is the other entry point:
the two used to differ through a second σ estimate and a second slab planner)."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

os.environ.setdefault("NO_ET", "1")

from prismflow.cli.fit import main as fit_main  # noqa: E402
from prismflow.cli.run import main as app_main  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

#: prismflow-fit's output name -> the BIDS app's param label
PARAMS = {"tissue_fractions": "tissuefractions", "fibre_directions": "fibredirections",
          "fibre_fractions": "fibrefractions", "peaks": "peaks", "n_fibres": "nfibres",
          "f_in": "fin", "s0": "s0", "bias_field": "biasfield", "residual_rms": "residualrms",
          "predicted": "predicted"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_examples",
                                                  REPO / "bids_examples" / "make_examples.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_synthetic(tmp_path_factory.mktemp("bids") / "synthetic", n_subjects=1, seed=0)


def test_prismflow_fit_and_bids_app_give_bit_identical_prism_maps(dataset, tmp_path):
    recipe = tmp_path / "prism.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "prism-test", "description": "whole-volume mask, PRISM only",
        "steps": [{"action": "mask", "method": "all"},
                  {"action": "prism", "n_iter": 6, "n_fibres": 3, "loss": "mse"}]}))
    common = ["--slab-size", "4", "--slab-overlap", "1", "--seed", "7", "--device", "cpu"]
    out = tmp_path / "app"
    assert app_main([str(dataset), str(out), "participant", "--participant-label", "01",
                     "--recipe", str(recipe), "-w", str(tmp_path / "work"), "--worker", "debug",
                     "--skip-bids-validation", *common]) == 0
    dwi = dataset / "sub-01" / "dwi" / "sub-01_dwi.nii.gz"
    fit_out = tmp_path / "fit"
    # prismflow-fit's default mask (mean b=0 > 0) is the recipe's "all" mask
    assert fit_main([str(dwi), "--bval", str(dataset / "dwi.bval"), "--bvec",
                     str(dataset / "dwi.bvec"), "--out", str(fit_out), "--iters", "6",
                     "--workers", "1", "-q", *common]) == 0
    for name, param in PARAMS.items():
        a = nib.load(fit_out / f"{name}.nii.gz")
        b = nib.load(out / "sub-01" / "dwi" / f"sub-01_space-dwi_model-prism_param-{param}_dwimap.nii.gz")
        assert np.array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj)), name
        assert np.array_equal(a.affine, b.affine)
    tissue = np.asarray(nib.load(fit_out / "tissue_fractions.nii.gz").dataobj)
    assert tissue[..., 3].max() > 0.3            # a real fit, not two empty maps
