"""Structural connectomes: streamline counts between the labels of a parcellation."""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)


def _end_label(points: np.ndarray, labels: np.ndarray, inv: np.ndarray, search_mm: float) -> int:
    """Label at a streamline end (``points`` ordered from that end inwards): the first
    non-zero label within ``search_mm`` of the end (trackers stop on or just past a mask
    border, so the very end point may sit outside the labelled voxels)."""
    steps = np.linalg.norm(np.diff(points, axis=0), axis=1)
    reach = np.concatenate([[0.0], np.cumsum(steps)])
    near = points[reach <= search_mm]
    vox = np.rint(near @ inv[:3, :3].T + inv[:3, 3]).astype(np.int64)
    ok = np.all((vox >= 0) & (vox < np.array(labels.shape)), axis=1)
    for v in vox[ok]:
        lab = labels[v[0], v[1], v[2]]
        if lab > 0:
            return int(lab)
    return 0


def connectome(streamlines, labels: np.ndarray, affine: np.ndarray, *, search_mm: float = 2.0):
    """Count streamlines whose two ends fall in each pair of labels.

    Parameters
    ----------
    streamlines : list of (P, 3) arrays in world mm.
    labels : (X, Y, Z) int — parcellation, 0 = background.
    affine : (4, 4) voxel-to-world (mm) of ``labels``.
    search_mm : an end is assigned the first label met within this distance (mm) from the
        end along the streamline (as MRtrix3's ``tck2connectome`` searches radially).

    Returns
    -------
    matrix : (L, L) int64 — symmetric counts between the L non-zero labels (diagonal: both ends
        in the same label).
    label_ids : (L,) int — the label of each row/column.
    """
    labels = np.asarray(labels).astype(np.int64)
    label_ids = np.unique(labels[labels > 0])
    matrix = np.zeros((len(label_ids), len(label_ids)), np.int64)
    if len(label_ids) == 0 or len(streamlines) == 0:
        return matrix, label_ids
    lookup = {lab: i for i, lab in enumerate(label_ids)}
    inv = np.linalg.inv(affine)
    for s in streamlines:
        s = np.asarray(s, dtype=np.float64)
        if len(s) < 2:
            continue
        la = _end_label(s, labels, inv, search_mm)
        lb = _end_label(s[::-1], labels, inv, search_mm)
        if la > 0 and lb > 0:
            i, j = lookup[la], lookup[lb]
            matrix[i, j] += 1
            if i != j:
                matrix[j, i] += 1
    return matrix, label_ids


def save_connectome_csv(matrix: np.ndarray, label_ids, path) -> None:
    """Write the matrix as CSV with a header row and first column of label ids."""
    header = "label," + ",".join(str(int(x)) for x in label_ids)
    rows = [f"{int(lab)}," + ",".join(str(int(v)) for v in row)
            for lab, row in zip(label_ids, matrix)]
    with open(path, "w") as fh:
        fh.write(header + "\n" + "\n".join(rows) + "\n")


def load_connectome_csv(path):
    """Inverse of :func:`save_connectome_csv`: ``(matrix, label_ids)``."""
    arr = np.loadtxt(path, delimiter=",", dtype=np.int64, skiprows=1, ndmin=2)
    return arr[:, 1:], arr[:, 0]
