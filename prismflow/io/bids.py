"""BIDS input: check the dataset, index it once with pybids, collect each DWI run's files.

Only this module (and :mod:`prismflow.io.derivatives`) imports pybids. The layout is built once
per run with validation off during indexing, its database kept in the work directory, and the
subjects that were not asked for skipped while indexing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DwiInput:
    """One DWI series and everything resolved for it (paths are absolute strings).

    ``bval``/``bvec``/``metadata`` come from pybids, so top-level inheritance is resolved;
    ``dseg`` is a parcellation in the DWI space when the dataset (or its ``derivatives/``) has
    one, else ``None``.
    """

    subject: str
    dwi: str
    bval: str
    bvec: str
    session: str | None = None
    entities: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    dseg: str | None = None

    @property
    def name(self) -> str:
        """A short unique name, e.g. ``sub-01_ses-1_run-2``."""
        return Path(self.dwi).name.split("_dwi.")[0]


def normalise_labels(labels, prefix: str = "sub-") -> list[str]:
    """Strip an optional ``sub-``/``ses-`` prefix from each label; reject malformed labels."""
    out = []
    for lab in labels or []:
        lab = lab[len(prefix):] if lab.startswith(prefix) else lab
        if not re.fullmatch(r"[A-Za-z0-9]+", lab):
            raise InputError(f"invalid label {lab!r}: BIDS labels are alphanumeric "
                             f"(e.g. '01' or '{prefix}01')")
        out.append(lab)
    return out


def check_bids_dir(bids_dir: str | Path) -> Path:
    """Return the resolved dataset root, or raise :class:`InputError` if it is not one."""
    root = Path(bids_dir).expanduser()
    if not root.exists():
        raise InputError(f"{bids_dir}: BIDS directory not found")
    if not root.is_dir():
        raise InputError(f"{bids_dir}: not a directory; pass the root of a BIDS dataset")
    if not (root / "dataset_description.json").is_file():
        raise InputError(f"{bids_dir}: not a BIDS dataset (no dataset_description.json at "
                         "its top level)")
    try:
        json.loads((root / "dataset_description.json").read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{root / 'dataset_description.json'}: invalid JSON ({err})") from err
    return root.resolve()


def run_validator(bids_dir: Path, *, executable: str = "bids-validator-deno",
                  timeout_s: float = 600) -> None:
    """Validate ``bids_dir`` with ``bids-validator-deno``; raise :class:`InputError` on errors.

    Warnings are allowed. When the validator is not installed, log a warning and go on.
    """
    exe = shutil.which(executable)
    if exe is None:
        logger.warning("%s not found; skipping BIDS validation (pip install "
                       "bids-validator-deno)", executable)
        return
    proc = subprocess.run([exe, "--json", str(bids_dir)], capture_output=True, text=True,
                          timeout=timeout_s)
    if proc.returncode == 0:
        logger.info("%s: valid BIDS (bids-validator-deno)", bids_dir)
        return
    codes = []
    try:
        issues = json.loads(proc.stdout)["issues"]["issues"]
        codes = sorted({i["code"] for i in issues if i.get("severity") == "error"})
    except (json.JSONDecodeError, KeyError, TypeError):
        pass
    raise InputError(f"{bids_dir}: bids-validator-deno reports errors "
                     f"({', '.join(codes) or 'see its output'}); fix them or pass "
                     "--skip-bids-validation")


def _ignore_others(labels: list[str]) -> list:
    if not labels:
        return []
    alt = "|".join(re.escape(lab) for lab in labels)
    return [re.compile(rf"sub-(?!({alt})(\b|_))")]


def open_layout(bids_dir: Path, database_dir: Path, participant_labels=None):
    """Index ``bids_dir`` once with pybids (no validation), keeping the database.

    The database lives in ``database_dir/<hash of root and labels>`` so that a rerun with the
    same selection reopens it instantly. Subjects not in ``participant_labels`` are not indexed.
    """
    from bids import BIDSLayout, BIDSLayoutIndexer

    labels = sorted(participant_labels or [])
    key = hashlib.sha1(f"{bids_dir}|{','.join(labels)}".encode()).hexdigest()[:12]
    db = Path(database_dir) / f"bids_db_{key}"
    ignore = [re.compile(r"(^/code|/\.)"), *_ignore_others(labels)]
    indexer = BIDSLayoutIndexer(validate=False, ignore=ignore)
    try:
        layout = BIDSLayout(str(bids_dir), validate=False, indexer=indexer,
                            database_path=str(db), derivatives=False)
    except Exception as err:  # pybids raises several types for malformed datasets
        raise InputError(f"{bids_dir}: pybids could not index the dataset ({err})") from err
    return layout


def check_series(dwi: DwiInput) -> None:
    """Cheap up-front check of one series (headers only): a 4-D image whose volume count
    matches its bval/bvec files. Raises :class:`InputError` naming the files."""
    import nibabel as nib

    from .gradients import read_bval_bvec

    try:
        img = nib.load(dwi.dwi)
    except Exception as err:  # nibabel raises several types for corrupt files
        raise InputError(f"{dwi.dwi}: not a readable NIfTI image ({err})") from err
    if len(img.shape) != 4:
        raise InputError(f"{dwi.dwi}: expected a 4-D DWI series, got shape {img.shape}")
    read_bval_bvec(dwi.bval, dwi.bvec, n_volumes=img.shape[3], image_name=Path(dwi.dwi).name)


def _find_dseg(bids_dir: Path, subject: str, session: str | None) -> str | None:
    """A parcellation for the subject: first in the raw tree, then under ``derivatives/``."""
    pats = [f"sub-{subject}/**/sub-{subject}_*dseg.nii*",
            f"derivatives/*/sub-{subject}/**/sub-{subject}_*dseg.nii*"]
    for pat in pats:
        hits = sorted(p for p in bids_dir.glob(pat)
                      if session is None or f"ses-{session}" in p.name or "ses-" not in p.name)
        if hits:
            return str(hits[0])
    return None


def collect_inputs(layout, participant_labels=None, session_ids=None,
                   atlas: str | Path | None = None) -> list[DwiInput]:
    """Every DWI series of the selected subjects/sessions, with bval/bvec/sidecar resolved.

    Raises :class:`InputError` naming the labels that do not exist, or when nothing is found.
    """
    root = Path(layout.root)
    # list subjects from the folder names: the layout may have skipped unselected ones
    available = sorted(p.name[4:] for p in root.glob("sub-*") if p.is_dir())
    labels = list(participant_labels or []) or available
    missing = [lab for lab in labels if lab not in available]
    if missing:
        shown = ", ".join(available[:10]) + (" …" if len(available) > 10 else "")
        raise InputError(f"participant label(s) {', '.join(missing)} not found in {root} "
                         f"(available: {shown or 'none'})")
    query = dict(subject=labels, datatype="dwi", suffix="dwi", extension=[".nii", ".nii.gz"])
    if session_ids:
        query["session"] = list(session_ids)
    files = layout.get(**query)
    if not files:
        raise InputError(f"{root}: no DWI series (sub-*/[ses-*/]dwi/*_dwi.nii[.gz]) for "
                         f"participant(s) {', '.join(labels)}"
                         + (f" and session(s) {', '.join(session_ids)}" if session_ids else ""))
    without = sorted(set(labels) - {f.get_entities()["subject"] for f in files})
    if without and participant_labels:
        raise InputError(f"participant(s) {', '.join(without)} have no DWI series "
                         "(sub-*/[ses-*/]dwi/*_dwi.nii[.gz])"
                         + (f" in session(s) {', '.join(session_ids)}" if session_ids else ""))
    if without:
        logger.warning("skipping %d participant(s) without a DWI series: %s", len(without),
                       ", ".join(without))
    out = []
    for f in files:
        ents = {k: v for k, v in f.get_entities().items()
                if k in ("subject", "session", "acquisition", "run", "direction")}
        try:
            bval, bvec = layout.get_bval(f.path), layout.get_bvec(f.path)
        except Exception as err:  # pybids raises a bare exception when none is found
            raise InputError(f"{f.path}: no .bval/.bvec file found for this DWI series "
                             "(looked next to it and up the BIDS inheritance chain)") from err
        if not bval or not bvec:
            raise InputError(f"{f.path}: no .bval/.bvec file found for this DWI series")
        dseg = str(Path(atlas).resolve()) if atlas else _find_dseg(root, ents["subject"],
                                                                  ents.get("session"))
        out.append(DwiInput(subject=ents["subject"], session=ents.get("session"),
                            dwi=f.path, bval=bval, bvec=bvec, entities=ents,
                            metadata=dict(layout.get_metadata(f.path)), dseg=dseg))
    logger.info("found %d DWI series for %d participant(s)", len(out),
                len({d.subject for d in out}))
    return out
