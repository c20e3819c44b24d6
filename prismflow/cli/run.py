"""``prismflow bids_dir output_dir participant|group``: the BIDS-app entry point.

Parse → check the input and output folders → build the run's configuration → hand the
workflow to :mod:`prismflow.engine` → copy the results to their BIDS derivative names.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
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


def _base_entities(dwi) -> dict:
    e = {k: v for k, v in dwi.entities.items()
         if k in ("subject", "session", "acquisition", "run", "direction")}
    e["space"] = "dwi"
    e["datatype"] = "dwi"
    return e


def _bids_uri(path: str, bids_dir: Path) -> str:
    try:
        return "bids:raw:" + str(Path(path).relative_to(bids_dir))
    except ValueError:
        return str(path)


def _sink_participant(out, i: int, dwi, cfg: RunConfig, recipe, out_dir: Path) -> list[Path]:
    """Copy the i-th series' workflow outputs to their BIDS names; write sidecars."""
    from prismflow.io.derivatives import map_sidecar, write_derivative

    bids_dir = Path(cfg.bids_dir)
    base = _base_entities(dwi)
    sources = [_bids_uri(dwi.dwi, bids_dir)]
    written = []
    ow = cfg.overwrite

    def pick(name):  # the workflow is always split over series: outputs are per-series lists
        return getattr(out, name)[i]

    mask = pick("mask")
    written.append(write_derivative(mask, out_dir, {**base, "desc": "brain", "suffix": "mask",
                                                    "extension": ".nii.gz"},
                                    {"Type": "Brain", "Sources": sources,
                                     "SpatialReference": sources[0]}, overwrite=ow))
    methods_with_peaks = []
    maps_dir = pick("prism_maps")
    if maps_dir is not None:
        info = json.loads(Path(pick("prism_info")).read_text())
        for f in sorted(Path(maps_dir).iterdir()):
            if not f.name.endswith((".nii", ".nii.gz")):
                continue
            name = f.name.split(".nii")[0]
            own = f.with_name(name + ".json")
            extra = json.loads(own.read_text()) if own.is_file() else {}
            extra.pop("Config", None)
            if name == "peaks":
                extra.update({"FitSeconds": info.get("seconds"), "PrismConfig": info["config"],
                              "NumberOfSlabs": info.get("n_slabs")})
            ext = ".nii.gz" if f.name.endswith(".gz") else ".nii"
            written.append(write_derivative(
                f, out_dir, {**base, "model": "prism", "param": name, "suffix": "dwimap",
                             "extension": ext},
                map_sidecar(name, "prism", seed=cfg.seed, sources=sources, extra=extra),
                overwrite=ow))
        methods_with_peaks.append("prism")
    for peaks, info_file in zip(pick("baseline_scanner_peaks") or [], pick("baseline_info") or []):
        info = json.loads(Path(info_file).read_text())
        method = info["method"]
        written.append(write_derivative(
            peaks, out_dir, {**base, "model": method, "param": "peaks", "suffix": "dwimap",
                             "extension": ".nii.gz"},
            map_sidecar("peaks", method, seed=cfg.seed, sources=sources,
                        extra={"FitSeconds": info.get("seconds"), "MethodInfo": info.get("info"),
                               "MethodOptions": info.get("options")}), overwrite=ow))
        methods_with_peaks.append(method)
    track_steps = [s for s in recipe.steps if s.action == "tracking"]
    tracked = [m for m in (track_steps[0].params["sources"] if track_steps else [])
               if m in methods_with_peaks]
    tracker = track_steps[0].params.get("tracker", "dipy") if track_steps else "dipy"
    for method, trk in zip(tracked, pick("tractograms") or []):
        from prismflow.tasks.tracking import streamline_count

        n = streamline_count(trk)
        ext = ".tck" if tracker == "mrtrix" else ".trk"
        how = "MRtrix3 tckgen FACT" if tracker == "mrtrix" else "dipy EuDX"
        written.append(write_derivative(
            trk, out_dir, {**base, "model": method, "desc": "det", "suffix": "streamlines",
                           "extension": ext},
            {"Description": f"deterministic ({how}) streamlines on the {method} peaks",
             "StreamlineCount": n, "Units": "mm (RAS world coordinates)",
             "Tracking": track_steps[0].params, "Seed": cfg.seed, "Sources": sources,
             "SoftwareName": "prismflow", "SoftwareVersion": __version__}, overwrite=ow))
    for method, csv in zip(tracked, pick("connectomes") or []):
        seg = "atlas"
        if dwi.dseg:
            from prismflow.reports.group import entities

            seg = entities(Path(dwi.dseg).name).get("desc", "atlas")
        written.append(write_derivative(
            csv, out_dir, {**base, "model": method, "segmentation": seg, "suffix": "connectome",
                           "extension": ".csv"},
            {"Description": "streamline counts between parcels (first row/column: labels)",
             "Units": "streamlines", "Parcellation": str(dwi.dseg), "Sources": sources},
            overwrite=ow))
    return written


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
    from prismflow.io.derivatives import init_derivatives

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
    ).split(("dwi", "bval", "bvec", "dseg"), dwi=[d.dwi for d in inputs],
            bval=[d.bval for d in inputs], bvec=[d.bvec for d in inputs],
            dseg=[d.dseg for d in inputs])
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
        write_reports(out_dir, inputs, None, seconds=time.perf_counter() - start,
                      steps=progress.steps(), error=str(err), **reports)
        raise
    seconds = time.perf_counter() - start
    init_derivatives(out_dir, bids_dir)
    n = 0
    for i, dwi in enumerate(inputs):
        n += len(_sink_participant(out, i, dwi, cfg, recipe, out_dir))
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
    out = run_task(GroupWorkflow(subject_files=list(groups.values())), engine)
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

    try:
        from prismflow.io.bids import check_bids_dir, normalise_labels
        from prismflow.io.derivatives import check_output_dir

        bids_dir = check_bids_dir(args.bids_dir)
        out_dir = check_output_dir(args.output_dir, bids_dir)
        work = (args.work_dir or out_dir.parent / "prismflow_work").expanduser().resolve()
        try:
            work.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(f"{work}: cannot create the work directory ({err.strerror})") from err
        if args.atlas is not None and not args.atlas.is_file():
            raise InputError(f"{args.atlas}: atlas file not found")
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
