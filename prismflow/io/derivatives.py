"""BIDS derivatives: names from our pattern file, dataset_description, .bidsignore, sidecars.

Names follow QSIRecon's ``model-<label>_param-<label>_dwimap`` convention and are built with
``bids.layout.writing.build_path`` from ``prismflow/data/derivative_patterns.json`` (pybids'
own config drops ``desc`` for dwi and knows no ``model``/``param`` entities).
"""

from __future__ import annotations

import filecmp
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from .. import __version__
from .errors import InputError
from .nifti import save_json_atomic

logger = logging.getLogger(__name__)

#: Environment variable that, when set, is recorded as the container tag in GeneratedBy.
CONTAINER_ENV = "PRISMFLOW_CONTAINER_TAG"


@lru_cache(maxsize=1)
def patterns() -> list[str]:
    """The derivative path patterns (``prismflow/data/derivative_patterns.json``)."""
    text = resources.files("prismflow").joinpath("data/derivative_patterns.json").read_text()
    return json.loads(text)["patterns"]


def bids_label(text: str) -> str:
    """Make ``text`` a valid BIDS label (alphanumeric): ``'dipy-csd'`` → ``'dipycsd'``."""
    return re.sub(r"[^A-Za-z0-9]", "", str(text))


def derivative_path(entities: dict) -> str:
    """Relative path of a derivative file for ``entities`` (subject, suffix, extension, …).

    Raises ValueError when no pattern accepts the entities (a programming error).
    """
    from bids.layout.writing import build_path

    ents = {k: (bids_label(v) if k not in ("extension", "datatype") else v)
            for k, v in entities.items() if v not in (None, "")}
    path = build_path(ents, patterns(), strict=True)
    if path is None:
        raise ValueError(f"no derivative pattern matches {ents}")
    return path


def check_output_dir(output_dir: str | Path, bids_dir: Path) -> Path:
    """Resolve and create ``output_dir``; refuse one inside the input or not writable."""
    out = Path(output_dir).expanduser().resolve()
    if out == bids_dir or bids_dir in out.parents:
        raise InputError(f"{output_dir}: the output directory must not be inside the input "
                         f"dataset {bids_dir}; choose a folder outside it")
    if out.exists() and not out.is_dir():
        raise InputError(f"{output_dir}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"{output_dir}: cannot create the output directory "
                         f"({err.strerror})") from err
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError(f"{output_dir}: output directory is not writable")
    return out


def init_derivatives(output_dir: Path, bids_dir: Path, *, dataset_name: str | None = None) -> None:
    """Write ``dataset_description.json`` (with GeneratedBy) and ``.bidsignore``."""
    generated = {"Name": "prismflow", "Version": __version__,
                 "CodeURL": "https://github.com/prismflow/prismflow"}
    tag = os.environ.get(CONTAINER_ENV)
    if tag:
        generated["Container"] = {"Type": "docker", "Tag": tag}
    src = {}
    try:
        src = json.loads((bids_dir / "dataset_description.json").read_text())
    except (OSError, json.JSONDecodeError):
        pass
    desc = {"Name": dataset_name or f"prismflow derivatives of {src.get('Name', bids_dir.name)}",
            "BIDSVersion": "1.9.0", "DatasetType": "derivative",
            "GeneratedBy": [generated],
            "SourceDatasets": [{"URL": bids_dir.as_uri()}]}
    save_json_atomic(desc, output_dir / "dataset_description.json")
    ignore = resources.files("prismflow").joinpath("data/bidsignore").read_text()
    (output_dir / ".bidsignore").write_text(ignore)


def write_derivative(src: str | Path, output_dir: Path, entities: dict, sidecar: dict | None,
                     *, overwrite: bool = False) -> Path:
    """Copy ``src`` to its BIDS name under ``output_dir`` and write its JSON sidecar.

    Returns the destination path. With ``overwrite=False`` an existing file raises InputError.
    """
    rel = derivative_path(entities)
    dst = output_dir / rel
    _place(Path(src), dst, overwrite=overwrite)
    if sidecar is not None:
        if entities.get("extension") != ".json":
            side = derivative_path({**entities, "extension": ".json"})
            save_json_atomic(sidecar, output_dir / side)
    return dst


