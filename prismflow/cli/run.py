"""``prismflow bids_dir output_dir participant|group``: the BIDS-app entry point.

Parse → check the input and output folders → build the run's configuration → hand the
workflow to :mod:`prismflow.engine` → copy the tree that the workflow's sink laid out
(:mod:`prismflow.tasks.sink`) into the output folder.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import shlex
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

os.environ.setdefault("NO_ET", "1")           # pydra: no online version check
os.environ.setdefault("MRTRIX_QUIET", "1")     # MRtrix3: no progress bars

from .. import __version__  # noqa: E402
from ..io import InputError  # noqa: E402
from . import import_workflows  # noqa: E402
from .parser import build_parser, usage_error  # noqa: E402

logger = logging.getLogger("prismflow")


@dataclass(frozen=True)
class RunConfig:
    """The resolved settings of one run (saved under ``sub-<label>/log/<run_id>/``)."""

    bids_dir: str
    output_dir: str
    analysis_level: str
    work_dir: str
    participant_labels: list[str] = field(default_factory=list)
    session_ids: list[str] = field(default_factory=list)
    recipe: dict = field(default_factory=dict)
    seed: int = 0
    device: str = "auto"
    slab_size: int | None = None
    slab_overlap: int | None = None
    mem_gb: float | None = None
    atlas: str | None = None
    engine: dict = field(default_factory=dict)
    threads_per_task: int = 1
    overwrite: bool = False
    version: str = __version__
    command: str = ""
    run_id: str = ""


def _setup_logging(verbose: int, quiet: bool) -> None:
    levels = (logging.WARNING, logging.INFO, logging.DEBUG)
    level = logging.ERROR if quiet else levels[min(verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s: %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("pydra", "distributed", "nipype", "fsspec", "bids"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    # one line per finished task in a non-interactive log, unless -q
    logging.getLogger("prismflow.progress").setLevel(level if quiet else min(level, logging.INFO))
    if level > logging.DEBUG:
        import warnings

        warnings.filterwarnings("ignore")


def _say(args, line: str) -> None:
    """One summary line on stdout at the end of a run (not with -q)."""
    if not args.quiet:
        print(line)


def _bids_uri(path: str, bids_dir: Path) -> str:
    """``bids:raw:<relative path>`` inside the dataset, else the file's name (never a local path)."""
    try:
        return "bids:raw:" + Path(path).resolve().relative_to(bids_dir.resolve()).as_posix()
    except ValueError:
        return Path(path).name


def _series(dwi, bids_dir: Path) -> dict:
    """What the derivatives sink needs to name and describe one series' outputs."""
    seg = re.search(r"_desc-([A-Za-z0-9]+)_", Path(dwi.dseg).name) if dwi.dseg else None
    return {"entities": {k: v for k, v in dwi.entities.items()
                         if k in ("subject", "session", "acquisition", "run", "direction")},
            "sources": [_bids_uri(dwi.dwi, bids_dir)],
            "parcellation": _bids_uri(dwi.dseg, bids_dir) if dwi.dseg else None,
            "segmentation": seg.group(1) if seg else "atlas"}


def _save_config(cfg: RunConfig, out_dir: Path, dwi, extra: dict) -> Path:
    from prismflow.io import save_json_atomic

    sub = out_dir / f"sub-{dwi.subject}"
    if dwi.session:
        sub = sub / f"ses-{dwi.session}"
    return save_json_atomic({**asdict(cfg), **extra},
                            sub / "log" / cfg.run_id / f"{dwi.name}_prismflow.json")


