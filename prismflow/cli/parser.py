"""The ``prismflow`` BIDS-app command line: argument groups by concern, units and defaults."""

from __future__ import annotations

import argparse
import os
import textwrap
from pathlib import Path

from .. import __version__

SYNOPSIS = "Fit PRISM fixels (and baseline methods) to the DWI of a BIDS dataset; compare them."

DESCRIPTION = """\
prismflow is a BIDS app. At the participant level it runs a recipe on every DWI series of the
selected participants: brain mask, optional MRtrix3 denoising and Gibbs-ringing removal, the
PRISM fit (split into overlapping slabs along z, fitted in parallel, stitched back), baseline
methods beside it (dipy/MRtrix3 CSD, MSMT-CSD, ...), deterministic tractography on any peaks
source and, when a parcellation (dseg) exists, a streamline-count connectome. Outputs are BIDS
derivatives (model-<method>_param-<map>_dwimap.nii.gz, with a JSON sidecar each) and the run's
configuration under sub-<label>/log/.

At the group level it reads those derivatives alone and writes one tidy table
(group/prismflow_metrics.tsv: subject, method, metric, value) and figures (group/figures/).

Intermediate results are cached in the work directory (-w): a rerun with the same inputs and
settings only re-copies the outputs. Bad input is reported as one line and exit status 2."""