# ----------------------------------------------------------------------------- the table

@dataclass(frozen=True)
class Output:
    """One kind of derivative: its BIDS entities (besides the series' own), what it is, its unit.

    ``units`` of ``None`` means "per method" (peaks: see :data:`PEAK_AMPLITUDE`).
    """

    entities: dict
    description: str
    units: str | None


_DATA_UNITS = "data units (those of the input DWI)"

#: Every output of a participant run: key -> BIDS entities, description, units. PRISM maps are
#: keyed by the name :meth:`prismflow.prism.PrismFit.maps` gives them; ``prismflow-fit`` writes
#: the same descriptions and units into its own sidecars.
OUTPUTS: dict[str, Output] = {
    "mask": Output({"desc": "brain", "suffix": "mask"},
                   "brain mask of the series (1 = brain), from its mean b=0 image", "binary (0 or 1)"),
    "tissue_fractions": Output(
        {"param": "tissuefractions", "suffix": "dwimap"},
        "PRISM volume fractions of 4 compartments, one frame each: free water (CSF), grey-matter-"
        "like isotropic, restricted isotropic, white matter (all fibres)", "volume fraction (0-1)"),
    "fibre_directions": Output(
        {"param": "fibredirections", "suffix": "dwimap"},
        "PRISM unit fibre directions in the bvec (FSL voxel) frame, 3 frames (x, y, z) per "
        "fibre, fibres sorted by volume fraction; 0 where a fibre is absent",
        "unitless (unit vectors)"),
    "fibre_fractions": Output(
        {"param": "fibrefractions", "suffix": "dwimap"},
        "PRISM volume fraction of each fibre, one frame per fibre, sorted descending",
        "volume fraction (0-1)"),
    "peaks": Output(
        {"param": "peaks", "suffix": "dwimap"},
        "MRtrix3-style peaks: fibre directions in scanner (world) coordinates, each scaled by "
        "its amplitude, 3 frames (x, y, z) per fibre; 0 where a fibre is absent", None),
    "n_fibres": Output({"param": "nfibres", "suffix": "dwimap"},
                       "PRISM number of fibres reported present (volume fraction at least the "
                       "absolute and the relative threshold of the fit)", "count"),
    "f_in": Output({"param": "fin", "suffix": "dwimap"},
                   "PRISM intra-axonal (stick) fraction of each fibre, one frame per fibre",
                   "fraction (0-1)"),
    "s0": Output({"param": "s0", "suffix": "dwimap"},
                 "PRISM fitted non-diffusion-weighted (b=0) signal", _DATA_UNITS),
    "bias_field": Output({"param": "biasfield", "suffix": "dwimap"},
                         "PRISM multiplicative receive-bias field (1 = no bias)",
                         "unitless (ratio)"),
    "residual_rms": Output({"param": "residualrms", "suffix": "dwimap"},
                           "PRISM root-mean-square over measurements of predicted minus measured "
                           "signal", _DATA_UNITS),
    "predicted": Output({"param": "predicted", "suffix": "dwimap"},
                        "PRISM predicted signal, one frame per measurement in the input's order "
                        "(calibration included)", _DATA_UNITS),
    "streamlines": Output({"desc": "det", "suffix": "streamlines"},
                          "deterministic streamlines on the peaks of this model",
                          "mm (RAS world coordinates)"),
    "connectome": Output({"suffix": "connectome"},
                         "streamline counts between the parcels of the parcellation (first row "
                         "and column: parcel labels)", "streamline count"),
}

#: What a peak's length means, per method (the unit of its peaks image).
PEAK_AMPLITUDE = {
    "prism": "volume fraction (0-1)",
    "dipy-csd": "FOD amplitude (a.u.)",
    "dipy-msmt": "WM FOD amplitude (a.u.)",
    "mrtrix-csd": "FOD amplitude (a.u.)",
    "mrtrix-msmt": "WM FOD amplitude (a.u.)",
    "force": "fibre volume fraction (0-1)",
    "odffp": "fibre volume fraction of the white-matter part (0-1)",
}