def run_participant(args, cfg_kwargs: dict) -> int:
    from prismflow.engine import EngineConfig, run_task
    from prismflow.io.bids import check_series, collect_inputs, open_layout, run_validator
    from prismflow.io.derivatives import init_derivatives, publish

    import_workflows()
    from prismflow.workflows.participant import ParticipantWorkflow
    from prismflow.workflows.recipes import load_recipe

    recipe = load_recipe(args.recipe)
    bids_dir, out_dir, work = (Path(cfg_kwargs[k]) for k in ("bids_dir", "output_dir", "work_dir"))
    local = args.worker in ("cf", "debug") or (args.worker == "dask" and not args.dask_address)
    if local and any(s.action == "prism" for s in recipe.steps):
        # jobs run on this machine: check the device now rather than in every slab job
        from prismflow.prism import resolve_device

        logger.info("PRISM device: %s", resolve_device(args.device))
    if not args.skip_bids_validation:
        run_validator(bids_dir)
    labels = cfg_kwargs["participant_labels"]
    layout = open_layout(bids_dir, work, labels)
    inputs = collect_inputs(layout, labels, cfg_kwargs["session_ids"], atlas=args.atlas)
    for dwi in inputs:              # headers only: fail in one line before any job starts
        check_series(dwi)
    engine = EngineConfig(worker=args.worker, cache_root=str(work / "pydra"),
                          n_procs=args.nprocs, dask_address=args.dask_address,
                          sbatch_args=args.sbatch_args)
    cfg = RunConfig(**cfg_kwargs, recipe=recipe.to_dict(), engine=engine.to_dict())
    logger.info("prismflow %s: %d series, recipe %s, device %s, seed %d, worker %s",
                __version__, len(inputs), recipe.name, cfg.device, cfg.seed, args.worker)
    recipe_dict = {"name": recipe.name, "description": recipe.description,
                   "steps": [{"action": s.action, **s.params} for s in recipe.steps]}
    # every series is one element of a split: pydra runs them in parallel
    wf = ParticipantWorkflow(
        recipe=recipe_dict, seed=cfg.seed,
        device=cfg.device, n_threads=cfg.threads_per_task, slab_size=cfg.slab_size,
        slab_overlap=cfg.slab_overlap, mem_gb=cfg.mem_gb,
    ).split(("dwi", "bval", "bvec", "dseg", "series"), dwi=[d.dwi for d in inputs],
            bval=[d.bval for d in inputs], bvec=[d.bvec for d in inputs],
            dseg=[d.dseg for d in inputs], series=[_series(d, bids_dir) for d in inputs])
    from prismflow.cli.report_sink import write_reports
    from prismflow.engine import EngineError
    from prismflow.progress import WorkflowProgress

    start = time.perf_counter()
    progress = WorkflowProgress("off" if args.quiet else "auto")
    reports = dict(run_id=cfg.run_id, command=cfg.command, bids_dir=bids_dir)
    try:
        with progress:
            out = run_task(wf, engine, progress=progress)
    except EngineError as err:  # still write sub-<label>.html: it shows the crash reports
        from prismflow.cli.crash import write_crash_reports

        write_crash_reports(err, out_dir, work, cfg.run_id, cfg.command)
        write_reports(out_dir, inputs, None, seconds=time.perf_counter() - start,
                      steps=progress.steps(), error=str(err), **reports)
        raise
    seconds = time.perf_counter() - start
    init_derivatives(out_dir, bids_dir)
    n = 0
    for i, dwi in enumerate(inputs):
        n += len(publish(out.derivatives[i], out_dir, overwrite=cfg.overwrite))
        _save_config(cfg, out_dir, dwi, {"inputs": asdict(dwi), "workflow_seconds": seconds})
    n += len(write_reports(out_dir, inputs, out, seconds=seconds, steps=progress.steps(),
                           **reports))
    _say(args, f"prismflow: {len(inputs)} series, recipe {recipe.name}: wrote {n} derivatives "
               f"(+ JSON sidecars) to {out_dir} ({seconds:.1f} s; cache {work})")
    return 0


def _subject_groups(out_dir: Path) -> dict[str, list[str]]:
    groups = {}
    for sub in sorted(out_dir.glob("sub-*")):
        if not sub.is_dir():
            continue
        sessions = sorted(p for p in sub.glob("ses-*") if p.is_dir()) or [sub]
        for s in sessions:
            files = sorted(str(f) for f in s.rglob("*")
                           if f.is_file() and "log" not in f.relative_to(s).parts)
            if files:
                groups[s.relative_to(out_dir).as_posix()] = files
    return groups


