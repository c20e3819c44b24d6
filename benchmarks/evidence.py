#!/usr/bin/env python
"""How much evidence a voxel carries for its last fibre: the limit of any count rule.

PRISM keeps a fibre when it lowers the voxel's squared residual by more than an information
criterion's price (``prismflow.prism.selection``). This benchmark asks how much a second fibre
*can* lower it, independently of PRISM's fit and of its count rule: every voxel of a phantom is
fitted twice with PRISM's family at its most flexible (own bounded D∥ and D⊥ per voxel, one
f_in, the isotropic pools), with as many fibres as it has and with one fewer (the weakest
left out), both started at the true directions, 300 Rprop iterations. The gain G =
(SSE_{k−1} − SSE_k)/σ² is printed per crossing angle and for three-fibre voxels (third fibre
20–35 %; ``--three``)

- noise-free (σ = the true noise level, the signal without noise): G₀, the evidence the
  tissue and scheme hold; with noise G is spread around G₀ + the parameters' chi-square;
- with noise (σ estimated from the b=0 volumes, as PRISM does): median, and the share of
  voxels where G exceeds a fibre's price: PRISM's rule (2 ln N: a fibre's 4 ln N less the
  2 ln N the smaller model pays for its voxel-wise D∥, D⊥; PRISM's statistic SSE₁,own −
  SSE₂,volume D is at most G, so this share bounds what its rule keeps, given converged fits),
  BIC with both models on voxel-wise D (4 ln N) and Akaike's price (4 × 2).

From the shares follows a bound on recall (one-to-one matches): a voxel reported with one fibre
fewer than it has loses at least one true fibre, so recall ≤ 1 − (voxels below the price) /
(true fibres).

Single-fibre voxels give the null: the second fibre starts 30° off the true one. Where a
crossing's G sits below the price, no rule charging that price keeps its second fibre on a
single voxel, and a lower price is paid for on the null; only spatial pooling (neighbours that
see the same fibres) adds evidence, and the robustness matrix's voxels have no neighbours.

The phantoms are dipy multi-tensor voxels (``prismflow.phantoms.multitensor``), or with
``--tissue crossing`` the crossing benchmark's phantom (``benchmarks/crossing.py``).

    python benchmarks/evidence.py --tissue slow --scheme 3shell --snr 20
    python benchmarks/evidence.py --tissue slow --scheme clinical --snr 20 --three
    python benchmarks/evidence.py --tissue crossing --snr 30 --n 100
    python benchmarks/evidence.py --tissue random --bval dwi.bval --bvec dwi.bvec --snr 20   # your scheme
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tissue", default="random",
                   help="random, slow, model-like (dipy multi-tensor) or crossing (default: random)")
    p.add_argument("--scheme", default="3shell", help="3shell, hcp, clinical or single (not with crossing)")
    p.add_argument("--bval", metavar="FILE", help="with --bvec: your own scheme (FSL text files) "
                                                   "instead of --scheme, to ask what it can resolve")
    p.add_argument("--bvec", metavar="FILE", help="see --bval")
    p.add_argument("--snr", type=float, default=30.0, help="b0 SNR of the Rician noise (default: 30)")
    p.add_argument("--n", type=int, default=40, help="voxels per crossing angle; 2n single (default: 40)")
    p.add_argument("--seed", type=int, default=0, help="phantom seed (default: 0)")
    p.add_argument("--iters", type=int, default=300, help="Rprop iterations per fit (default: 300)")
    p.add_argument("--three", action="store_true", help="also n three-fibre voxels (multi-tensor tissues)")
    p.add_argument("--json", metavar="FILE", help="also write the per-angle figures as JSON")
    return p


def make_phantom(args):
    """(phantom, its centre diffusivities (D∥, D⊥) mm²/s) of the requested cell."""
    if args.tissue == "crossing":
        from prismflow.phantoms.crossing import make_crossing_phantom
        ph = make_crossing_phantom(snr=args.snr, n_per_angle=args.n, n_single=2 * args.n, seed=args.seed)
        return ph, (float(ph.evals[0]), float(ph.evals[1]))
    from prismflow.phantoms.multitensor import make_multitensor_phantom, scheme
    if args.bval:
        from prismflow.io.gradients import read_bval_bvec
        acq = read_bval_bvec(args.bval, args.bvec)
        if int(acq.b0_mask.sum()) < 2:
            from prismflow.io.errors import InputError
            raise InputError(f"{args.bval}: the noise level is estimated from repeated b=0 volumes; "
                             f"this scheme has {int(acq.b0_mask.sum())}, add at least two")
    else:
        acq = scheme(args.scheme, seed=args.seed)
    ph = make_multitensor_phantom(acq, args.tissue, snr=args.snr,
                                  n_single=2 * args.n, n_per_angle=args.n,
                                  n_three=args.n if args.three else 0, seed=args.seed)
    par, perp, _ = ph.mean_evals
    return ph, (par, perp)


def starts(ph, rng):
    """(V, 3, 3) start directions: the true fibres, largest fraction first; for single fibres
    the second 30° off the first in a random plane (the null: a fibre that is not there)."""
    from prismflow.phantoms.crossing import second_fibre

    order = np.argsort(-ph.fibre_fractions, axis=1)
    dirs = np.take_along_axis(ph.true_dirs, order[..., None], axis=1)
    single = ph.n_fibres == 1
    dirs[single, 1] = second_fibre(dirs[single, 0], np.full(int(single.sum()), 30.0), rng)
    return dirs


def fit_gain(signal, dirs, k, acq, centre, sigma, iters):
    """(V,) (SSE_{k−1} − SSE_k)/σ² for b0-normalised ``signal`` (V, N): k and k − 1 fibres
    (the k-th of ``dirs`` (V, ≥ k, 3) left out), both fits started at ``dirs``."""
    import torch

    from prismflow.prism.config import Diffusivities
    from prismflow.prism.model import AcquisitionTensors
    from prismflow.prism.selection import OFF_LOGIT, sse_with_voxel_diffusivities

    v = signal.shape[0]
    at = AcquisitionTensors(acq, Diffusivities(axial=centre[0], radial=centre[1]), dtype=torch.float64)
    y = torch.as_tensor(signal, dtype=torch.float64)
    raw = {"s0_raw": torch.full((v,), math.log(math.e - 1.0), dtype=torch.float64),  # S0 = 1
           "logits": torch.tensor([-1.5] * 3 + [0.0] * k, dtype=torch.float64).repeat(v, 1),
           "dirs_raw": torch.as_tensor(np.asarray(dirs)[:, :k], dtype=torch.float64),
           "fin_raw": torch.zeros(v, 1, dtype=torch.float64)}
    sse = {}
    for kk in (k - 1, k):
        offset = torch.zeros(v, 3 + k, dtype=torch.float64)
        offset[:, 3 + kk:] = OFF_LOGIT
        sse[kk] = sse_with_voxel_diffusivities(raw, offset, at, y, axial=centre[0], radial=centre[1],
                                               n_iter=iters).numpy()
    return (sse[k - 1] - sse[k]) / sigma ** 2


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not args.snr > 0 or args.n < 1 or args.iters < 1:
        print("evidence: --snr, --n and --iters must be positive", file=sys.stderr)
        return 2
    if bool(args.bval) != bool(args.bvec) or (args.bval and args.tissue == "crossing"):
        print("evidence: --bval and --bvec go together, with a multi-tensor --tissue", file=sys.stderr)
        return 2
    from prismflow.io.errors import InputError

    try:
        return run(args, argv)
    except InputError as err:
        print(f"evidence: {err}", file=sys.stderr)
        return 1


def run(args, argv) -> int:
    """The benchmark proper (see the module docstring)."""
    import torch

    from prismflow.prism.fit import b0_normalise
    from prismflow.prism.noise import b0_noise_sigma

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    ph, centre = make_phantom(args)
    acq = ph.acquisition
    y, _ = b0_normalise(ph.signal, acq)            # as PRISM normalises
    sigma = b0_noise_sigma(y[:, acq.b0_mask])
    dirs = starts(ph, np.random.default_rng(args.seed + 1))
    # k = the fibres tested: 2 for single (the null) and two-fibre voxels, 3 for three-fibre ones
    k_of = np.maximum(ph.n_fibres, 2)
    gain, gain0 = np.empty(len(k_of)), np.empty(len(k_of))
    for k in np.unique(k_of).tolist():
        m = k_of == k
        gain[m] = fit_gain(y[m], dirs[m], k, acq, centre, sigma, args.iters)
        gain0[m] = fit_gain(ph.clean[m] / ph.s0, dirs[m], k, acq, centre, 1.0 / args.snr, args.iters)
    n_meas = len(acq)
    prices = {"PRISM": 2 * math.log(n_meas), "BIC": 4 * math.log(n_meas), "AIC": 4 * 2.0}
    group = np.where(ph.n_fibres == 1, 0, np.round(ph.angle_deg).astype(int))   # −1: three fibres
    cell = (args.tissue if args.tissue == "crossing"
            else f"{args.tissue} / {args.bval if args.bval else args.scheme}")
    print(f"cell {cell} / SNR {args.snr:g} / seed {args.seed}: {ph.signal.shape[0]} voxels x {n_meas} "
          f"measurements, sigma {sigma:.4g} of b0 (true {1 / args.snr:.4g}); centre D "
          f"{centre[0] * 1e3:.2f} / {centre[1] * 1e3:.2f} e-3 mm^2/s")
    print(f"price of a fibre (sigma^2 units): PRISM's rule 2 ln N = {prices['PRISM']:.1f}, "
          f"BIC 4 ln N = {prices['BIC']:.1f}, AIC 4 x 2 = {prices['AIC']:.1f}")
    print(f"{'angle':>6} {'n':>4} {'G0 median':>10} {'G0 10-90 %':>14} {'G median':>9} "
          f"{'G > PRISM':>10} {'G > BIC':>8} {'G > AIC':>8}")
    rows = []
    for g in sorted(set(group.tolist())):
        m = group == g
        row = {"angle_deg": g, "n": int(m.sum()),
               "noise_free_median": float(np.median(gain0[m])),
               "noise_free_p10": float(np.quantile(gain0[m], 0.1)),
               "noise_free_p90": float(np.quantile(gain0[m], 0.9)),
               "median": float(np.median(gain[m])),
               **{f"above_{k.lower()}": float(np.mean(gain[m] > v)) for k, v in prices.items()}}
        rows.append(row)
        label = {0: "single", -1: "3-fib"}.get(g, f"{g}")
        print(f"{label:>6} {row['n']:4d} {row['noise_free_median']:10.1f} "
              f"{row['noise_free_p10']:6.1f}-{row['noise_free_p90']:<7.1f} {row['median']:9.1f} "
              f"{100 * row['above_prism']:9.1f}% {100 * row['above_bic']:7.1f}% {100 * row['above_aic']:7.1f}%")
    several = ph.n_fibres >= 2
    bounds = {k: 1.0 - float(np.sum(gain[several] <= v)) / float(ph.n_fibres.sum()) for k, v in prices.items()}
    print("recall bound on this phantom (one-to-one matches): "
          + ", ".join(f"{k} price {100 * b:.1f} %" for k, b in bounds.items()))
    seconds = time.perf_counter() - t0
    print(f"{seconds:.0f} s wall")
    print("command: python benchmarks/evidence.py " + " ".join(sys.argv[1:] if argv is None else argv))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"cell": cell, "snr": args.snr, "seed": args.seed, "n_measurements": n_meas,
                       "sigma": sigma, "prices": prices, "rows": rows, "recall_bounds": bounds,
                       "seconds": seconds}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
