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


def end_labels(streamlines, labels: np.ndarray, affine: np.ndarray, *,
               search_mm: float = 2.0) -> np.ndarray:
    """(S, 2) int labels at the two ends of every streamline (0 = no label reached); see
    :func:`connectome` for ``search_mm``."""
    labels = np.asarray(labels).astype(np.int64)
    inv = np.linalg.inv(affine)
    out = np.zeros((len(streamlines), 2), np.int64)
    for n, s in enumerate(streamlines):
        s = np.asarray(s, dtype=np.float64)
        if len(s) < 2:
            continue
        out[n] = (_end_label(s, labels, inv, search_mm),
                  _end_label(s[::-1], labels, inv, search_mm))
    return out


def connectome(streamlines, labels: np.ndarray, affine: np.ndarray, *, search_mm: float = 2.0,
               weights: np.ndarray | None = None):
    """Count streamlines whose two ends fall in each pair of labels.

    Parameters
    ----------
    streamlines : list of (P, 3) arrays in world mm.
    labels : (X, Y, Z) int — parcellation, 0 = background.
    affine : (4, 4) voxel-to-world (mm) of ``labels``.
    search_mm : an end is assigned the first label met within this distance (mm) from the
        end along the streamline (as MRtrix3's ``tck2connectome`` searches radially).
    weights : (S,) optional weight per streamline (e.g. 1/length, as ``tck2connectome
        -scale_invlength``); the matrix then holds summed weights (float64).

    Returns
    -------
    matrix : (L, L) int64 (float64 with ``weights``) — symmetric counts between the L non-zero
        labels (diagonal: both ends in the same label).
    label_ids : (L,) int — the label of each row/column.
    """
    labels = np.asarray(labels).astype(np.int64)
    label_ids = np.unique(labels[labels > 0])
    matrix = np.zeros((len(label_ids), len(label_ids)), np.int64 if weights is None else np.float64)
    if len(label_ids) == 0 or len(streamlines) == 0:
        return matrix, label_ids
    lookup = np.zeros(int(label_ids.max()) + 1, np.int64)
    lookup[label_ids] = np.arange(len(label_ids))
    ends = end_labels(streamlines, labels, affine, search_mm=search_mm)
    w = np.ones(len(ends)) if weights is None else np.asarray(weights, np.float64)
    for (la, lb), wt in zip(ends, w):
        if la > 0 and lb > 0:
            i, j = lookup[la], lookup[lb]
            matrix[i, j] += wt
            if i != j:
                matrix[j, i] += wt
    return matrix, label_ids


def save_connectome_csv(matrix: np.ndarray, label_ids, path) -> None:
    """Write the matrix as CSV with a header row and first column of label ids."""
    header = "label," + ",".join(str(int(x)) for x in label_ids)
    integer = np.issubdtype(np.asarray(matrix).dtype, np.integer)
    rows = [f"{int(lab)}," + ",".join(str(int(v)) if integer else repr(float(v)) for v in row)
            for lab, row in zip(label_ids, matrix)]
    with open(path, "w") as fh:
        fh.write(header + "\n" + "\n".join(rows) + "\n")


def load_connectome_csv(path):
    """Inverse of :func:`save_connectome_csv`: ``(matrix, label_ids)``."""
    arr = np.loadtxt(path, delimiter=",", dtype=np.int64, skiprows=1, ndmin=2)
    return arr[:, 1:], arr[:, 0]
