"""Speed of the differentiable Bloch–Torrey simulator (prismflow.remidi.simulate_signal).

Prints, for the ReMiDi paper's protocol (21 b-values 0…10000 s/mm² × 30 directions ×
3 PGSE sequences δ = 5 ms, Δ = 10/25/50 ms = 1,890 measurements):

1. forward and forward+backward time (gradient w.r.t. all vertex coordinates) on the
   default ≈315-vertex axon mesh (12-gon, R = 3 µm, L = 9 µm; eigen cut-off ℓ = 1 µm),
   in double and single propagation precision, min over ``--repeats`` runs;
2. the same for larger meshes (sparse eigen path) up to ``--max-vertices``, with the peak
   resident memory: the largest size that completes is the one to quote.

With ``--accuracy`` it prints the validation table instead: maximum absolute error against
the MISST oracle (``../shared/oracles``), the exact disk × interval matrix formalism
(:mod:`prismflow.remidi.simulator.analytic`) for gradients ⟂, ∥ and oblique, and the Gaussian-phase
approximation at low b, for several mesh resolutions.

Timings on a shared machine are noisy: the minimum of the repeats is reported, with the
load average at the start, so read them as upper bounds.

Usage::

    python benchmarks/simulator.py [--threads 1] [--repeats 5] [--max-vertices 20000]
    python benchmarks/simulator.py --accuracy
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _protocol(torch):
    from prismflow.remidi import PGSE

    gen = torch.Generator().manual_seed(0)
    u = torch.randn(30, 3, generator=gen, dtype=torch.float64)
    b = torch.linspace(0.0, 10000.0, 21, dtype=torch.float64)
    return [PGSE(5, 10), PGSE(5, 25), PGSE(5, 50)], b, u


def _time(torch, mesh, seqs, b, u, repeats, **kw):
    from prismflow.remidi import simulate_signal

    fwd, tot, cpu_f, cpu_t = [], [], [], []
    for _ in range(repeats):
        v = mesh.vertices.clone().requires_grad_(True)
        c0, t0 = time.process_time(), time.perf_counter()
        s = simulate_signal(mesh.with_vertices(v), seqs, b, u, **kw)
        c1, t1 = time.process_time(), time.perf_counter()
        s.square().sum().backward()
        c2, t2 = time.process_time(), time.perf_counter()
        fwd.append(t1 - t0)
        tot.append(t2 - t0)
        cpu_f.append(c1 - c0)
        cpu_t.append(c2 - c0)
    return min(fwd), min(tot), min(cpu_f), min(cpu_t), tuple(s.shape)


def _product_floor(torch, mesh, seqs, b, u) -> tuple[float, float, str]:
    """GFLOP of the k×k products of one forward + backward (forward recurrence, adjoint
    recurrence, W̄), and the rate numpy's BLAS reaches on the recurrence's shape here.

    The kernel's shapes are recorded by wrapping ``chebyshev_apply`` for one run; the rate
    is measured on random arrays of the same shape (n_dir × (k × k) · (k × 2C)).
    """
    import numpy as np

    from prismflow.remidi import simulate_signal
    from prismflow.remidi.simulator import chebyshev, matrix_formalism

    calls = []
    orig = matrix_formalism.chebyshev_apply

    def record(v, lam, pvals, Wu, pairs, s, coeffs, scale):
        if Wu.numel():
            calls.append((v.shape[0], v.shape[1], v.shape[2], coeffs.shape[0] - 1))
        return orig(v, lam, pvals, Wu, pairs, s, coeffs, scale)

    matrix_formalism.chebyshev_apply = record
    try:
        v = mesh.vertices.clone().requires_grad_(True)
        simulate_signal(mesh.with_vertices(v), seqs, b, u).square().sum().backward()
    finally:
        matrix_formalism.chebyshev_apply = orig
    flops = sum(3 * 2 * nd * k * k * m * 2 * C for nd, k, C, m in calls)
    nd, k, C, m = calls[0]
    rng = np.random.default_rng(0)
    W = rng.standard_normal((nd, k, k))
    x = rng.standard_normal((nd, k, 2 * C))
    out = np.empty_like(x)
    with chebyshev.blas_threads(torch.get_num_threads()):
        np.matmul(W, x, out=out)
        t0 = time.process_time()
        for _ in range(200):
            np.matmul(W, x, out=out)
        rate = 200 * 2 * nd * k * k * 2 * C / (time.process_time() - t0)
    shape = f"{len(calls)} call(s): {nd} directions × {C} columns × {m} terms, k = {k}"
    return flops / 1e9, rate / 1e9, shape


def accuracy(torch) -> None:
    """Print the validation table (errors are max |S_FEM − S_ref| over the b-values)."""
    from pathlib import Path

    import numpy as np

    from prismflow.remidi import PGSE, cylinder_mesh, equal_area_radius, simulate_signal
    from prismflow.remidi.simulator.analytic import (cylinder_signal,
                                           gaussian_phase_cylinder_perpendicular)

    def circle(R, L, nv, n_sides=12, **kw):
        return cylinder_mesh(R / equal_area_radius(1.0, n_sides), L, nv, n_sides=n_sides, **kw)

    oracle = Path(__file__).resolve().parents[2] / "shared" / "oracles" / \
        "misst_cylinder_signal_smalldelta_1ms_bigdelta_40ms_radius_5um.txt"
    print("== MISST oracle: R = 5 µm, PGSE δ = 1 ms, Δ = 40 ms, ⟂, b ≤ 3000 s/mm² ==")
    if oracle.exists():
        ref = np.loadtxt(oracle)
        b = np.linspace(1, 3e9, 100) * 1e-6
        rows = [("12-gon, equal-area radius", circle(5.0, 1.0, 100, n_layers=2)),
                ("12-gon, circumradius 5", cylinder_mesh(5.0, 1.0, 150, n_layers=2)),
                ("48-gon, circumradius 5", cylinder_mesh(5.0, 1.0, 400, n_sides=48,
                                                         n_layers=2)),
                ("64-gon, circumradius 5", cylinder_mesh(5.0, 1.0, 1000, n_sides=64,
                                                         n_layers=2))]
        for name, m in rows:
            s = simulate_signal(m, PGSE(1, 40), b, [[1, 0, 0]], length_scale_um=2.0)
            print(f"  {name:28s} {m.n_vertices:6d} vertices  max error "
                  f"{np.abs(s[0, :, 0].numpy() - ref).max():.1e}")
        exact = cylinder_signal(5.0, None, PGSE(1, 40), b, [[1, 0, 0]], alpha_max=20)[:, 0]
        print(f"  {'exact disk reference':28s} {'':15s} max error "
              f"{np.abs(exact - ref).max():.1e}")
    else:
        print(f"  (oracle file {oracle} not found)")
    print("\n== exact disk × interval reference: R = 3 µm, L = 9 µm, b ≤ 3000 s/mm², "
          "ℓ = 1 µm ==")
    dirs = np.array([[1.0, 0, 0], [0, 0, 1.0], [1.0, 0, 1.0]])
    b = np.array([0, 500, 1000, 2000, 3000.0])
    for seq in (PGSE(5, 10), PGSE(5, 50)):
        ref = cylinder_signal(3.0, 9.0, seq, b, dirs, alpha_max=16, n_interval_modes=30)
        print(f"  PGSE δ={seq.durations_ms[0]:g} Δ={seq.durations_ms[0] + seq.durations_ms[1]:g}"
              "   (⟂, ∥, oblique)")
        for n_sides, nv in ((12, 300), (12, 1000), (24, 1000), (24, 3000)):
            m = circle(3.0, 9.0, nv, n_sides=n_sides)
            s = simulate_signal(m, seq, b, dirs)[0].numpy()
            e = np.abs(s - ref).max(axis=0)
            print(f"  {n_sides}-gon equal-area {m.n_vertices:6d} vertices: "
                  + "  ".join(f"{x:.1e}" for x in e))
    print("\n== Gaussian phase (⟂, R = 3 µm), b = 10…200 s/mm²: max relative error of the "
          "attenuation 1 − S ==")
    b = np.array([10.0, 50.0, 100.0, 200.0])
    meshes = [("12-gon equal-area", circle(3.0, 2.0, 200, n_layers=3)),
              ("24-gon equal-area", circle(3.0, 2.0, 1000, n_sides=24, n_layers=3)),
              ("48-gon equal-area", circle(3.0, 2.0, 2000, n_sides=48, n_layers=3))]
    for d, D in ((5, 10), (5, 50)):
        g = gaussian_phase_cylinder_perpendicular(3.0, d, D, b)
        ex = cylinder_signal(3.0, None, PGSE(d, D), b, [[1, 0, 0]], alpha_max=20)[:, 0]
        line = f"  δ={d} Δ={D}: exact disk {np.abs((1 - ex) / (1 - g) - 1).max():.1e}"
        for name, m in meshes:
            s = simulate_signal(m, PGSE(d, D), b, [[1, 0, 0]])[0, :, 0].numpy()
            line += f", {name} ({m.n_vertices} v) {np.abs((1 - s) / (1 - g) - 1).max():.1e}"
        print(line)


def xitorch_check(torch) -> None:
    """Do ``xitorch.linalg.symeig`` gradients match central differences on a mesh?

    The test function is gauge-invariant (it depends on the eigenvectors only through
    Φ Φᵀ-type products over whole clusters), so its derivative exists even where eigenvalues
    are exactly degenerate: f = Σ_k λ_k (φ_kᵀ M 1)² + tr((Φᵀ J_x Φ)²) over the lowest k
    eigenpairs of (S, M), k chosen so that no cluster is split. Meshes: a C4-symmetric box
    (exactly degenerate pairs) and a perturbed one (near-degenerate). Compared with our own
    ``generalized_eigh`` (gauge-aware backward).
    """
    import numpy as np
    import scipy.linalg

    try:
        import xitorch
        from xitorch.linalg import symeig
    except ImportError:
        raise SystemExit("--xitorch needs xitorch, which prismflow does not depend on: "
                         "pip install 'xitorch>=0.5,<0.6'") from None

    from prismflow.remidi import box_mesh
    from prismflow.remidi.simulator.eigen import generalized_eigh
    from prismflow.remidi.simulator.fem import apply_blocks, assemble_blocks, assemble_dense

    def f_of(v, mesh, solver, k):
        bl = assemble_blocks(mesh.with_vertices(v), 2.0)
        n = v.shape[0]
        if solver.startswith("xitorch"):
            A = assemble_dense(bl.tetrahedra, bl.S, n)
            M = assemble_dense(bl.tetrahedra, bl.M, n)
            opts = {} if solver == "xitorch-default" else {"degen_atol": 1e-9, "degen_rtol": 1e-9}
            lam, phi = symeig(xitorch.LinearOperator.m(0.5 * (A + A.T), is_hermitian=True), k,
                              M=xitorch.LinearOperator.m(0.5 * (M + M.T), is_hermitian=True),
                              bck_options=opts)
        else:
            lam, phi = generalized_eigh(bl.S, bl.M, bl.tetrahedra, n, k, method="dense")
        ones = torch.ones((n, 1), dtype=v.dtype)
        c = (phi.T @ apply_blocks(bl.tetrahedra, bl.M, ones, n))[:, 0]
        Wx = phi.T @ apply_blocks(bl.tetrahedra, bl.J[0], phi, n)
        return (lam * c * c).sum() + (Wx @ Wx).trace()

    print("== xitorch.linalg.symeig vs central differences (gauge-invariant f, float64) ==")
    gen = torch.Generator().manual_seed(0)
    for name, jitter in (("box 3×3×2 µm, exactly degenerate pairs", 0.0),
                         ("same box, vertices jittered 1e-3 µm", 1e-3)):
        mesh = box_mesh((3.0, 3.0, 2.0), (2, 2, 1))
        v0 = mesh.vertices.detach().clone()
        v0 = v0 + jitter * torch.randn(v0.shape, generator=gen, dtype=v0.dtype)
        with torch.no_grad():
            bl = assemble_blocks(mesh.with_vertices(v0), 2.0)
            n = v0.shape[0]
            lam_all = scipy.linalg.eigh(assemble_dense(bl.tetrahedra, bl.S, n).numpy(),
                                        assemble_dense(bl.tetrahedra, bl.M, n).numpy(),
                                        eigvals_only=True)
        k = 8
        while k < n - 1 and lam_all[k] - lam_all[k - 1] < 1e-6 * lam_all[k]:
            k += 1  # never split a cluster
        gaps = np.diff(lam_all[:k + 1])
        idx = torch.randperm(v0.numel(), generator=gen)[:12]
        h = 1e-5
        for solver in ("xitorch-default", "xitorch", "prismflow"):
            v = v0.clone().requires_grad_(True)
            try:
                f = f_of(v, mesh, solver, k)
                (g,) = torch.autograd.grad(f, v)
            except Exception as err:  # report, do not hide
                print(f"  {name}: {solver}: backward failed: {type(err).__name__}: {err}")
                continue
            fd = []
            for i in idx.tolist():
                e = torch.zeros_like(v0).view(-1)
                e[i] = h
                e = e.view_as(v0)
                with torch.no_grad():
                    fd.append(float(f_of(v0 + e, mesh, solver, k) - f_of(v0 - e, mesh, solver, k))
                              / (2 * h))
            fd = np.array(fd)
            ad = g.view(-1)[idx].numpy()
            rel = np.abs(ad - fd).max() / max(np.abs(fd).max(), 1e-300)
            print(f"  {name} (V={n}, k={k}, min kept gap {gaps[:k - 1].min():.1e}): {solver:15s}"
                  f" max |autograd − FD| / max|FD| = {rel:.1e}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    ap.add_argument("--repeats", type=int, default=5, help="repeats per timing (default: 5)")
    ap.add_argument("--max-vertices", type=int, default=20000,
                    help="largest mesh of the sweep, vertices (default: 20000)")
    ap.add_argument("--sizes", type=int, nargs="*", default=[1000, 3000, 10000, 20000],
                    help="mesh sizes of the sweep (default: 1000 3000 10000 20000)")
    ap.add_argument("--accuracy", action="store_true",
                    help="print the validation table instead of timings")
    ap.add_argument("--xitorch", action="store_true",
                    help="check xitorch.linalg.symeig gradients against finite differences")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if args.accuracy:
        print("command  :", " ".join([os.path.basename(sys.executable)] + sys.argv))
        accuracy(torch)
        return 0
    if args.xitorch:
        print("command  :", " ".join([os.path.basename(sys.executable)] + sys.argv))
        xitorch_check(torch)
        return 0
    from prismflow.remidi import cylinder_mesh, eigen_count
    from prismflow.remidi.simulator.eigen import sparse_backend

    print("command  :", " ".join([os.path.basename(sys.executable)] + sys.argv))
    print("device   :", _cpu_name(), f"({os.cpu_count()} logical CPUs)")
    print(f"torch    : {torch.__version__}, threads={torch.get_num_threads()}, "
          "eigenproblem float64; numpy BLAS inside the simulator limited to the same count")
    print(f"load avg : {os.getloadavg()[0]:.2f} (shared machine: timings are upper bounds)")
    seqs, b, u = _protocol(torch)
    n_meas = len(seqs) * b.numel() * u.shape[0]
    mesh = cylinder_mesh(3.0, 9.0)
    k = eigen_count(mesh)
    print(f"protocol : {len(seqs)} PGSE (δ=5 ms, Δ=10/25/50 ms) × {b.numel()} b (0…10000 s/mm²)"
          f" × {u.shape[0]} directions = {n_meas} measurements")
    print(f"\n== default axon mesh: {mesh.n_vertices} vertices, {mesh.n_tetrahedra} tetrahedra,"
          f" {k} eigenpairs (ℓ = 1 µm), min of {args.repeats} ==")
    print("(wall = elapsed time; cpu = process CPU time, less sensitive to other users' load)")
    print(f"{'precision':>10} {'fwd wall s':>11} {'fwd+bwd wall s':>15} {'fwd cpu s':>10} "
          f"{'fwd+bwd cpu s':>14}")
    for prec in ("double", "single"):
        f, t, cf, ct, shape = _time(torch, mesh, seqs, b, u, args.repeats, precision=prec)
        print(f"{prec:>10} {f:11.3f} {t:15.3f} {cf:10.3f} {ct:14.3f}")
        if prec == "double":
            verdict = "met" if ct <= 0.2 else "NOT met"
            print(f"{'':>10} target: forward+backward ≤ 0.2 s on one core, float64 — {verdict} "
                  f"by CPU time ({ct:.3f} s)")
            gflop, rate, kshape = _product_floor(torch, mesh, seqs, b, u)
            print(f"{'':>10} propagation products: {gflop:.2f} GFLOP per forward+backward "
                  f"({kshape}); numpy BLAS on that shape here: {rate:.1f} GFLOP/s → "
                  f"{gflop / rate:.3f} s of the {ct:.3f} s")

    print(f"\n== larger meshes (sparse eigen path above 2,500 vertices), double, "
          f"min of {max(1, args.repeats // 3)} ==")
    print(f"{'vertices':>9} {'tets':>8} {'eig':>5} {'fwd wall s':>11} {'fwd+bwd wall s':>15} "
          f"{'fwd+bwd cpu s':>14} {'peak RSS GB':>12}")
    largest = None
    for n in sorted(s for s in args.sizes if s <= args.max_vertices):
        m = cylinder_mesh(3.0, 9.0, n)
        try:
            f, t, _, ct, _ = _time(torch, m, seqs, b, u, max(1, args.repeats // 3))
        except MemoryError:
            print(f"{m.n_vertices:9d}  out of memory")
            break
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        print(f"{m.n_vertices:9d} {m.n_tetrahedra:8d} {eigen_count(m):5d} {f:11.2f} {t:15.2f}"
              f" {ct:14.2f} {rss:12.2f}")
        largest = (m.n_vertices, f, t, ct)
    if largest:
        print(f"\nlargest mesh run: {largest[0]} vertices, forward {largest[1]:.2f} s, "
              f"forward+backward {largest[2]:.2f} s")
        if largest[0] >= 19000:
            verdict = "met" if largest[3] <= 60 else "NOT met"
            print(f"target: 20k-vertex forward+backward ≤ 60 s on one core — {verdict} by CPU "
                  f"time ({largest[3]:.1f} s; sparse backend {sparse_backend()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