def run_group(args, cfg_kwargs: dict) -> int:
    import shutil

    from prismflow.engine import EngineConfig, run_task
    from prismflow.io import save_json_atomic

    import_workflows()
    from prismflow.workflows.group import GroupWorkflow

    out_dir, work = Path(cfg_kwargs["output_dir"]), Path(cfg_kwargs["work_dir"])
    groups = _subject_groups(out_dir)
    if cfg_kwargs["participant_labels"]:
        groups = {k: v for k, v in groups.items()
                  if k.split("/")[0][4:] in cfg_kwargs["participant_labels"]}
    if not groups:
        raise InputError(f"{out_dir}: no participant derivatives (sub-*/) found; run the "
                         "participant level first")
    engine = EngineConfig(worker=args.worker, cache_root=str(work / "pydra"),
                          n_procs=args.nprocs, dask_address=args.dask_address,
                          sbatch_args=args.sbatch_args)
    from prismflow.engine import EngineError

    try:
        out = run_task(GroupWorkflow(subject_files=list(groups.values())), engine)
    except EngineError as err:
        from prismflow.cli.crash import write_crash_reports

        write_crash_reports(err, out_dir, work, cfg_kwargs["run_id"], cfg_kwargs["command"])
        raise
    dest = out_dir / "group"
    dest.mkdir(exist_ok=True)
    shutil.copyfile(out.table, dest / "prismflow_metrics.tsv")
    save_json_atomic({
        "Description": "one row per subject, session, method and metric, computed from the "
                       "participant-level derivatives alone",
        "subject": {"Description": "participant label"},
        "session": {"Description": "session label or n/a"},
        "method": {"Description": "model label of the derivatives (prism or a baseline)"},
        "metric": {"Description": "metric name; units in the name (_deg, _seconds) or unitless"},
        "value": {"Description": "metric value"},
        "SoftwareVersion": __version__}, dest / "prismflow_metrics.json")
    figs = dest / "figures"
    if figs.exists():
        shutil.rmtree(figs)
    shutil.copytree(out.figures, figs)
    shutil.copyfile(out.report, dest / "report.html")
    _say(args, f"prismflow: group table {dest / 'prismflow_metrics.tsv'} "
               f"({len(groups)} subject(s)/session(s)), figures in {figs}, "
               f"report {dest / 'report.html'}")
    return 0


def main(argv=None) -> int:
    """Entry point of the ``prismflow`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    if args.help_recipes:
        import_workflows()
        from prismflow.workflows.recipes import describe_recipes

        print(describe_recipes())
        return 0
    msg = usage_error(parser, args)
    if msg:
        print(f"prismflow: error: {msg}", file=sys.stderr)
        return 2
    from prismflow.engine import EngineError

    from .outputs import check_bids_app_dirs, make_dirs, remove_if_unused

    created: list[Path] = []  # folders this call made: removed again on an argument error
    try:
        from prismflow.io.bids import check_bids_dir, normalise_labels

        bids_dir = check_bids_dir(args.bids_dir)
        # checked, not created, before anything else can fail: an argument error leaves nothing
        out_dir, work = check_bids_app_dirs(args.output_dir, args.work_dir, bids_dir)
        if args.atlas is not None and not args.atlas.is_file():
            raise InputError(f"{args.atlas}: atlas file not found")
        normalise_labels(args.participant_label)
        normalise_labels(args.session_id, prefix="ses-")
        created = make_dirs(out_dir, work)
        run_id = _dt.datetime.now().strftime("%Y%m%d-%H%M%S") + "_" + uuid.uuid4().hex[:8]
        cfg_kwargs = dict(
            bids_dir=str(bids_dir), output_dir=str(out_dir), analysis_level=args.analysis_level,
            work_dir=str(work), participant_labels=normalise_labels(args.participant_label),
            session_ids=normalise_labels(args.session_id, prefix="ses-"), seed=args.seed,
            device=args.device, slab_size=args.slab_size, slab_overlap=args.slab_overlap,
            mem_gb=args.mem_gb,
            atlas=str(args.atlas.resolve()) if args.atlas else None,
            threads_per_task=args.threads_per_task, overwrite=args.overwrite,
            command=shlex.join(["prismflow", *(sys.argv[1:] if argv is None else argv)]),
            run_id=run_id)
        if args.analysis_level == "participant":
            return run_participant(args, cfg_kwargs)
        return run_group(args, cfg_kwargs)
    except InputError as err:
        remove_if_unused(created)
        print(f"prismflow: error: {err}", file=sys.stderr)
        return 2
    except EngineError as err:
        print(f"prismflow: workflow failed: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("prismflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
