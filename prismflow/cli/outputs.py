"""Checks of output locations made before any work starts, and modes that follow the umask.

A check here never leaves anything behind: writability is probed with a temporary file that
is removed at once, and no directory is created.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..io.errors import InputError


def umask_dir_mode() -> int:
    """The mode ``mkdir`` gives a new directory under the current umask (e.g. 0o755)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o777 & ~mask


def first_existing(path: Path) -> Path:
    """``path`` or its nearest existing ancestor."""
    for p in (path, *path.parents):
        if p.exists():
            return p
    return Path(path.anchor or ".")


def writable_error(directory: Path) -> str | None:
    """None when a file can be created in ``directory``; else the reason (a real probe: it
    also catches read-only mounts and ACLs that ``os.access`` misses; the probe is removed)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".prismflow-probe-", dir=directory)
    except OSError as err:
        return err.strerror or str(err)
    os.close(fd)
    os.unlink(probe)
    return None


def check_output_target(path: str | Path, *, option: str, replace: bool = False,
                        allow_nonempty: bool = False) -> Path:
    """Raise :class:`InputError` (one line) unless ``path`` can become an output directory.

    path : the directory to be created (or reused / replaced).
    option : how the user named it, for the message (``--out``, ``output_dir``).
    replace : the directory will be replaced by a sibling renamed into place, so its parent
        must be writable (``prismflow-fit``); otherwise the directory itself must be.
    allow_nonempty : an existing non-empty directory is fine (the BIDS app adds to it).
    Returns ``path`` (not resolved, not created).
    """
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise InputError(f"{path}: exists and is not a directory; choose another {option}")
    if p.is_dir() and not allow_nonempty and not replace and any(p.iterdir()):
        raise InputError(f"{path}: output directory exists and is not empty; choose another "
                         f"{option}")
    where = p if (p.is_dir() and not replace) else first_existing(p.parent)
    if not where.is_dir():
        raise InputError(f"{path}: cannot create it: {where} is a file, not a directory; "
                         f"choose another {option}")
    reason = writable_error(where)
    if reason:
        raise InputError(f"{path}: cannot write there ({where}: {reason}); choose another "
                         f"{option}")
    return p


def check_bids_app_dirs(output_dir: str | Path, work_dir: str | Path | None,
                        bids_dir: Path) -> tuple[Path, Path]:
    """The BIDS app's output and work directories, resolved and checked, not created.

    The output may be anywhere but the dataset root itself and its ``sub-*`` folders (so
    ``bids_dir/derivatives/prismflow``, the usual BIDS place, is fine). The work directory
    defaults to ``prismflow_work`` next to the output directory. Both must be creatable.
    """
    out = Path(output_dir).expanduser().resolve()
    if out == bids_dir:
        raise InputError(f"{output_dir}: this is the input dataset's root; write the outputs "
                         f"elsewhere, e.g. {bids_dir / 'derivatives' / 'prismflow'}")
    rel = out.relative_to(bids_dir).parts if bids_dir in out.parents else ()
    if rel and rel[0].startswith("sub-"):
        raise InputError(f"{output_dir}: the output directory must not be inside the subject "
                         f"folder {bids_dir / rel[0]}; use e.g. "
                         f"{bids_dir / 'derivatives' / 'prismflow'}")
    check_output_target(out, option="output_dir", allow_nonempty=True)
    work = (Path(work_dir).expanduser() if work_dir else out.parent / "prismflow_work").resolve()
    if work in (bids_dir, out):
        raise InputError(f"{work}: the work directory must be neither the dataset root nor "
                         "the output directory; pass another -w")
    rel = work.relative_to(bids_dir).parts if bids_dir in work.parents else ()
    if rel and rel[0].startswith("sub-"):
        raise InputError(f"{work}: the work directory must not be inside a subject folder of "
                         "the input dataset; pass another -w")
    check_output_target(work, option="-w", allow_nonempty=True)
    return out, work


def make_dirs(*dirs: Path) -> list[Path]:
    """Create ``dirs`` (with parents); return the top-most folders this call created, so that
    an error before any work can remove exactly those (:func:`remove_if_unused`)."""
    created = []
    for d in dirs:
        top = None
        for p in (d, *d.parents):
            if p.exists():
                break
            top = p
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(f"{d}: cannot create the directory ({err.strerror})") from err
        if top is not None:
            created.append(top)
    return created


def remove_if_unused(created: list[Path]) -> None:
    """Remove folders made by :func:`make_dirs` that hold nothing but a pybids index (an
    argument error leaves nothing behind; anything a run wrote is kept)."""
    import shutil

    for top in created:
        if not top.is_dir():
            continue
        files = [p for p in top.rglob("*") if p.is_file()]
        if all(any(part.startswith("bids_db_") for part in f.relative_to(top).parts)
               for f in files):
            shutil.rmtree(top, ignore_errors=True)
