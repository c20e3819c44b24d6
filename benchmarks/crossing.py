#!/usr/bin/env python
"""The crossing-fibre benchmark: PRISM and its peers on one phantom, one table.

Prints, for each method: best-match angular error (degrees) for single-fibre voxels and at
each crossing angle, the overall error (mean over all voxels), recall / precision / F1 of
fibre detection (one-to-one matches within --tolerance degrees), the single-fibre
false-positive rate, wall seconds and voxels/s — then the command that made it.

    python benchmarks/crossing.py --snr 30                     # PRISM, MSE mode
    python benchmarks/crossing.py --snr 30 --loss nll          # PRISM, Rician NLL, learned σ
    python benchmarks/crossing.py --snr 30 --methods prism,prism-nll,dipy-csd,dipy-msmt,mrtrix-csd,mrtrix-msmt,force,odffp
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time

import numpy as np


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--snr", type=float, default=30.0, help="b0 SNR of the Rician noise (default: 30)")
    p.add_argument("--loss", choices=("mse", "nll"), default="mse",
                   help="fidelity of the method 'prism' (default: mse); 'prism-nll' is always nll")
    p.add_argument("--methods", default="prism",
                   help="comma list: prism, prism-nll, prism-mse, and baselines "
                        "(dipy-csd, dipy-msmt, mrtrix-csd, mrtrix-msmt, force, odffp)")
    p.add_argument("--n-per-angle", type=int, default=200, help="voxels per crossing angle (default: 200)")
    p.add_argument("--n-single", type=int, default=200, help="single-fibre voxels (default: 200)")
    p.add_argument("--seed", type=int, default=0, help="phantom and fit seed (default: 0)")
    p.add_argument("--iters", type=int, default=None, help="PRISM iterations (default: the config's)")
    p.add_argument("--fibres", type=int, default=3, help="PRISM fibres per voxel K (default: 3)")
    p.add_argument("--tolerance", type=float, default=20.0,
                   help="angular tolerance in degrees for recall/precision (default: 20)")
    p.add_argument("--response", choices=("oracle", "data"), default="oracle",
                   help="baseline response functions: oracle (ground truth) or estimated from data")
    p.add_argument("--force-library", type=int, default=20000, help="FORCE library size (default: 20000)")
    p.add_argument("--odffp-dictionary", type=int, default=None, help="ODF-FP dictionary size")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for every method (default: 1)")
    p.add_argument("--device", default="auto", help="PRISM device: auto, cpu or cuda (default: auto)")
    p.add_argument("--no-fast-kernel", action="store_true", help="PRISM: plain autograd forward")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def run_prism(ph, *, loss, args):
    from prismflow.prism import PrismConfig, PrismModel

    changes = dict(loss=loss, n_fibres=args.fibres, seed=args.seed, device=args.device,
                   fast_kernel=not args.no_fast_kernel)
    if args.iters:
        changes["n_iter"] = args.iters
    cfg = PrismConfig().replace(**changes)
    t0 = time.perf_counter()
    fit = PrismModel(ph.acquisition, cfg).fit(ph.signal, progress=args.verbose)
    seconds = time.perf_counter() - t0
    info = {"iterations": fit.info["iterations"], "device": fit.info["device"],
            "voxel_iterations_per_s": ph.signal.shape[0] * fit.info["iterations"] / seconds,
            "sigma_learned": float(fit.sigma[0]), "sigma_true": 1.0 / args.snr if args.snr else None,
            "fibre rule": f"fraction >= {cfg.min_fibre_fraction} and >= "
                          f"{cfg.relative_fibre_fraction} x largest"}
    return fit.directions, fit.present(), seconds, info


def run_baseline(name, ph, args):
    from prismflow.baselines import ResponseTruth, get_method

    opts = {}
    if name == "force":
        opts["library_size"] = args.force_library
    if name == "odffp" and args.odffp_dictionary:
        opts["dictionary_size"] = args.odffp_dictionary
    if name.startswith("mrtrix"):
        opts["nthreads"] = args.threads
    truth = ResponseTruth(wm_evals=ph.evals, csf_diffusivity=ph.csf_diffusivity, s0=ph.s0)
    method = get_method(name, response=args.response, oracle=truth, **opts)
    res = method.fit_peaks(ph.signal, ph.acquisition)
    present = res.amplitudes > 0
    return res.directions, present, res.seconds, dict(res.info)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("MRTRIX_QUIET", "1")
    import torch

    torch.set_num_threads(args.threads)
    from prismflow.metrics.peaks import score_peaks
    from prismflow.phantoms.crossing import make_crossing_phantom

    t0 = time.perf_counter()
    ph = make_crossing_phantom(snr=args.snr, n_per_angle=args.n_per_angle, n_single=args.n_single,
                               seed=args.seed)
    print(f"phantom: {ph.signal.shape[0]} voxels x {ph.signal.shape[1]} measurements "
          f"(b = {', '.join(f'{b:g}' for b in ph.acquisition.shells())} s/mm^2, "
          f"{int(ph.acquisition.b0_mask.sum())} b0), tensors {tuple(ph.evals)} mm^2/s, SNR {args.snr:g}, "
          f"seed {args.seed}; built in {time.perf_counter() - t0:.1f} s", flush=True)

    angles = sorted(set(ph.angle_deg[ph.n_fibres == 2].astype(int)))
    rows = []
    for name in [m.strip() for m in args.methods.split(",") if m.strip()]:
        if name in ("prism", "prism-mse", "prism-nll"):
            loss = {"prism": args.loss, "prism-mse": "mse", "prism-nll": "nll"}[name]
            label = f"prism-{loss}"
            dirs, present, seconds, info = run_prism(ph, loss=loss, args=args)
        else:
            label = name
            dirs, present, seconds, info = run_baseline(name, ph, args)
        s = score_peaks(dirs, present, ph.true_dirs, ph.n_fibres, tolerance_deg=args.tolerance)
        by = s.by_group(ph.angle_deg.astype(int))
        rows.append({"method": label, "single": by[0], "angles": {int(a): by[a] for a in angles},
                     "overall": s.overall_deg,
                     "crossing_mean": float(np.mean(s.best_match_deg[ph.n_fibres == 2])),
                     "recall": s.recall, "precision": s.precision, "f1": s.f1,
                     "fp_single": s.single_fibre_fp_rate(), "seconds": seconds,
                     "voxels_per_s": ph.signal.shape[0] / seconds, "info": info})
        print(f"  {label}: done in {seconds:.1f} s", flush=True)

    head = (["method", "1-fib"] + [f"{a}" for a in angles]
            + ["overall", "recall", "F1", "FP1", "seconds", "vox/s"])
    print()
    print("best-match angular error (deg) by crossing angle (deg); recall/F1 within "
          f"{args.tolerance:g} deg; FP1 = single-fibre voxels with >1 fibre")
    print(" | ".join(head))
    for r in rows:
        cells = ([r["method"], f"{r['single']:.1f}"] + [f"{r['angles'][a]:.1f}" for a in angles]
                 + [f"{r['overall']:.2f}", f"{100 * r['recall']:.1f}", f"{100 * r['f1']:.1f}",
                    f"{100 * r['fp_single']:.0f}", f"{r['seconds']:.1f}", f"{r['voxels_per_s']:.0f}"])
        print(" | ".join(cells))
    for r in rows:
        extra = {k: v for k, v in r["info"].items() if not isinstance(v, (list, dict))}
        print(f"  {r['method']}: {extra}")
    print(f"\nmachine: {platform.machine()} {platform.processor() or ''} threads={args.threads} "
          f"torch={torch.__version__}")
    print("command: python benchmarks/crossing.py " + " ".join(sys.argv[1:] if argv is None else argv))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "rows": rows}, fh, indent=2, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
