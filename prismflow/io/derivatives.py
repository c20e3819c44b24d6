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
from functools import lru_cache
from importlib import resources
from pathlib import Path

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
    if dst.exists() and filecmp.cmp(src, dst, shallow=False):
        pass  # same content (a rerun served from the cache): nothing to replace
    elif dst.exists() and not overwrite:
        raise InputError(f"{dst}: exists with different content; pass --overwrite to replace "
                         "existing outputs")
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.part")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    if sidecar is not None:
        if entities.get("extension") != ".json":
            side = derivative_path({**entities, "extension": ".json"})
            save_json_atomic(sidecar, output_dir / side)
    return dst


#: Description and units of the maps we write (by ``param`` label); others get a generic text.
MAP_INFO = {
    "peaks": ("MRtrix3-style peaks: fibre directions in scanner (world) coordinates as vectors "
              "whose length is the fibre's amplitude (volume fraction for PRISM, FOD amplitude "
              "for CSD-type methods); 3 frames per fibre", "unit vector x amplitude"),
    "csf": ("free-water (CSF) volume fraction", "fraction (0-1)"),
    "gm": ("grey-matter-like isotropic volume fraction", "fraction (0-1)"),
    "res": ("restricted isotropic volume fraction", "fraction (0-1)"),
    "wm": ("total white-matter (fibre) volume fraction", "fraction (0-1)"),
    "s0": ("non-diffusion-weighted signal", "a.u."),
    "sigma": ("noise standard deviation", "a.u."),
    "bias": ("multiplicative bias field", "ratio"),
    "fin": ("intra-axonal fraction of each fibre", "fraction (0-1)"),
}


def map_sidecar(param: str, method: str, *, seed: int, sources: list[str], extra=None) -> dict:
    """A JSON sidecar for one map: description, units, method, version, seed, sources."""
    key = bids_label(param).lower()
    desc, units = next(((d, u) for k, (d, u) in MAP_INFO.items() if key.startswith(k)),
                       (f"{param} map", "see Description"))
    side = {"Description": desc, "Units": units}
    side.update(extra or {})
    side.update({"Model": method, "Parameter": param, "Seed": seed, "SoftwareName": "prismflow",
                 "SoftwareVersion": __version__, "Sources": sources})
    return side
