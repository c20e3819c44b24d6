#!/usr/bin/env python
"""Whole-brain PRISM speed beside its peers: one synthetic brain, one run, one table.

Builds the brain phantom (prismflow.phantoms.brain: HCP grid 145×174×145, 741,046 brain voxels,
18 b0 + 3×90 directions) at --scale and fits it with PRISM through ``prismflow.prism.volume``
(``plan_volume`` → ``fit_planned_slab`` per slab → ``stitch_volume``, the one path that
``prismflow-fit`` and the BIDS app's tasks also take) at the paper's HCP defaults (MSE, K = 3, 100
iterations per 30-slice slab, all priors and calibration on). Peers run on the same voxels with
the same thread count and oracle responses from the generator. Prints per method: voxels,
measurements, seconds, voxels/s, voxel-iterations/s, peak memory, angular errors (single-fibre
and crossing WM voxels) and tissue-fraction correlation; then the command that made it.

    python benchmarks/wholebrain.py                                  # full brain, PRISM
    python benchmarks/wholebrain.py --scale 0.35 --methods prism,mrtrix-msmt,mrtrix-csd,dipy-csd
    python benchmarks/wholebrain.py --scale 0.3 --seeds 0,1,2        # stability across seeds
    python benchmarks/wholebrain.py --scaling                        # ~10k, ~100k, full
    python benchmarks/wholebrain.py --json results.json
    python benchmarks/wholebrain.py --scale 0.35 --workers 1 --before   # cost of the defaults

Times are wall-clock seconds of the fit (phantom generation excluded); peak_rss_gib is the
largest resident set of this process and of any fitting worker process.

``--before`` also fits the same phantom with the behaviour before data-driven diffusivities
and evidence-based fibre selection (``fibre_selection="threshold"``, fixed diffusivities) and
prints before / after seconds and CPU seconds, their ratio, where the added CPU goes (the
per-volume diffusivity estimate, the evidence test, the main fit) and a projection to the full
brain: the estimate is a constant (it samples at most 50k voxels), the evidence test and the
main fit scale with the voxels (their per-voxel CPU measured here). Compare CPU seconds: wall
time on shared cores follows the load.
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

KEYS = ("method", "voxels", "measurements", "iterations", "seconds", "voxels_per_s",
        "voxel_iterations_per_s", "peak_rss_gib", "peak_cuda_gib", "device", "threads",
        "angular_error_single_deg", "angular_error_crossing_deg", "fraction_corr")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0,
                   help="linear shrink of the HCP grid (1.0: 741,046 voxels; 0.5: ~92k) (default: 1.0)")
    p.add_argument("--snr", type=float, default=30.0, help="b0 SNR of the Rician noise (default: 30)")
    p.add_argument("--phantom-seed", type=int, default=0, help="noise seed of the phantom (default: 0)")
    p.add_argument("--methods", default="prism",
                   help="comma list of prism, mrtrix-msmt, mrtrix-csd, dipy-csd, dipy-msmt, force, odffp")
    p.add_argument("--seeds", default="0",
                   help="PRISM seeds (comma list); with more than one, reports WM-mask Dice and "
                        "fraction correlation of every seed against the first (default: 0)")
    p.add_argument("--scaling", action="store_true",
                   help="PRISM seconds against voxel count at scales giving ~10k, ~100k and all voxels")
    p.add_argument("--iters", type=int, default=100, help="PRISM iterations per slab (default: 100)")
    p.add_argument("--loss", choices=("mse", "nll"), default="mse", help="PRISM fidelity (default: mse)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for every method (default: all cores of this process)")
    p.add_argument("--workers", type=int, default=None,
                   help="PRISM slab worker processes on CPU (default: automatic)")
    p.add_argument("--mem-gb", type=float, default=None,
                   help="PRISM memory budget in GiB (default: half the free RAM / 80%% of free GPU memory)")
    p.add_argument("--device", default="auto", help="PRISM device: auto, cpu or cuda (default: auto)")
    p.add_argument("--warm-start", default=None, help="PRISM warm start: sd (default: none, random start)")
    p.add_argument("--no-fast-kernel", action="store_true", help="PRISM: plain autograd forward")
    p.add_argument("--before", action="store_true",
                   help="PRISM also with the previous defaults (fixed diffusivities, threshold fibre "
                        "selection) on the same phantom, in a fresh process (so that neither fit "
                        "inherits the other's warm allocator); prints the cost of the new defaults")
    p.add_argument("--variant", choices=("new", "before"), default="new",
                   help="PRISM settings of this run: the current defaults or the previous ones "
                        "(default: new)")
    p.add_argument("--json", metavar="FILE", help="also write one record per method as JSON")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


# ------------------------------------------------------------------------------- scoring

def best_match_deg(pred: np.ndarray, present: np.ndarray, true: np.ndarray,
                   n_true: np.ndarray) -> np.ndarray:
    """(V,) mean over true fibres of the angle to the closest present predicted fibre (90° if none)."""
    cos = np.abs(np.einsum("vtd,vkd->vtk", true.astype(np.float64), pred.astype(np.float64)))
    ang = np.degrees(np.arccos(np.clip(cos, 0.0, 1.0)))
    ang = np.where(present[:, None, :], ang, 90.0)
    closest = ang.min(2) if ang.shape[2] else np.full(ang.shape[:2], 90.0)
    valid = np.arange(true.shape[1])[None, :] < n_true[:, None]
    return np.where(valid, closest, 0.0).sum(1) / np.maximum(valid.sum(1), 1)


def score(ph, dirs: np.ndarray, present: np.ndarray, tissue: np.ndarray | None) -> dict:
    """Angular errors in WM voxels (true WM ≥ 0.5) and tissue-fraction correlation."""
    wm = ph.wm_fraction >= 0.5
    err = best_match_deg(dirs, present, ph.fibre_dirs, ph.n_fibres.astype(np.int64))
    single, cross = wm & (ph.n_fibres == 1), wm & (ph.n_fibres >= 2)
    out = {"angular_error_single_deg": float(err[single].mean()) if single.any() else float("nan"),
           "angular_error_crossing_deg": float(err[cross].mean()) if cross.any() else float("nan"),
           "fraction_corr": float("nan")}
    if tissue is not None:
        out["fraction_corr"] = float(np.corrcoef(tissue.ravel(), ph.tissue.ravel())[0, 1])
    return out


def prism_tissue(fit) -> np.ndarray:
    """(V, 3) [csf, gm, wm] of a PrismFit (the restricted pool counts as GM-like tissue)."""
    f = fit.fractions
    return np.column_stack([f[:, 0], f[:, 1] + f[:, 2], f[:, 3:].sum(1)])


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (the workers)."""
    import resource

    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2.0 * np.sum(a & b) / max(1, a.sum() + b.sum()))


