#!/usr/bin/env python
"""Build the small BIDS example datasets of prismflow (generated, never committed).

Writes, under ``bids_examples/data/`` by default:

* ``synthetic/`` — N subjects (default 2) of a multi-shell (b = 1000, 2000 s/mm²) three-tissue
  phantom with two crossing bundles, 12×12×8 voxels of 2 mm; the gradient table and sidecar sit
  at the top level (BIDS inheritance); a parcellation per subject lives in the derivative dataset
  ``synthetic/derivatives/phantom-atlas/`` (``*_seg-bundles_dseg.nii.gz`` with a ``dseg.tsv``).
* ``small64d/`` — one subject made from dipy's real ``small_64D`` volume (10×10×10, b = 1000).

Both pass ``bids-validator-deno``. Usage::

    python bids_examples/make_examples.py [--out bids_examples/data] [--subjects 2] [--force]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

HERE = Path(__file__).resolve().parent


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def _write_nifti(path: Path, data, affine, *, units_mm=True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.asarray(data), affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    nib.save(img, str(path))


def _write_gradients(bval: Path, bvec: Path, bvals, bvecs) -> None:
    np.savetxt(bval, np.asarray(bvals)[None, :], fmt="%g")
    np.savetxt(bvec, np.asarray(bvecs).T, fmt="%.6f")        # 3 rows: x, y, z


def _dataset_common(root: Path, name: str, readme: str, subjects: list[str]) -> None:
    _write_json(root / "dataset_description.json", {
        "Name": name, "BIDSVersion": "1.9.0", "DatasetType": "raw", "License": "CC0",
        "Authors": ["prismflow developers"],
        "GeneratedBy": [{"Name": "prismflow bids_examples/make_examples.py"}]})
    (root / "README").write_text(readme.strip() + "\n")
    rows = ["participant_id"] + [f"sub-{s}" for s in subjects]
    (root / "participants.tsv").write_text("\n".join(rows) + "\n")
    _write_json(root / "participants.json", {
        "participant_id": {"Description": "subject label"}})


def make_synthetic(root: Path, n_subjects: int = 2, seed: int = 0) -> Path:
    """Write the synthetic multi-subject dataset to ``root``; return ``root``."""
    sys.path.insert(0, str(HERE.parent))
    from prismflow.phantoms.bids_phantom import LABELS, make_bundle_phantom, multishell_acquisition

    acq = multishell_acquisition()
    subjects = [f"{i + 1:02d}" for i in range(n_subjects)]
    _dataset_common(root, "prismflow synthetic crossing-bundle phantom", """
Synthetic multi-shell diffusion phantom made by prismflow (bids_examples/make_examples.py):
two crossing bundles in a CSF/GM ring, 12x12x8 voxels of 2 mm, b = 0, 1000, 2000 s/mm2.
The gradient table and the DWI sidecar are shared by all subjects (top-level files).
Parcellation: derivatives/phantom-atlas (labels 1-2 join bundle A, 3-4 bundle B).
""", subjects)
    _write_gradients(root / "dwi.bval", root / "dwi.bvec", acq.bvals, acq.bvecs)
    _write_json(root / "dwi.json", {
        "PhaseEncodingDirection": "j-", "TotalReadoutTime": 0.05, "EchoTime": 0.08,
        "RepetitionTime": 3.0, "MagneticFieldStrength": 3, "Manufacturer": "synthetic"})
    atlas = root / "derivatives" / "phantom-atlas"
    _write_json(atlas / "dataset_description.json", {
        "Name": "phantom parcellation", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "prismflow bids_examples/make_examples.py"}]})
    (atlas / "desc-bundles_dseg.tsv").write_text(
        "index\tname\n" + "".join(f"{k}\t{v}\n" for k, v in LABELS.items()))
    for i, sub in enumerate(subjects):
        ph = make_bundle_phantom(acq=acq, seed=seed + 100 * i)
        _write_nifti(root / f"sub-{sub}" / "dwi" / f"sub-{sub}_dwi.nii.gz", ph.dwi, ph.affine)
        _write_nifti(atlas / f"sub-{sub}" / "dwi" / f"sub-{sub}_space-dwi_desc-bundles_dseg.nii.gz",
                     ph.dseg, ph.affine)
        np.savez_compressed(atlas / f"sub-{sub}" / "dwi" / "truth.npz",
                            tissue=ph.tissue, directions=ph.directions,
                            fibre_fractions=ph.fibre_fractions)
    (atlas / ".bidsignore").write_text("**/truth.npz\n")
    return root


def make_small64d(root: Path) -> Path:
    """Write one subject from dipy's real ``small_64D`` volume (10×10×10×65) to ``root``."""
    from dipy.data import get_fnames

    img_path, bval_path, bvec_path = get_fnames(name="small_64D")
    img = nib.load(img_path)
    bvals = np.loadtxt(bval_path).reshape(-1)
    bvecs = np.loadtxt(bvec_path)                  # N×3 with NaN rows for b=0 (FIELD-NOTES trap)
    if bvecs.shape[1] != 3:
        bvecs = bvecs.T
    bvecs = np.nan_to_num(bvecs, nan=0.0)
    _dataset_common(root, "dipy small_64D as BIDS", """
One subject made from dipy's real small_64D example volume (10x10x10, 64 directions at
b = 1000 s/mm2 plus one b = 0), converted by prismflow bids_examples/make_examples.py.
""", ["01"])
    d = root / "sub-01" / "dwi"
    data = np.asarray(img.dataobj).astype(np.float32)
    affine = img.affine
    _write_nifti(d / "sub-01_dwi.nii.gz", data, affine)
    _write_gradients(d / "sub-01_dwi.bval", d / "sub-01_dwi.bvec", bvals, bvecs)
    _write_json(d / "sub-01_dwi.json", {"PhaseEncodingDirection": "j-", "TotalReadoutTime": 0.05})
    return root


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "data", help="output folder")
    ap.add_argument("--subjects", type=int, default=2, help="synthetic subjects (default: 2)")
    ap.add_argument("--seed", type=int, default=0, help="noise seed (default: 0)")
    ap.add_argument("--force", action="store_true", help="replace existing datasets")
    args = ap.parse_args(argv)
    for name, make in (("synthetic", lambda r: make_synthetic(r, args.subjects, args.seed)),
                       ("small64d", make_small64d)):
        root = args.out / name
        if root.exists():
            if not args.force:
                print(f"{root} exists; keeping it (use --force to rebuild)")
                continue
            shutil.rmtree(root)
        make(root)
        print(f"wrote {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
