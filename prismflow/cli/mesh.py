"""``prismflow-mesh``: reconstruct an axon mesh from a diffusion MRI signal (ReMiDi).

Subcommands
-----------
reconstruct   optimise the spectral auto-encoder latent of a 315-vertex axon mesh so that its
              simulated signal matches the given one; writes ``mesh.vtu`` and
              ``reconstruction.json`` into the output folder.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..io.errors import InputError

logger = logging.getLogger("prismflow.cli.mesh")

_DESCRIPTION = """\
Reconstruct an axon mesh from a diffusion MRI signal (ReMiDi, Algorithm 1).

Starting from a straight cylinder (radius 3 µm, length 9 µm, 315 vertices), the 16-d latent of a
spectral auto-encoder is optimised so that the simulated signal of the decoded mesh matches the
measured one (AdamW, cosine warm restarts, gradient clipping, loss k·‖Ŝ − S‖² on b0-normalised
signals). The signal must be normalised by its b = 0 value and ordered as the protocol:
(sequences, b-values, directions).

Signal file: .npy, .json (a nested list, or {"signal": [...]}) or whitespace/comma separated text,
holding n_seq × n_b × n_dir values (any shape with that many values, C order).

Protocol file (JSON; directions may be an integer n for n hemisphere directions):
  {"sequences": [{"type": "PGSE", "delta_ms": 5, "Delta_ms": 10}, ...],
   "bvalues_s_per_mm2": [0, 500, ...], "directions": [[x, y, z], ...] or 30,
   "diffusivity_mm2_per_s": 0.002, "n_eig": null, "length_scale_um": null}

Outputs (never overwritten unless --force): OUT/mesh.vtu (tetrahedral mesh, µm) and
OUT/reconstruction.json (loss curve, settings, units, timing).
"""

_EPILOG = """\
examples:
  prismflow-mesh reconstruct --signal sig.npy --protocol protocol.json --out recon/
      reconstruct with the bending prior and the paper's optimiser settings
  prismflow-mesh reconstruct --signal sig.npy --protocol protocol.json --out recon/ \\
      --prior bead --iterations 300 --reference truth.vtu
      beading prior, fewer iterations, Chamfer distances to a known mesh in the JSON

references:
  Khole et al., ReMiDi: Reconstruction of Microstructure Using a Differentiable Diffusion MRI
  Simulator (2025). Lemeunier et al., Computers & Graphics 107 (2022).
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prismflow-mesh",
                                description="ReMiDi mesh reconstruction from dMRI signals.")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("reconstruct", help="reconstruct a mesh from a signal",
                       description=_DESCRIPTION, epilog=_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    io = r.add_argument_group("input / output")
    io.add_argument("--signal", required=True, help="b0-normalised signal file (.npy/.json/.txt)")
    io.add_argument("--protocol", required=True, help="protocol JSON file")
    io.add_argument("--out", required=True, help="output folder (created if needed)")
    io.add_argument("--reference", help="true mesh (any meshio format, same vertex count) to "
                    "report Chamfer distances against")
    io.add_argument("--force", action="store_true", help="overwrite existing outputs")
    prior = r.add_argument_group("prior")
    prior.add_argument("--prior", choices=("bend", "bead", "fan", "all"), default="bend",
                       help="deformation family the auto-encoder was trained on (default: bend; "
                       "bend/bead/fan weights are shipped, all is trained on first use)")
    opt = r.add_argument_group("optimisation")
    opt.add_argument("--iterations", type=int, default=750,
                     help="maximum iterations (default: 750)")
    opt.add_argument("--lr", type=float, default=0.25, help="learning rate on the latent "
                     "(default: 0.25)")
    opt.add_argument("--optimizer", choices=("adamw", "adam", "sgd"), default="adamw",
                     help="optimiser (default: adamw)")
    opt.add_argument("--scheduler", choices=("cosine_warm_restarts", "cosine", "none"),
                     default="cosine_warm_restarts", help="learning-rate schedule "
                     "(default: cosine_warm_restarts)")
    opt.add_argument("--restart-period", type=int, default=100,
                     help="iterations per cosine cycle (default: 100)")
    opt.add_argument("--grad-clip", type=float, default=1.0,
                     help="gradient-norm clip on the latent, 0 = off (default: 1)")
    opt.add_argument("--loss-scale", type=float, default=100.0,
                     help="loss multiplier k (default: 100)")
    opt.add_argument("--patience", type=int, default=150, help="stop after this many iterations "
                     "without relative improvement > 1e-4 (default: 150)")
    opt.add_argument("--n-eig", type=int, help="fixed eigenpair count of the simulator "
                     "(default: the protocol's, else the simulator's cut-off on the start mesh)")
    opt.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    return p


def run_reconstruct(args: argparse.Namespace) -> int:
    """Body of ``prismflow-mesh reconstruct``; raises InputError on bad input."""
    import torch

    from ..remidi.reconstruct import ReconstructionConfig, reconstruct_files

    torch.set_num_threads(max(1, args.threads))
    if args.iterations < 1 or not args.lr > 0:
        raise InputError(f"--iterations must be >= 1 and --lr > 0, got {args.iterations}, "
                         f"{args.lr}")
    config = ReconstructionConfig(
        n_iter=args.iterations, lr=args.lr, optimizer=args.optimizer, scheduler=args.scheduler,
        restart_period=args.restart_period, grad_clip=args.grad_clip or None,
        loss_scale=args.loss_scale, patience=args.patience, n_eig=args.n_eig)
    logger.info("reconstruct: signal %s, protocol %s, prior %s, ≤ %d iterations, %d thread(s)",
                args.signal, args.protocol, args.prior, args.iterations, torch.get_num_threads())
    paths = reconstruct_files(args.signal, args.protocol, args.out, prior=args.prior,
                              config=config, reference_path=args.reference, force=args.force)
    logger.info("wrote %s and %s", paths["mesh"], paths["json"])
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``prismflow-mesh`` console script."""
    os.environ.setdefault("NO_ET", "1")
    args = _parser().parse_args(argv)
    level = logging.ERROR if args.quiet else (logging.DEBUG if args.verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "reconstruct":
            return run_reconstruct(args)
    except InputError as err:
        print(f"prismflow-mesh: error: {err}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