# ------------------------------------------------------------------------------- methods

#: The behaviour before data-driven diffusivities, evidence-based fibre selection and the
#: voxel-wise shared f_in (issue 12): the paper's model as first built.
BEFORE = {"fibre_selection": "threshold", "estimate_diffusivities": False, "shared_f_in": False}


def run_prism(ph, args, seed: int, threads: int, changes: dict | None = None):
    import torch

    from prismflow.prism import PrismConfig, VolumeConfig, fit_volume
    from prismflow.prism.memory import peak_cuda_gib, peak_rss_gib

    cfg = PrismConfig.for_volume(loss=args.loss, seed=seed, device=args.device, n_iter=args.iters,
                                 fast_kernel=not args.no_fast_kernel, **(changes or {}))
    volume = VolumeConfig().with_changes(mem_gb=args.mem_gb, workers=args.workers,
                                         warm_start=args.warm_start)
    # torch's first optimiser imports torch._dynamo (≈ 1.4 CPU s): a one-time cost of the
    # process, paid here so that it falls into neither the planning nor the fit
    torch.optim.Rprop([torch.zeros(1, requires_grad=True)])
    c0 = cpu_seconds()
    t0 = time.perf_counter()
    fit = fit_volume(ph.dwi, ph.acquisition, ph.mask, cfg, volume, progress=args.verbose)
    seconds = time.perf_counter() - t0
    cpu = cpu_seconds() - c0
    v = ph.n_voxels
    rec = {"method": "prism" if seed == 0 else f"prism-seed{seed}", "voxels": v,
           "measurements": len(ph.acquisition), "iterations": args.iters, "seconds": seconds,
           "voxels_per_s": v / seconds, "voxel_iterations_per_s": v * args.iters / seconds,
           "peak_rss_gib": max(peak_rss_gib(), peak_rss_gib(children=True),
                               fit.info.get("worker_peak_rss_gib", 0.0)),
           "peak_cuda_gib": peak_cuda_gib(), "device": fit.info.get("device", "cpu"),
           "threads": int(fit.info.get("workers", 1)) * int(fit.info.get("threads", threads))
           if fit.info.get("workers", 1) > 1 else threads}
    rec.update(score(ph, fit.directions, fit.present(), prism_tissue(fit)))
    rec["extra"] = {"mem_gb": fit.info.get("mem_gb"), "workers": fit.info.get("workers"),
                    "threads_per_worker": fit.info.get("threads"),
                    "slab_size": fit.info.get("slab_size"), "slabs": len(fit.info.get("slabs", [])),
                    "fitted_voxel_iterations": fit.info.get("voxel_iterations"),
                    "worker_peak_rss_gib": fit.info.get("worker_peak_rss_gib"),
                    "oom_splits": fit.info.get("oom_splits", 0), "warm_start": args.warm_start,
                    "cpu_seconds": cpu,
                    "voxel_iterations_per_cpu_s": v * args.iters / max(cpu, 1e-9),
                    "load_average_1min": os.getloadavg()[0],
                    "fast_kernel": not args.no_fast_kernel,
                    "plan_cpu_seconds": fit.info.get("plan_cpu_seconds", 0.0),
                    "selection_cpu_seconds": (fit.info.get("selection") or {}).get("cpu_seconds", 0.0),
                    "selection": fit.info.get("selection"),
                    "diffusivities": fit.config.get("diffusivities"),
                    "fibre_selection": fit.config.get("fibre_selection")}
    return rec, fit


