"""Structural connectomes: streamline counts between the labels of a parcellation."""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)


def connectome(streamlines, labels: np.ndarray, affine: np.ndarray):
    """Count streamlines whose two end points fall in each pair of labels.

    Parameters
    ----------
    streamlines : list of (P, 3) arrays in world mm.
    labels : (X, Y, Z) int — parcellation, 0 = background.
    affine : (4, 4) voxel-to-world (mm) of ``labels``.

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
    ends = np.array([[s[0], s[-1]] for s in streamlines], dtype=np.float64)   # (S, 2, 3)
    vox = np.rint(ends @ inv[:3, :3].T + inv[:3, 3]).astype(np.int64)
    inside = np.all((vox >= 0) & (vox < np.array(labels.shape)), axis=(1, 2))
    vox = vox[inside]
    a = labels[vox[:, 0, 0], vox[:, 0, 1], vox[:, 0, 2]]
    b = labels[vox[:, 1, 0], vox[:, 1, 1], vox[:, 1, 2]]
    for la, lb in zip(a, b):
        if la > 0 and lb > 0:
            i, j = lookup[la], lookup[lb]
            matrix[i, j] += 1
            if i != j:
                matrix[j, i] += 1
    return matrix, label_ids


def save_connectome_csv(matrix: np.ndarray, label_ids, path) -> None:
    """Write the matrix as CSV with a header row and first column of label ids."""
    header = "label," + ",".join(str(int(x)) for x in label_ids)
    rows = [f"{int(lab)}," + ",".join(str(int(v)) for v in row) for lab, row in zip(label_ids, matrix)]
    with open(path, "w") as fh:
        fh.write(header + "\n" + "\n".join(rows) + "\n")


def load_connectome_csv(path):
    """Inverse of :func:`save_connectome_csv`: ``(matrix, label_ids)``."""
    arr = np.loadtxt(path, delimiter=",", dtype=np.int64, skiprows=1, ndmin=2)
    return arr[:, 1:], arr[:, 0]
