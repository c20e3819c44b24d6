"""prismflow-fit: fit PRISM to one diffusion-weighted image.

Writes tissue fractions, fibre directions and fractions, an MRtrix3-style peaks image,
f_in, S0, the bias field, predicted signal and residual RMS as NIfTI, each with a JSON
sidecar holding every parameter used, plus calibration.json (per-measurement affine, sigma).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .. import __version__
from ..io.errors import InputError

log = logging.getLogger("prismflow.fit")

DESCRIPTION = """\
Fit the PRISM multi-compartment model (CSF, GM, restricted, up to K stick-and-zeppelin fibres)
to a 4-D diffusion-weighted image by differentiable analysis-by-synthesis, in overlapping slabs.

Signals are divided by each voxel's mean b=0 signal before fitting; outputs are in data
units. b-values are read in s/mm^2; diffusivities are in mm^2/s.

Outputs (in OUT):
  tissue_fractions.nii.gz   4 frames: csf, gm, restricted, wm (volume fractions)
  fibre_directions.nii.gz   3K frames: unit fibre directions (bvec frame), 0 where absent
  fibre_fractions.nii.gz    K frames: fibre volume fractions, sorted descending
  peaks.nii.gz              3K frames: MRtrix3-style peaks (direction x fraction, scanner frame)
  n_fibres.nii.gz, f_in.nii.gz, s0.nii.gz, bias_field.nii.gz, residual_rms.nii.gz,
  predicted.nii.gz, calibration.json, and a .json sidecar for every image.
  fixels/                   MRtrix3 fixel directory (index, directions in scanner frame,
                            fraction, f_in, confidence = loss curvature w.r.t. the direction
                            in rad^-2, angular_sd in degrees); skip with --no-fixels
"""

EPILOG = """\
examples:
  prismflow-fit dwi.nii.gz --bval dwi.bval --bvec dwi.bvec --mask brain.nii.gz --out prism/
      fit with the defaults of the paper's whole-brain run (MSE, K=3, all priors on)
  prismflow-fit dwi.nii.gz --bval dwi.bval --bvec dwi.bvec --out prism/ --loss nll --iters 300
      Rician likelihood with the noise level learned jointly (slower, more accurate)
  prismflow-fit dwi.nii.gz --bval dwi.bval --bvec dwi.bvec --out prism/ --mem-gb 4
      the whole fit (slabs fitted at once + stitched result) kept within 4 GiB: slabs are
      made thinner than --slab-size where needed

references:
  PRISM: Differentiable Analysis-by-Synthesis for Fixel Recovery in Diffusion MRI.