EXAMPLES = """\
examples:
  Build the bundled example datasets, then run the quick recipe on one participant:
    python bids_examples/make_examples.py
    prismflow bids_examples/data/synthetic out participant --participant-label 01 --recipe fast

  Every participant, 4 local processes, on the GPU when present:
    prismflow /data/bids /data/derivatives/prismflow participant --nprocs 4 --device auto

  Compare methods and subjects from the derivatives written above:
    prismflow /data/bids /data/derivatives/prismflow group

  One participant per Slurm array task (the recommended cluster pattern):
    sbatch --array=1-100 --cpus-per-task=8 --wrap 'prismflow /data/bids /data/out participant \\
        --participant-label $(sed -n "$((SLURM_ARRAY_TASK_ID+1))p" /data/bids/participants.tsv \\
        | cut -f1) -w $TMPDIR/work --nprocs $SLURM_CPUS_PER_TASK --skip-bids-validation'

  List the shipped recipes and every recipe key with its unit:
    prismflow --help-recipes

references:
  PRISM: Differentiable Analysis-by-Synthesis for Fixel Recovery in Diffusion MRI (the paper).
  Tournier et al. (2007) NeuroImage 35:1459 — constrained spherical deconvolution (CSD).
  Jeurissen et al. (2014) NeuroImage 103:411 — multi-shell multi-tissue CSD.
  Garyfallidis et al. (2014) Front. Neuroinform. 8:8 — dipy.
  Tournier et al. (2019) NeuroImage 202:116137 — MRtrix3.
  Jarecka et al. (2020) Front. Neuroinform. — pydra.
  Gorgolewski et al. (2017) PLoS Comput. Biol. 13:e1005209 — BIDS apps."""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog):
        super().__init__(prog, max_help_position=32, width=100)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value:g}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``prismflow``."""
    p = argparse.ArgumentParser(
        prog="prismflow", formatter_class=_Formatter,
        description=f"{SYNOPSIS}\n\n{DESCRIPTION}", epilog=EXAMPLES)
    p.add_argument("bids_dir", type=Path, nargs="?",
                   help="root of the input BIDS dataset (read only)")
    p.add_argument("output_dir", type=Path, nargs="?",
                   help="folder for the BIDS derivatives (created), e.g. "
                        "bids_dir/derivatives/prismflow; not the dataset root or a sub-* folder")
    p.add_argument("analysis_level", choices=["participant", "group"], nargs="?",
                   help="participant: fit each series; group: compare subjects and methods "
                        "from the derivatives in output_dir")

    g = p.add_argument_group("selecting data")
    g.add_argument("--participant-label", "--participant_label", nargs="+", metavar="LABEL",
                   help="participants to process, with or without 'sub-' (default: all)")
    g.add_argument("--session-id", "--session_id", nargs="+", metavar="LABEL",
                   help="sessions to process, with or without 'ses-' (default: all)")
    g.add_argument("--atlas", type=Path, metavar="DSEG",
                   help="parcellation in DWI space for the connectome (default: a *_dseg.nii.gz "
                        "of the subject in the dataset or its derivatives/, else no connectome)")
    g.add_argument("--skip-bids-validation", "--skip_bids_validation", action="store_true",
                   help="do not run bids-validator-deno on bids_dir (default: validate when the "
                        "validator is installed)")

    g = p.add_argument_group("what to run")
    g.add_argument("--recipe", default="default", metavar="NAME|PATH",
                   help="shipped recipe name or a YAML file (default: %(default)s); see "
                        "--help-recipes")
    g.add_argument("--help-recipes", action="store_true",
                   help="list the shipped recipes and every recipe key (with units), then exit")
    g.add_argument("--slab-size", type=_positive_int, metavar="VOXELS",
                   help="most slices per PRISM slab along z, in voxels; less when --mem-gb "
                        "requires (default: the recipe's slab_size_vox)")
    g.add_argument("--slab-overlap", type=_non_negative_int, metavar="VOXELS",
                   help="slices shared by neighbouring slabs, in voxels (default: the recipe's "
                        "slab_overlap_vox)")
    g.add_argument("--mem-gb", type=positive_float, metavar="GIB",
                   help="memory budget of one series' PRISM fit, GiB: every slab fitted at once "
                        "plus the stitched result; slabs are made thinner to fit (default: half "
                        "the free RAM, or 80%% of the free GPU memory)")
    g.add_argument("--seed", type=int, default=0,
                   help="seed of PRISM's initialisation and of tractography (default: %(default)s)")
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="torch device for PRISM: auto = CUDA when available, else CPU "
                        "(default: %(default)s)")

    g = p.add_argument_group("execution")
    g.add_argument("-w", "--work-dir", type=Path, metavar="DIR",
                   help="cache of intermediate results; rerun with the same -w to resume "
                        "after a failure or a kill, or to rerun fast; kept after the run, "
                        "delete it to free space (default: <output_dir>/../prismflow_work, "
                        "i.e. prismflow_work next to output_dir)")
    g.add_argument("--worker", choices=["cf", "dask", "slurm", "debug"], default="cf",
                   help="pydra worker: cf = local processes, dask = a dask cluster, slurm = one "
                        "sbatch job per task, debug = serial in this process "
                        "(default: %(default)s)")
    g.add_argument("--nprocs", "--n-procs", type=_positive_int, default=os.cpu_count() or 1,
                   metavar="N",
                   help="parallel local processes for cf (and a private dask cluster) "
                        "(default: the CPU count, %(default)s)")
    g.add_argument("--threads-per-task", type=_positive_int, default=1, metavar="N",
                   help="torch/BLAS threads inside each task (default: %(default)s)")
    g.add_argument("--dask-address", metavar="URL",
                   help="dask scheduler, e.g. tcp://host:8786 (default: start a local cluster "
                        "with --nprocs workers)")
    g.add_argument("--sbatch-args", default="", metavar="ARGS",
                   help="extra sbatch arguments for --worker slurm, e.g. \"-p short --mem=8G\" "
                        "(default: none)")
    g.add_argument("--overwrite", action="store_true",
                   help="replace existing derivatives that differ from the new ones (default: "
                        "stop with an error instead)")

    g = p.add_argument_group("other")
    g.add_argument("-v", "--verbose", action="count", default=0,
                   help="more messages (-v: info, -vv: debug); default: warnings, plus the "
                        "progress (a live display on a terminal, one line per finished task "
                        "in a log)")
    g.add_argument("-q", "--quiet", action="store_true", help="errors only (no progress)")
    g.add_argument("--version", action="version", version=f"prismflow {__version__}")
    return p


def usage_error(parser: argparse.ArgumentParser, args) -> str | None:
    """The one-line message for missing positionals (argparse allows them for --help-recipes)."""
    if args.help_recipes:
        return None
    missing = [n for n in ("bids_dir", "output_dir", "analysis_level") if getattr(args, n) is None]
    if missing:
        return (f"missing {', '.join(missing)}; usage: prismflow bids_dir output_dir "
                "{participant,group} [options]  (prismflow --help)")
    return None


def wrap(text: str) -> str:
    return "\n".join(textwrap.wrap(text, 100))
