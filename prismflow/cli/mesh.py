"""``prismflow-mesh``: reconstruct an axon mesh from a diffusion MRI signal (ReMiDi).

Subcommands
-----------
reconstruct   optimise the spectral auto-encoder latent of a 315-vertex axon mesh so that its
              simulated signal matches the given one; writes ``mesh.vtu`` and
              ``reconstruction.json`` into the output folder.
train-sae     train the spectral auto-encoder of one deformation family on the default axon
              mesh and save its weights (reproduces the shipped files from the seed).
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
    opt.add_argument("--device", default="cpu", help="device of the auto-encoder and latent: "
                     "cpu, cuda, cuda:N or auto (default: cpu; the simulator's eigenproblem "
                     "runs on the CPU in float64 either way)")

    t = sub.add_parser("train-sae", help="train a spectral auto-encoder and save its weights",
                       description="Train the ReMiDi spectral auto-encoder of one deformation "
                       "family on the default axon mesh (cylinder_mesh(3, 9)) with the paper's "
                       "parameter splits, and save weights + basis + held-out errors to --out.")
    t.add_argument("--kind", choices=("bend", "bead", "fan", "all"), default="bend",
                   help="deformation family (default: bend)")
    t.add_argument("--out", required=True, help="output .pt file (written atomically)")
    t.add_argument("--epochs", type=int, default=150, help="passes over the training set "
                   "(default: 150)")
    t.add_argument("--batch-size", type=int, default=32, help="batch size (default: 32)")
    t.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default: 3e-3)")
    t.add_argument("--seed", type=int, default=0, help="seed of weights and batches (default: 0)")
    t.add_argument("--augmentation", choices=("none", "scale", "paper"), default="none",
                   help="training-set augmentation: none, the 0.5×/1.5× axis scalings, or the "
                   "paper's scalings × rotations (default: none)")
    t.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    t.add_argument("--force", action="store_true", help="overwrite an existing --out")
    return p


def _check_reconstruct_args(args: argparse.Namespace) -> None:
    """One clear line per bad option value (InputError), before anything runs."""
    checks = [(args.iterations >= 1, f"--iterations must be >= 1, got {args.iterations}"),
              (args.lr > 0, f"--lr must be > 0, got {args.lr}"),
              (args.restart_period >= 1, f"--restart-period must be >= 1 iteration, got "
               f"{args.restart_period} (use --scheduler none for no restarts)"),
              (args.grad_clip >= 0, f"--grad-clip must be >= 0 (0 = off), got {args.grad_clip}"),
              (args.loss_scale > 0, f"--loss-scale must be > 0, got {args.loss_scale}"),
              (args.patience >= 1, f"--patience must be >= 1, got {args.patience}"),
              (args.n_eig is None or args.n_eig >= 1, f"--n-eig must be >= 1, got {args.n_eig}"),
              (args.threads >= 1, f"--threads must be >= 1, got {args.threads}")]
    for ok, msg in checks:
        if not ok:
            raise InputError(msg)


def run_reconstruct(args: argparse.Namespace) -> int:
    """Body of ``prismflow-mesh reconstruct``; raises InputError on bad input."""
    import torch

    from ..remidi.reconstruction.reconstruct import ReconstructionConfig, reconstruct_files

    _check_reconstruct_args(args)
    torch.set_num_threads(args.threads)
    try:
        config = ReconstructionConfig(
            n_iter=args.iterations, lr=args.lr, optimizer=args.optimizer,
            scheduler=args.scheduler, restart_period=args.restart_period,
            grad_clip=args.grad_clip or None, loss_scale=args.loss_scale,
            patience=args.patience, n_eig=args.n_eig, device=args.device)
    except ValueError as err:  # the config's own checks (e.g. an unknown device)
        raise InputError(str(err)) from err
    logger.info("reconstruct: signal %s, protocol %s, prior %s, ≤ %d iterations, %d thread(s)",
                args.signal, args.protocol, args.prior, args.iterations, torch.get_num_threads())
    paths = reconstruct_files(args.signal, args.protocol, args.out, prior=args.prior,
                              config=config, reference_path=args.reference, force=args.force)
    logger.info("wrote %s and %s", paths["mesh"], paths["json"])
    return 0


def run_train_sae(args: argparse.Namespace) -> int:
    """Body of ``prismflow-mesh train-sae``; raises InputError on bad input."""
    from pathlib import Path

    import torch

    from ..remidi.reconstruction.sae import save_sae
    from ..remidi.reconstruction.sae_training import SAETrainConfig, train_from_config

    if args.epochs < 1 or args.batch_size < 1 or not args.lr > 0 or args.threads < 1:
        raise InputError(f"--epochs, --batch-size and --threads must be >= 1 and --lr > 0; got "
                         f"{args.epochs}, {args.batch_size}, {args.threads}, {args.lr}")
    out = Path(args.out)
    if out.exists() and not args.force:
        raise InputError(f"{out} exists; pass --force to overwrite it")
    if out.suffix != ".pt":
        raise InputError(f"--out {out}: give a .pt file name")
    torch.set_num_threads(args.threads)
    cfg = SAETrainConfig(kind=args.kind, epochs=args.epochs, batch_size=args.batch_size,
                         lr=args.lr, seed=args.seed, augmentation=args.augmentation)
    logger.info("train-sae: %s, %d epochs, augmentation %s, seed %d, %d thread(s)", cfg.kind,
                cfg.epochs, cfg.augmentation, cfg.seed, torch.get_num_threads())
    model, _ = train_from_config(cfg)
    save_sae(model, out, meta=model.meta)
    logger.info("saved %s (%d parameters; held-out RMSE %.4f µm)", out,
                sum(p.numel() for p in model.parameters()), model.meta["test_rmse_um"])
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
        if args.command == "train-sae":
            return run_train_sae(args)
    except InputError as err:
        print(f"prismflow-mesh: error: {err}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