"""


def build_parser() -> argparse.ArgumentParser:
    from ..prism.config import PrismConfig, VolumeConfig
    from .parser import _non_negative_int, _positive_int, positive_float

    vol, model_defaults = VolumeConfig(), PrismConfig()

    p = argparse.ArgumentParser(
        prog="prismflow-fit", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dwi", help="4-D diffusion-weighted NIfTI image (x, y, z, volumes)")
    io = p.add_argument_group("input and output")
    io.add_argument("--bval", required=True, help="FSL-style b-values file, s/mm^2")
    io.add_argument("--bvec", required=True, help="FSL-style gradient directions file (3 rows)")
    io.add_argument("--mask", help="3-D brain mask (default: voxels with a positive mean b=0)")
    io.add_argument("--out", required=True, help="output directory (created; must not exist "
                                                 "unless --force)")
    io.add_argument("--force", action="store_true", help="replace an existing output directory")
    io.add_argument("--no-fixels", action="store_true",
                    help="do not write the MRtrix3 fixel directory OUT/fixels/")
    model = p.add_argument_group("model and fit")
    model.add_argument("--loss", choices=("mse", "nll"), default=None,
                       help="data fidelity: mse, or Rician nll with learned sigma (default: mse)")
    model.add_argument("--fibres", type=_positive_int, default=None,
                       help=f"fibres per voxel K (default: {model_defaults.n_fibres})")
    model.add_argument("--iters", type=int, default=None,
                       help="iterations per slab (default: 100, as the paper's whole-brain run)")
    model.add_argument("--priors", choices=("volume", "voxelwise"), default="volume",
                       help="volume: spatial priors and calibration on (default); voxelwise: "
                            "independent voxels, repulsion and sparsity only")
    model.add_argument("--seed", type=int, default=None,
                       help=f"seed of the random start (default: {model_defaults.seed})")
    model.add_argument("--fixed-diffusivities", action="store_true",
                       help="fit with the constant diffusivities of the config instead of "
                            "estimating D-parallel/D-perp (and CSF/GM) from the data once per volume")
    model.add_argument("--fibre-selection", choices=("evidence", "threshold"), default=None,
                       help="evidence: a fibre is kept only when the data support it (per-voxel "
                            "information criterion with the b0 noise; default); threshold: "
                            "fraction thresholds alone")
    model.add_argument("--per-fibre-f-in", action="store_true",
                       help="give every fibre its own intra-axonal fraction f_in, as the PRISM "
                            "paper does (default: one f_in per voxel, shared by its fibres)")
    model.add_argument("--evidence-pool-deg", type=float, default=None, metavar="DEG",
                       help="with evidence selection: also average each voxel's evidence over "
                            "its 26 neighbours whose candidate fibres agree within DEG degrees; a "
                            "voxel keeps the larger of its own and the pooled fibre count "
                            f"(default {model_defaults.evidence_pool_deg:g} with --priors volume, "
                            "0 = every voxel alone, the default with --priors voxelwise)")
    run = p.add_argument_group("slabs and compute")
    run.add_argument("--slab-size", type=_positive_int, default=None, metavar="SLICES",
                     help="most slices per slab along z; --mem-gb may make slabs thinner "
                          f"(default: {vol.slab_size}, as the paper)")
    run.add_argument("--slab-overlap", type=_non_negative_int, default=None, metavar="SLICES",
                     help=f"slices shared by neighbouring slabs (default: {vol.slab_overlap})")
    run.add_argument("--mem-gb", type=positive_float, default=None, metavar="GIB",
                     help="memory budget of the whole fit in GiB: every slab fitted at once plus "
                          "the stitched result (default: half the free RAM, 80%% of free GPU "
                          "memory)")
    run.add_argument("--device", default=None, choices=("auto", "cpu", "cuda"),
                     help="auto uses CUDA when present, else CPU (default: auto)")
    run.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                     help="slabs fitted at once on CPU, one process and one thread each "
                          "(default: as many as cores, slabs and memory allow)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    p.add_argument("-q", "--quiet", action="store_true", help="errors only")
    p.add_argument("--version", action="version", version=f"prismflow {__version__}")
    return p


def _load_inputs(args):
    from ..io.gradients import read_bval_bvec
    from ..io.nifti import load_image

    img = load_image(args.dwi, ndim=4)
    dwi = np.asarray(img.dataobj, dtype=np.float32)
    acq = read_bval_bvec(args.bval, args.bvec, n_volumes=dwi.shape[3], image_name=args.dwi)
    if args.mask:
        mimg = load_image(args.mask, ndim=(3, 4))
        mask = np.asarray(mimg.dataobj)
        mask = mask[..., 0] if mask.ndim == 4 else mask
        if mask.shape != dwi.shape[:3]:
            raise InputError(f"{args.mask}: mask shape {mask.shape} does not match {args.dwi} "
                             f"{dwi.shape[:3]}; pass a mask in the image's grid")
        mask = mask > 0
    else:
        if not acq.b0_mask.any():
            raise InputError(f"{args.bval}: no b=0 volume (b <= 50 s/mm^2); PRISM needs one")
        mask = dwi[..., acq.b0_mask].mean(axis=3) > 0
    if not mask.any():
        raise InputError(f"{args.mask or args.dwi}: the mask selects no voxel")
    if np.any(dwi[mask] < 0):
        log.warning("%s: negative values inside the mask were clipped to 0", args.dwi)
        dwi = np.maximum(dwi, 0)
    return img, dwi, acq, mask


def run(args) -> Path:
    from ..prism import PrismConfig, VolumeConfig, fit_volume

    from .outputs import check_output_target, umask_dir_mode

    out = Path(args.out)
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise InputError(f"{out}: output directory exists and is not empty; "
                         "choose another --out or pass --force")
    # before the fit: an --out that is a file or cannot be written fails now, in one line
    check_output_target(out, option="--out", replace=True)
    if out.resolve() == Path(args.dwi).resolve().parent and args.force:
        raise InputError(f"{out}: refusing to replace the directory holding the input image")
    img, dwi, acq, mask = _load_inputs(args)
    try:
        cfg = model_config(args)
        volume = VolumeConfig().with_changes(slab_size=args.slab_size,
                                             slab_overlap=args.slab_overlap,
                                             mem_gb=args.mem_gb, workers=args.workers)
    except ValueError as err:
        raise InputError(str(err)) from err
    log.info("prismflow %s: %s, %d voxels x %d measurements, loss=%s K=%d seed=%d",
             __version__, args.dwi, int(mask.sum()), len(acq), cfg.loss, cfg.n_fibres, cfg.seed)
    t0 = time.perf_counter()
    fit = fit_volume(dwi, acq, mask, cfg, volume, progress=not args.quiet)
    # write everything into a temporary sibling, then move it into place in one rename
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    os.chmod(tmp, umask_dir_mode())  # mkdtemp makes it 0700; the output follows the umask
    try:
        fit.save(tmp, img.affine, extra_sidecar={
            "PrismflowVersion": __version__, "Input": str(args.dwi), "Bval": str(args.bval),
            "Bvec": str(args.bvec), "Mask": str(args.mask) if args.mask else "b0 > 0",
            "SlabSize": fit.info["slab_size"], "SlabOverlap": fit.info["slab_overlap"],
            "Seed": fit.info["seed"], "Device": fit.info["device"],
            "Units": {"b": "s/mm^2", "diffusivity": "mm^2/s"}})
        if not args.no_fixels:
            from ..io.fixels import write_prism_fixels

            write_prism_fixels(fit, acq, img.affine, tmp / "fixels", sidecar={
                "PrismflowVersion": __version__, "Input": str(args.dwi)})
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    n_present = fit.present().sum(1)
    log.info("done in %.1f s: %d voxels, mean fibres/voxel %.2f, mean residual RMS %.4g -> %s",
             time.perf_counter() - t0, n_present.size, n_present.mean(),
             float(fit.residual_rms.mean()), out)
    return out


def model_config(args: argparse.Namespace) -> PrismConfig:
    """The PRISM configuration of the parsed options (ValueError on an invalid value).

    ``--priors volume`` starts from :meth:`PrismConfig.for_volume`; ``voxelwise`` from the
    plain defaults with 100 iterations and no pooling of the evidence test (independent
    voxels). Options left unset are None: the config dataclasses keep their own defaults.
    """
    from ..prism.config import PrismConfig

    if args.priors == "volume":
        base = PrismConfig.for_volume()
    else:
        base = PrismConfig(n_iter=100, evidence_pool_deg=0.0)
    changes = {k: v for k, v in dict(loss=args.loss, n_fibres=args.fibres, seed=args.seed,
                                     device=args.device, n_iter=args.iters,
                                     fibre_selection=args.fibre_selection,
                                     evidence_pool_deg=args.evidence_pool_deg).items()
               if v is not None}
    if args.fixed_diffusivities:
        changes["estimate_diffusivities"] = False
    if args.per_fibre_f_in:
        changes["shared_f_in"] = False
    return base.replace(**changes)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.ERROR if args.quiet else (logging.DEBUG if args.verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="prismflow-fit: %(message)s")
    try:
        run(args)
    except InputError as err:
        print(f"prismflow-fit: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("prismflow-fit: interrupted; nothing was written to the output directory",
              file=sys.stderr)
        return 130
    except OSError as err:  # e.g. the disk filled up while writing: one line, no traceback
        where = f"{err.filename}: " if err.filename else ""
        print(f"prismflow-fit: error: {where}{err.strerror or err}; nothing was written to "
              f"{args.out}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
