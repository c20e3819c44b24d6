#!/usr/bin/env python
"""Participant-report cost on a brain-sized series: seconds and peak memory.

Builds the brain phantom (``prismflow.phantoms.brain``) at --scale, writes it as the BIDS app's
checked series does (uncompressed ``dwi.nii``, bval/bvec, mask), fits PRISM through
``prismflow.prism.volume.fit_volume`` with only --iters iterations (the report's cost does not
depend on how well the fit converged) and writes its maps with ``PrismFit.save``. A copy of
PRISM's peaks stands in for a baseline so that the glyph and angle-map code paths run. Then
``prismflow.reports.participant.build_sections`` runs in a fresh child process, whose wall
time, CPU time and peak resident memory (ru_maxrss) are printed beside the sizes of the largest
inputs, and the command that made them. ``--keep DIR`` keeps the files; a second run with the same
``--keep`` and ``--reuse`` measures the report again without rebuilding them.

    nice -n 10 python benchmarks/report.py --scale 0.5

"Holds no whole volume twice" means: the report's peak memory above the interpreter's baseline
stays below one copy of the 4-D series (the series and the 4-D prediction are streamed one
3-D volume at a time).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# peak memory from /proc's VmHWM: ru_maxrss survives exec, so a child of the process that held
# the phantom would report the parent's 2 GiB as its own
CHILD = r"""
import json, sys, time
def hwm_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
t0 = time.perf_counter()
import prismflow.reports.figures, prismflow.reports.participant as rp
import matplotlib.pyplot
base = hwm_mib()
inp = rp.ParticipantInputs(**json.loads(sys.argv[1]))
t1 = time.perf_counter(); c1 = time.process_time()
sections = rp.build_sections(inp)
t2 = time.perf_counter(); c2 = time.process_time()
peak = hwm_mib()
imgs = sum(1 for s in sections for it in s["items"] if it["kind"] == "img")
print(json.dumps({"baseline_mib": base, "peak_mib": peak, "build_s": t2 - t1,
                  "build_cpu_s": c2 - c1, "images": imgs, "sections": len(sections)}))
"""


def _prepare(work: Path, args) -> tuple[tuple, int]:
    """Phantom → series files, a short PRISM fit → maps, peaks and info files in ``work``."""
    import numpy as np

    from prismflow.io import save_nifti_atomic, write_bval_bvec
    from prismflow.phantoms.brain import make_brain_phantom
    from prismflow.prism import PrismConfig, fit_volume

    ph = make_brain_phantom(scale=args.scale, seed=0)
    save_nifti_atomic(ph.dwi, ph.affine, work / "dwi.nii")
    write_bval_bvec(ph.acquisition, work / "dwi.bval", work / "dwi.bvec")
    save_nifti_atomic(ph.mask.astype(np.uint8), ph.affine, work / "mask.nii.gz")
    cfg = PrismConfig.for_volume(n_iter=args.iters, seed=0, device="cpu")
    fit = fit_volume(ph.dwi, ph.acquisition, ph.mask, cfg, progress=False, workers=1)
    fit.save(work / "maps", ph.affine)
    peaks = fit.volume(fit.peaks()).astype(np.float32)
    save_nifti_atomic(peaks, ph.affine, work / "peaks_prism.nii.gz")
    shutil.copyfile(work / "peaks_prism.nii.gz", work / "peaks_prism-copy.nii.gz")
    (work / "info.json").write_text(json.dumps({"n_slabs": len(fit.info.get("slabs", [])),
                                                "seconds": fit.info.get("seconds", 0.0)}))
    (work / "binfo.json").write_text(json.dumps({"method": "prism-copy", "seconds": 0.0}))
    shape, dwi_bytes = ph.dwi.shape, ph.dwi.nbytes
    del ph, fit, peaks
    return shape, dwi_bytes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=0.5, help="brain phantom scale (default: 0.5)")
    ap.add_argument("--iters", type=int, default=10, help="PRISM iterations per slab (default: 10)")
    ap.add_argument("--keep", type=Path, help="keep the files in this folder")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse the phantom and fit already in --keep (measure the report only)")
    args = ap.parse_args(argv)

    import nibabel as nib
    import numpy as np

    work = args.keep or Path(tempfile.mkdtemp(prefix="prismflow-report-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.reuse and (work / "binfo.json").is_file():
        img = nib.load(str(work / "dwi.nii"))
        shape, dwi_bytes = img.shape, int(np.prod(img.shape)) * 4
    else:
        shape, dwi_bytes = _prepare(work, args)
    prep = time.perf_counter() - t0
    inp = {"dwi": str(work / "dwi.nii"), "bval": str(work / "dwi.bval"),
           "bvec": str(work / "dwi.bvec"), "mask": str(work / "mask.nii.gz"),
           "recipe": {"name": "benchmark", "steps": [{"action": "prism", "n_fibres": 3,
                                                      "n_iter": args.iters, "loss": "mse"}]},
           "seed": 0, "prism_maps": str(work / "maps"),
           "prism_peaks": str(work / "peaks_prism.nii.gz"), "prism_info": str(work / "info.json"),
           "baseline_peaks": [str(work / "peaks_prism-copy.nii.gz")],
           "baseline_info": [str(work / "binfo.json")]}
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(inp)], capture_output=True,
                          text=True, env=env, check=True)
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    mask_vox = int(np.asarray(nib.load(str(work / "mask.nii.gz")).dataobj).sum())
    largest_3d = int(np.prod(shape[:3])) * 4 * 4     # tissue_fractions: (X, Y, Z, 4) float32
    print(f"series {shape[0]}x{shape[1]}x{shape[2]}x{shape[3]}, {mask_vox} brain voxels "
          f"(scale {args.scale}); phantom + {args.iters}-iteration fit + maps: {prep:.0f} s")
    print(f"4-D series in memory (float32): {dwi_bytes / 2**20:.0f} MiB; 4-D prediction the same; "
          f"largest non-4-D map (tissue fractions): {largest_3d / 2**20:.0f} MiB")
    print(f"report: {res['sections']} sections, {res['images']} figures; build {res['build_s']:.1f} s "
          f"wall, {res['build_cpu_s']:.1f} s CPU; peak RSS {res['peak_mib']:.0f} MiB "
          f"(interpreter + imports {res['baseline_mib']:.0f} MiB → report itself "
          f"{res['peak_mib'] - res['baseline_mib']:.0f} MiB = "
          f"{(res['peak_mib'] - res['baseline_mib']) * 2**20 / dwi_bytes:.2f} × one 4-D series)")
    print(f"load average {os.getloadavg()[0]:.1f}; OMP_NUM_THREADS={env['OMP_NUM_THREADS']}")
    print("command: " + " ".join(["python", "benchmarks/report.py", *(argv or sys.argv[1:])]))
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