def output_units(key: str, method: str | None = None) -> str:
    """The unit of output ``key`` (for ``peaks``: of ``method``'s amplitudes)."""
    spec = OUTPUTS[key]
    if spec.units is not None:
        return spec.units
    if method not in PEAK_AMPLITUDE:
        raise KeyError(f"no peak amplitude unit for method {method!r}; add it to PEAK_AMPLITUDE")
    return PEAK_AMPLITUDE[method]


def output_sidecar(key: str, method: str | None = None, **extra) -> dict:
    """``Description`` and ``Units`` of output ``key`` from :data:`OUTPUTS`, then ``extra``."""
    side = {"Description": OUTPUTS[key].description, "Units": output_units(key, method)}
    if method is not None:
        side["Model"] = method
    side.update(extra)
    return side


def map_sidecar(param: str, method: str, *, seed: int | None, sources: list[str],
                extra=None) -> dict:
    """A JSON sidecar for map ``param`` (a key of :data:`OUTPUTS`): description, units, method,
    version, seed (only when the method used one: ``None`` leaves it out), sources."""
    side = output_sidecar(param, method, **(extra or {}))
    side.update({"Parameter": OUTPUTS[param].entities.get("param", param),
                 "SoftwareName": "prismflow", "SoftwareVersion": __version__, "Sources": sources})
    if seed is not None:
        side["Seed"] = seed
    return side


# ----------------------------------------------------------------------------- staging

def _copy_nifti(src, dst: Path, units: tuple[str, str] | None) -> None:
    """Copy a NIfTI image, setting its space/time units to ``units`` (those of the input)."""
    import nibabel as nib

    img = nib.load(str(src))
    if units is None or img.header.get_xyzt_units() == units:
        shutil.copyfile(src, dst)
        return
    hdr = img.header.copy()
    hdr.set_xyzt_units(*units)
    from .nifti import save_nifti_atomic

    save_nifti_atomic(np.asarray(img.dataobj), img.affine, dst, header=hdr)


