"""End to end: participant then group on the synthetic dataset, like a user would run them.

Checks the output tree against ``tests/data/synthetic_outputs.txt``, validates the derivatives
with bids-validator-deno, checks the values of key maps and the connectome, and reruns the
participant level to show that the cache makes it much faster.
Run with ``pytest -m integration tests/bids`` (about 2-4 minutes on 2 cores).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from prismflow.cli.run import main
from prismflow.phantoms.bids_phantom import make_bundle_phantom
from prismflow.tracking import load_connectome_csv

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXPECTED = REPO / "tests" / "data" / "synthetic_outputs.txt"


def output_list(out: Path) -> list[str]:
    """Relative paths of every file under ``out``, run ids replaced by ``<run_id>``."""
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    return [re.sub(r"/log/[^/]+/", "/log/<run_id>/", f) for f in files]


def test_participant_then_group(tmp_path, make_examples):
    bids = make_examples.make_synthetic(tmp_path / "bids", n_subjects=2, seed=0)
    out, work = tmp_path / "out", tmp_path / "work"
    argv = [str(bids), str(out), "participant", "--recipe", "fast", "-w", str(work),
            "--nprocs", "2", "--slab-size", "4", "--slab-overlap", "1", "--device", "cpu"]
    t0 = time.perf_counter()
    assert main(argv) == 0
    first = time.perf_counter() - t0
    assert main([str(bids), str(out), "group", "-w", str(work)]) == 0

    # 1. the output tree
    got = output_list(out)
    expected = EXPECTED.read_text().split()
    assert got == expected, "\n".join(sorted(set(got) ^ set(expected)))

    # 2. the derivatives are valid BIDS (only .bidsignore'd files are outside the spec)
    exe = shutil.which("bids-validator-deno")
    if exe:
        proc = subprocess.run([exe, "--json", str(out)], capture_output=True, text=True)
        errors = [i for i in json.loads(proc.stdout)["issues"]["issues"]
                  if i["severity"] == "error"]
        assert proc.returncode == 0, errors
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["GeneratedBy"][0]["Name"] == "prismflow"

    # 3. values of key maps against the phantom's truth
    truth = make_bundle_phantom(seed=0)
    d = out / "sub-01" / "dwi"
    tissue = nib.load(d / "sub-01_space-dwi_model-prism_param-tissuefractions_dwimap.nii.gz").get_fdata()
    wm_true, csf_true = truth.tissue[..., 2], truth.tissue[..., 0]
    assert tissue[wm_true > 0.5, 3].mean() > 0.45          # bundles: mostly fibre signal
    assert tissue[csf_true > 0.9, 0].mean() > 0.5           # outer ring: free water
    assert tissue[wm_true > 0.5, 3].mean() > 3 * tissue[csf_true > 0.9, 3].mean()
    matrix, labels = load_connectome_csv(d / "sub-01_space-dwi_model-prism_seg-bundles_connectome.csv")
    assert list(labels) == [1, 2, 3, 4]
    right = matrix[0, 1] + matrix[2, 3]
    assert right >= 0.6 * matrix[np.triu_indices(4)].sum() and right > 0
    peaks_side = json.loads((d / "sub-01_space-dwi_model-prism_param-peaks_dwimap.json").read_text())
    assert peaks_side["Units"] and peaks_side["Seed"] == 0 and peaks_side["PrismConfig"]["n_iter"] == 20
    log = next((out / "sub-01" / "log").glob("*/sub-01_prismflow.json"))
    assert json.loads(log.read_text())["recipe"]["name"] == "fast"

    # 4. the group table: tidy, every subject and method
    table = pd.read_csv(out / "group" / "prismflow_metrics.tsv", sep="\t", dtype={"subject": str})
    assert list(table.columns) == ["subject", "session", "method", "metric", "value"]
    assert set(table.subject) == {"01", "02"} and set(table.method) == {"prism", "dipycsd"}
    assert {"crossing_fraction", "streamline_count", "mean_wm_fraction",
            "first_peak_angle_to_prism_deg"} <= set(table.metric)

    # 5. a rerun is served from the cache
    t0 = time.perf_counter()
    assert main(argv) == 0
    again = time.perf_counter() - t0
    print(f"participant level: first run {first:.1f} s, rerun {again:.1f} s")
    assert again < 0.25 * first