def run_before(args, seed: int) -> dict:
    """The PRISM record of this benchmark with ``--variant before``, run in a fresh process."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "before.json")
        cmd = [sys.executable, os.path.abspath(__file__), "--variant", "before", "--methods", "prism",
               "--seeds", str(seed), "--scale", str(args.scale), "--snr", str(args.snr),
               "--phantom-seed", str(args.phantom_seed), "--iters", str(args.iters),
               "--loss", args.loss, "--device", args.device, "--json", out]
        for flag, value in (("--threads", args.threads), ("--workers", args.workers),
                            ("--mem-gb", args.mem_gb), ("--warm-start", args.warm_start)):
            if value is not None:
                cmd += [flag, str(value)]
        if args.no_fast_kernel:
            cmd.append("--no-fast-kernel")
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        with open(out) as fh:
            return json.load(fh)[0]


def print_cost(before: dict, after: dict, full_voxels: int) -> None:
    """Before / after seconds and CPU seconds, where the added CPU goes, a full-brain projection."""
    b, a = before["extra"], after["extra"]
    v = after["voxels"]

    def split(e):
        plan, sel = e["plan_cpu_seconds"], e["selection_cpu_seconds"]
        return plan, sel, e["cpu_seconds"] - plan - sel

    (bp, bs, bm), (ap, as_, am) = split(b), split(a)
    print("\ncost of the new defaults (estimated diffusivities + evidence-based fibre selection)")
    print(f"{'':<26}{'before':>10}{'after':>10}{'added':>10}{'ratio':>8}")
    rows = [("wall seconds", before["seconds"], after["seconds"]),
            ("CPU seconds", b["cpu_seconds"], a["cpu_seconds"]),
            ("  planning (estimate, σ)", bp, ap), ("  evidence test", bs, as_),
            ("  main fit + stitch", bm, am)]
    for name, x, y in rows:
        ratio = f"{y / x:>8.2f}" if x > 0.05 else f"{'—':>8}"
        print(f"{name:<26}{x:>10.1f}{y:>10.1f}{y - x:>+10.1f}{ratio}")
    sel = a.get("selection") or {}
    print(f"evidence test: {sel.get('pruned_voxels', 0)} voxels pruned, tested per round "
          f"{sel.get('tested')}, voxels whose best model shrank per round {sel.get('removed')} "
          "(slab overlaps count twice)")
    print(f"CPU growth at this scale ({v} voxels): {100 * (a['cpu_seconds'] / b['cpu_seconds'] - 1):+.0f} %"
          f" (load average {b['load_average_1min']:.1f} / {a['load_average_1min']:.1f})")
    same_work = b.get("fitted_voxel_iterations") == a.get("fitted_voxel_iterations")
    if same_work:
        # the main fits did the same voxel-iterations: their CPU differs by noise only, so
        # the growth without that noise is (added planning + evidence test) / before
        print(f"  same main-fit work ({a['fitted_voxel_iterations']} voxel-iterations): growth "
              f"counting only the added planning and the evidence test: "
              f"{100 * (ap - bp + as_) / b['cpu_seconds']:+.0f} %")
    # projection: planning is a constant (≤ 50k sampled voxels), the rest scales with voxels
    f = full_voxels / v
    main = bm if same_work else am
    proj_b, proj_a = bp + f * (bs + bm), ap + f * (as_ + main)
    print(f"projected to {full_voxels} voxels (planning constant, evidence test and main fit × "
          f"{f:.1f}{', main fit as before' if same_work else ''}): {proj_b:.0f} → {proj_a:.0f} CPU s, "
          f"{100 * (proj_a / proj_b - 1):+.0f} % (a projection, not a measurement)")


def run_peer(ph, name: str, threads: int):
    from prismflow.baselines import get_method
    from prismflow.prism.memory import peak_rss_gib

    opts = {"nthreads": threads} if name.startswith("mrtrix") else {}
    method = get_method(name, response="oracle", oracle=ph.response_truth, n_peaks=3, **opts)
    res = method.fit_peaks(ph.dwi, ph.acquisition, mask=ph.mask)
    v = ph.n_voxels
    rec = {"method": name, "voxels": v, "measurements": len(ph.acquisition), "iterations": None,
           "seconds": res.seconds, "voxels_per_s": v / res.seconds, "voxel_iterations_per_s": None,
           "peak_rss_gib": max(peak_rss_gib(), peak_rss_gib(children=True)), "peak_cuda_gib": 0.0,
           "device": "cpu", "threads": threads}
    present = res.amplitudes > 0
    rec.update(score(ph, res.directions, present, None))
    return rec


# ------------------------------------------------------------------------------- output

def fmt(x, spec):
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "—"
    return format(x, spec)


def print_table(rows: list[dict]) -> None:
    head = (f"{'method':<16}{'voxels':>9}{'N':>5}{'iter':>6}{'seconds':>10}{'vox/s':>10}"
            f"{'vox·it/s':>11}{'RSS GiB':>9}{'CUDA GiB':>9}{'dev':>6}{'thr':>5}"
            f"{'err 1f °':>9}{'err X °':>9}{'frac r':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['method']:<16}{r['voxels']:>9d}{r['measurements']:>5d}{fmt(r['iterations'], 'd'):>6}"
              f"{r['seconds']:>10.1f}{r['voxels_per_s']:>10.0f}{fmt(r['voxel_iterations_per_s'], '.3g'):>11}"
              f"{r['peak_rss_gib']:>9.2f}{r['peak_cuda_gib']:>9.2f}{r['device']:>6}{r['threads']:>5d}"
              f"{fmt(r['angular_error_single_deg'], '.2f'):>9}{fmt(r['angular_error_crossing_deg'], '.2f'):>9}"
              f"{fmt(r['fraction_corr'], '.4f'):>8}")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("MRTRIX_QUIET", "1")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")
    import torch

    from prismflow.phantoms.brain import HCP_BRAIN_VOXELS, make_brain_phantom

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = args.threads or cores
    torch.set_num_threads(threads)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    rows, extra = [], {}

    if args.scaling:
        print("scaling: PRISM seconds against voxel count")
        print(f"{'scale':>6}{'voxels':>9}{'seconds':>10}{'µs/voxel/iter':>15}{'CPU s':>9}"
              f"{'fitted vox·it/CPU s':>21}")
        for s in (round((1e4 / HCP_BRAIN_VOXELS) ** (1 / 3), 3), round((1e5 / HCP_BRAIN_VOXELS) ** (1 / 3), 3), 1.0):
            ph = make_brain_phantom(scale=s, snr=args.snr, seed=args.phantom_seed)
            rec, _ = run_prism(ph, args, seeds[0], threads)
            rec["method"] = f"prism@{s}"
            rows.append(rec)
            print(f"{s:>6}{rec['voxels']:>9d}{rec['seconds']:>10.1f}"
                  f"{1e6 * rec['seconds'] / (rec['voxels'] * args.iters):>15.2f}"
                  f"{rec['extra']['cpu_seconds']:>9.0f}"
                  f"{rec['extra']['fitted_voxel_iterations'] / rec['extra']['cpu_seconds']:>21.3g}",
                  flush=True)
            del ph
        print()
    else:
        t0 = time.perf_counter()
        ph = make_brain_phantom(scale=args.scale, snr=args.snr, seed=args.phantom_seed)
        gen = time.perf_counter() - t0
        print(f"phantom: {ph.dwi.shape[:3]} grid, {ph.n_voxels} brain voxels, {len(ph.acquisition)} "
              f"measurements, SNR {args.snr:g}, built in {gen:.1f} s", flush=True)
        fits = {}
        if args.before and "prism" in methods:
            rec = run_before(args, seeds[0])
            rows.append(rec)
            e = rec["extra"]
            print(f"  prism before (threshold selection, fixed diffusivities, per-fibre f_in): {rec['seconds']:.1f} s wall, "
                  f"{e['cpu_seconds']:.0f} CPU s (load average {e['load_average_1min']:.1f})", flush=True)
        for name in methods:
            if name == "prism":
                for seed in seeds:
                    rec, fit = run_prism(ph, args, seed, threads,
                                         BEFORE if args.variant == "before" else None)
                    if args.variant == "before":
                        rec["method"] = rec["method"].replace("prism", "prism-before")
                    rows.append(rec)
                    fits[seed] = fit
                    e = rec["extra"]
                    print(f"  prism seed {seed}: {rec['seconds']:.1f} s wall, {e['cpu_seconds']:.0f} CPU s "
                          f"({e['fitted_voxel_iterations'] / e['cpu_seconds']:.3g} fitted voxel-iterations "
                          f"per CPU s; load average {e['load_average_1min']:.1f})", flush=True)
            else:
                rows.append(run_peer(ph, name, threads))
                print(f"  {name}: {rows[-1]['seconds']:.1f} s", flush=True)
        if len(fits) > 1:
            ref = fits[seeds[0]]
            ref_wm, ref_t = prism_tissue(ref)[:, 2] >= 0.5, prism_tissue(ref)
            stab = []
            for s in seeds[1:]:
                t = prism_tissue(fits[s])
                stab.append({"seed": s, "wm_dice": dice(ref_wm, t[:, 2] >= 0.5),
                             "fraction_corr": float(np.corrcoef(ref_t.ravel(), t.ravel())[0, 1]),
                             "identical": bool(np.array_equal(ref.fractions, fits[s].fractions))})
            extra["stability"] = stab
            for rec, st in zip([r for r in rows if r["method"].startswith("prism-seed")], stab):
                rec.setdefault("extra", {})["stability_vs_first_seed"] = st
    print_table(rows)
    # "prism" for seed 0, "prism-seed<N>" otherwise; the first seed's pair is compared
    before = [r for r in rows if r["method"].startswith("prism-before")]
    after = [r for r in rows if r["method"] == "prism" or r["method"].startswith("prism-seed")]
    if args.before and before and after:
        print_cost(before[0], after[0], HCP_BRAIN_VOXELS)
    if extra.get("stability"):
        print(f"\nstability against seed {seeds[0]}:")
        for s in extra["stability"]:
            print(f"  seed {s['seed']}: WM-mask Dice {s['wm_dice']:.4f}, fraction correlation "
                  f"{s['fraction_corr']:.4f}")
    print(f"\nhost: {platform.processor() or platform.machine()}, {cores} cores, torch "
          f"{torch.__version__}; command: python {' '.join(sys.argv)}")
    if args.json:
        records = [{k: r.get(k) for k in KEYS} | {"extra": r.get("extra", {})} for r in rows]
        for r in records:
            r["extra"]["command"] = "python " + " ".join(sys.argv)
        with open(args.json, "w") as fh:
            json.dump(records, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