def stage_participant(dest: Path, *, series: dict, seed: int, recipe: dict, dwi=None,
                      mask=None, prism_maps=None, prism_info=None, baseline_peaks=None,
                      baseline_info=None, tractograms=None, connectomes=None) -> list[Path]:
    """Lay out one series' outputs under ``dest`` with their BIDS names and JSON sidecars.

    series : ``entities`` (subject, session, acquisition, run, direction), ``sources`` (BIDS
        URIs of the input), ``parcellation`` (BIDS URI or file name of the dseg) and
        ``segmentation`` (its ``desc`` label) of the series.
    dwi : the input series (its NIfTI space and time units are kept in every image).
    The other arguments are the participant workflow's outputs (None when not run).
    Returns the staged data files (sidecars not counted). Names, descriptions and units
    come from :data:`OUTPUTS`.
    """
    import nibabel as nib

    dest = Path(dest)
    base = {k: v for k, v in series["entities"].items()
            if k in ("subject", "session", "acquisition", "run", "direction")}
    base.update(space="dwi", datatype="dwi")
    sources = list(series.get("sources", []))
    units = nib.load(str(dwi)).header.get_xyzt_units() if dwi is not None else None
    common = {"Seed": seed, "Sources": sources, "SoftwareName": "prismflow",
              "SoftwareVersion": __version__}
    staged = []

    def put(src, key: str, entities: dict, sidecar: dict) -> None:
        rel = derivative_path({**base, **OUTPUTS[key].entities, **entities})
        dst = dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith((".nii", ".nii.gz")):
            _copy_nifti(src, dst, units)
        else:
            shutil.copyfile(src, dst)
        save_json_atomic(sidecar, dest / derivative_path(
            {**base, **OUTPUTS[key].entities, **entities, "extension": ".json"}))
        staged.append(dst)

    def ext(path) -> str:
        name = Path(path).name
        return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix

    if mask is not None:
        put(mask, "mask", {"extension": ext(mask)},
            output_sidecar("mask", Type="Brain", SpatialReference=sources[0] if sources else None,
                           **{k: v for k, v in common.items() if k != "Seed"}))
    methods = []
    if prism_maps is not None:
        info = json.loads(Path(prism_info).read_text()) if prism_info else {}
        for f in sorted(Path(prism_maps).iterdir()):
            key = f.name.split(".nii")[0]
            if not f.name.endswith((".nii", ".nii.gz")) or key not in OUTPUTS:
                continue
            extra = {"FitSeconds": info.get("seconds"), "Device": info.get("device"),
                     "NumberOfSlabs": info.get("n_slabs")}
            if key == "peaks":
                extra.update(PrismConfig=info.get("config"), Plan=info.get("plan"))
            put(f, key, {"model": "prism", "extension": ext(f)},
                map_sidecar(key, "prism", seed=info.get("seed", seed), sources=sources, extra=extra))
        fixels = Path(prism_maps) / "fixels"      # MRtrix3 fixel directory (io/fixels.py)
        if fixels.is_dir():
            dst = dest / derivative_path({**base, "model": "prism", "suffix": "fixels"})
            shutil.copytree(fixels, dst, dirs_exist_ok=True)
            staged.extend(sorted(p for p in dst.iterdir() if p.suffix == ".nii"))
        methods.append("prism")
    for peaks, info_file in zip(baseline_peaks or [], baseline_info or []):
        info = json.loads(Path(info_file).read_text())
        method = info["method"]
        put(peaks, "peaks", {"model": method, "extension": ext(peaks)},
            map_sidecar("peaks", method, seed=info.get("seed"), sources=sources, extra={
                "FitSeconds": info.get("seconds"), "MethodInfo": info.get("info"),
                "MethodOptions": info.get("options")}))
        methods.append(method)
    track = next((s for s in recipe.get("steps", []) if s.get("action") == "tracking"), None)
    for trk in tractograms or []:
        method = Path(trk).name[len("tracts_"):].rsplit(".", 1)[0]
        # the tracking task's own record (tracker, settings and the seed it used), when present
        own = Path(trk).with_suffix(".json")
        ran = json.loads(own.read_text()) if own.is_file() else {}
        count = ran.get("StreamlineCount")
        if count is None:
            hdr = nib.streamlines.load(str(trk), lazy_load=True).header
            count = int(hdr.get("nb_streamlines", hdr.get("count", 0)))
        settings = ran.get("TrackingSettings") or {k: v for k, v in (track or {}).items()
                                                    if k != "action"}
        put(trk, "streamlines", {"model": method, "extension": ext(trk)},
            output_sidecar("streamlines", method, Tracker=ran.get("Tracker"),
                           StreamlineCount=int(count), Tracking=settings,
                           **{**common, "Seed": ran.get("Seed", seed)}))
    for csv in connectomes or []:
        method = Path(csv).name[len("connectome_"):].rsplit(".", 1)[0]
        put(csv, "connectome", {"model": method, "segmentation": series.get("segmentation")
                                or "atlas", "extension": ".csv"},
            output_sidecar("connectome", method, Parcellation=series.get("parcellation"),
                           **{k: v for k, v in common.items() if k != "Seed"}))
    return staged


def publish(staged: Path, output_dir: Path, *, overwrite: bool = False) -> list[Path]:
    """Copy a staged derivative tree into ``output_dir`` (file by file, atomically).

    A file that exists with other content raises :class:`InputError` unless ``overwrite``;
    one with the same content (a rerun served from the cache) is left alone. Returns the data
    files (not sidecars) now in place.
    """
    staged, written = Path(staged), []
    for src in sorted(p for p in staged.rglob("*") if p.is_file()):
        dst = output_dir / src.relative_to(staged)
        if src.suffix == ".json":
            _copy_atomic(src, dst)  # sidecars record the run: always the latest
            continue
        _place(src, dst, overwrite=overwrite)
        written.append(dst)
    return written


def _copy_atomic(src: Path, dst: Path) -> None:
    """Copy through a hidden temporary beside ``dst``, so readers never see half a file."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.part")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _place(src: Path, dst: Path, *, overwrite: bool) -> None:
    """Put ``src`` at ``dst``: a same-content file (a rerun served from the cache) is left
    alone; one with other content raises :class:`InputError` unless ``overwrite``."""
    if dst.exists() and filecmp.cmp(src, dst, shallow=False):
        return
    if dst.exists() and not overwrite:
        raise InputError(f"{dst}: exists with different content; pass --overwrite to replace "
                         "existing outputs")
    _copy_atomic(src, dst)
