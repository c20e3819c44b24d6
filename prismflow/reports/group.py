"""Group-level comparison from derivatives alone: a tidy table and figures.

The table has one row per (subject, method, metric, value); every metric is computed from the
files prismflow wrote at the participant level (masks, peaks, PRISM maps, tractograms,
connectomes and their sidecars), so the group level needs neither the raw data nor the cache.
"""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

COLUMNS = ("subject", "session", "method", "metric", "value")

#: Frames of PRISM's ``tissue_fractions`` map.
TISSUES = ("csf", "gm", "restricted", "wm")

_ENT = re.compile(r"(?:^|_)(sub|ses|run|acq|space|model|param|desc|seg)-([A-Za-z0-9]+)")


def entities(name: str) -> dict:
    """BIDS entities and suffix of a derivative file name."""
    stem = name.split(".")[0]
    ents = dict(_ENT.findall(stem))
    ents["suffix"] = stem.rsplit("_", 1)[-1]
    return ents


def _load(path):
    import nibabel as nib

    return np.asarray(nib.load(str(path)).dataobj, dtype=np.float64)


def _peaks(path):
    data = np.nan_to_num(_load(path))
    X, Y, Z, C = data.shape
    vec = data.reshape(X, Y, Z, C // 3, 3)
    amp = np.linalg.norm(vec, axis=-1)
    return vec, amp


def subject_metrics(files: list[str | Path]) -> list[dict]:
    """Tidy rows (see :data:`COLUMNS`) for the derivative files of one subject/session."""
    files = [Path(f) for f in files]
    rows = []
    by = defaultdict(dict)
    mask = None
    sub = ses = None
    for f in files:
        e = entities(f.name)
        sub, ses = e.get("sub", sub), e.get("ses", ses)
        if e["suffix"] == "mask" and f.name.endswith((".nii", ".nii.gz")):
            mask = _load(f) > 0
        elif "model" in e:
            by[e["model"]][(e.get("param"), e["suffix"], "".join(f.suffixes))] = f

    def add(method, metric, value):
        rows.append({"subject": sub, "session": ses or "n/a", "method": method,
                     "metric": metric, "value": float(value)})

    prism_first = None
    first_dirs = {}
    for method, items in sorted(by.items()):
        for (param, suffix, ext), f in sorted(items.items(), key=lambda kv: str(kv[0])):
            if suffix == "dwimap" and param == "peaks" and ext.startswith(".nii"):
                vec, amp = _peaks(f)
                m = mask if mask is not None and mask.shape == amp.shape[:3] else amp.sum(-1) >= 0
                n = (amp[m] > 0).sum(-1)
                add(method, "voxels_with_peaks", np.sum(n > 0))
                add(method, "mean_peaks_per_voxel", n[n > 0].mean() if np.any(n > 0) else 0)
                add(method, "crossing_fraction", np.mean(n[n > 0] >= 2) if np.any(n > 0) else 0)
                order = np.argmax(amp, axis=-1)
                first = np.take_along_axis(vec, order[..., None, None], axis=3)[..., 0, :]
                first_dirs[method] = (first, amp.max(-1) > 0)
                side = f.with_name(f.name.split(".")[0] + ".json")
                if side.is_file():
                    secs = json.loads(side.read_text()).get("FitSeconds")
                    if secs is not None:
                        add(method, "fit_seconds", secs)
            elif suffix == "dwimap" and ext.startswith(".nii") and param:
                data = _load(f)
                if mask is None or mask.shape != data.shape[:3]:
                    continue
                if data.ndim == 3:
                    add(method, f"mean_{param}", np.nanmean(data[mask]))
                elif param == "tissuefractions" and data.shape[3] == len(TISSUES):
                    for k, tissue in enumerate(TISSUES):
                        add(method, f"mean_{tissue}_fraction", np.nanmean(data[mask][:, k]))
            elif suffix == "streamlines" and ext == ".json":
                info = json.loads(f.read_text())
                if "StreamlineCount" in info:
                    add(method, "streamline_count", info["StreamlineCount"])
            elif suffix == "connectome" and ext == ".csv":
                arr = np.loadtxt(f, delimiter=",", skiprows=1, ndmin=2)[:, 1:]
                off = arr[~np.eye(len(arr), dtype=bool)]
                add(method, "connectome_total", arr[np.triu_indices(len(arr))].sum())
                add(method, "connectome_density", np.mean(off > 0) if off.size else 0)
    prism_first = first_dirs.get("prism")
    if prism_first is not None:
        for method, (d, has) in first_dirs.items():
            if method == "prism":
                continue
            both = has & prism_first[1]
            if np.any(both):
                a = d[both] / np.linalg.norm(d[both], axis=-1, keepdims=True)
                b = prism_first[0][both]
                b = b / np.linalg.norm(b, axis=-1, keepdims=True)
                cos = np.clip(np.abs(np.sum(a * b, axis=-1)), 0, 1)
                add(method, "first_peak_angle_to_prism_deg", np.degrees(np.arccos(cos)).mean())
    return rows


def write_table(rows: list[dict], path: str | Path) -> Path:
    """Write the tidy rows as a TSV (sorted, fixed column order)."""
    import pandas as pd

    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df = df.sort_values(["metric", "method", "subject", "session"]).reset_index(drop=True)
    path = Path(path)
    df.to_csv(path, sep="\t", index=False, float_format="%.6g")
    return path


def plot_metrics(table: str | Path, out_dir: str | Path) -> list[Path]:
    """One PNG per metric: value per method, a point per subject, a bar for the mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    df = pd.read_csv(table, sep="\t")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for metric, grp in df.groupby("metric", sort=True):
        methods = sorted(grp["method"].unique())
        fig, ax = plt.subplots(figsize=(1.2 + 1.0 * len(methods), 3.0))
        for i, m in enumerate(methods):
            vals = grp.loc[grp["method"] == m, "value"].to_numpy()
            ax.bar(i, vals.mean(), color="0.85", edgecolor="0.3")
            ax.plot(np.full(len(vals), i) + np.linspace(-0.15, 0.15, len(vals)), vals, "o",
                    color="C0", ms=4)
        ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
        ax.set_title(metric, fontsize=9)
        fig.tight_layout()
        p = out_dir / f"metric-{re.sub(r'[^A-Za-z0-9]', '', metric.title())}.png"
        fig.savefig(p, dpi=80, metadata={"Software": None})
        plt.close(fig)
        paths.append(p)
    return paths
