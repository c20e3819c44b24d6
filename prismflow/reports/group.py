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
    from prismflow.io.peaks import peak_vectors

    vec = peak_vectors(_load(path))
    return vec, np.linalg.norm(vec, axis=-1)


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


#: Metric → (axis label with unit, one-line meaning). ``mean_<param>`` maps not listed here
#: get a generic label.
METRICS = {
    "voxels_with_peaks": ("voxels", "voxels in the mask with at least one peak"),
    "mean_peaks_per_voxel": ("peaks per voxel", "mean number of peaks where there is one"),
    "crossing_fraction": ("fraction of voxels", "voxels with ≥ 2 peaks among those with one"),
    "first_peak_angle_to_prism_deg": ("angle (°)", "mean angle between the method's main peak "
                                      "and PRISM's"),
    "fit_seconds": ("time (s)", "fitting time (sum over slabs for PRISM)"),
    "streamline_count": ("streamlines", "deterministic streamlines"),
    "connectome_total": ("streamlines", "streamlines that join two parcels"),
    "connectome_density": ("fraction of parcel pairs", "pairs of parcels joined by ≥ 1 "
                           "streamline"),
    "mean_csf_fraction": ("volume fraction", "mean CSF fraction in the mask"),
    "mean_gm_fraction": ("volume fraction", "mean GM fraction in the mask"),
    "mean_restricted_fraction": ("volume fraction", "mean restricted fraction in the mask"),
    "mean_wm_fraction": ("volume fraction", "mean WM (all fibres) fraction in the mask"),
    "mean_biasfield": ("bias field (1 = none)", "mean multiplicative bias field"),
    "mean_residualrms": ("residual RMS (data units)", "mean residual RMS over the mask"),
    "mean_s0": ("S0 (data units)", "mean fitted b=0 signal"),
    "mean_nfibres": ("fibres per voxel", "mean number of fibres PRISM reports"),
    "mean_fin": ("fraction", "mean intra-axonal fraction"),
}


def metric_label(metric: str) -> tuple[str, str]:
    """(axis label with unit, description) of ``metric``."""
    if metric in METRICS:
        return METRICS[metric]
    return (metric.removeprefix("mean_") + " (map units)", f"mean of the {metric[5:]} map"
            if metric.startswith("mean_") else metric)


def method_colours(methods) -> dict[str, str]:
    """One colour per method, the same in every figure (PRISM always first, blue)."""
    ordered = sorted(set(methods), key=lambda m: (m != "prism", m))
    return {m: f"C{i % 10}" for i, m in enumerate(ordered)}


_MARKERS = "osD^v<>PX*hp"


def plot_metrics(table: str | Path, out_dir: str | Path) -> list[Path]:
    """One PNG per metric: a point per subject (marker = subject, colour = method), the mean as
    a bar, the unit on the y axis; the same method colours and subject markers in every figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    df = pd.read_csv(table, sep="\t", dtype={"subject": str, "session": str})
    df["who"] = df["subject"].map(lambda s: f"sub-{s}") + df["session"].map(
        lambda s: "" if s in ("n/a", "nan") or pd.isna(s) else f" ses-{s}")
    colours = method_colours(df["method"].unique())
    people = sorted(df["who"].unique())
    marker = {w: _MARKERS[i % len(_MARKERS)] for i, w in enumerate(people)}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for metric, grp in df.groupby("metric", sort=True):
        methods = [m for m in colours if m in set(grp["method"])]
        ylabel, desc = metric_label(metric)
        fig, ax = plt.subplots(figsize=(max(4.8, 2.4 + 1.3 * len(methods)), 3.8), dpi=100)
        for i, m in enumerate(methods):
            sub = grp[grp["method"] == m]
            ax.bar(i, sub["value"].mean(), width=0.6, color=colours[m], alpha=0.25,
                   edgecolor=colours[m])
            offsets = np.linspace(-0.18, 0.18, len(people)) if len(people) > 1 else [0.0]
            for off, who in zip(offsets, people):
                vals = sub.loc[sub["who"] == who, "value"].to_numpy()
                ax.plot(np.full(len(vals), i + off), vals, marker[who], color=colours[m],
                        ms=7, mec="black", mew=0.6, label=who if i == 0 else None)
        ax.set_xticks(range(len(methods)), methods)
        ax.set_xlabel("method")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{metric}\n{desc}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        handles = [plt.Line2D([], [], ls="", marker=marker[w], color="0.5", mec="black",
                              label=w) for w in people]
        ax.legend(handles=handles, title="subject", fontsize=8, title_fontsize=8,
                  loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        fig.tight_layout()
        p = out_dir / f"metric-{re.sub(r'[^A-Za-z0-9]', '', metric.title())}.png"
        fig.savefig(p, dpi=100, metadata={"Software": None})
        plt.close(fig)
        paths.append(p)
    return paths


def write_group_report(table: str | Path, figures: list[str | Path], path: str | Path, *,
                       table_href: str = "prismflow_metrics.tsv") -> Path:
    """``group/report.html``: every metric's figure (embedded) and a subject × method table,
    with a link to the TSV (``table_href``, relative to the page)."""
    import base64

    import pandas as pd

    from .html import render, write_atomic

    df = pd.read_csv(table, sep="\t", dtype={"subject": str, "session": str},
                     keep_default_na=False)
    figs = {Path(f).stem: Path(f) for f in figures}
    sections = [{"id": "table", "title": "The table", "caption": "One row per subject, "
                 "session, method and metric, computed from the participant derivatives alone.",
                 "items": [{"kind": "link", "href": table_href,
                            "text": f"{table_href} ({len(df)} rows, tab-separated; column "
                                    "descriptions in prismflow_metrics.json)"},
                           {"kind": "text", "text": "Subjects: " + ", ".join(
                               sorted(df["subject"].unique())) + "; methods: " + ", ".join(
                               sorted(df["method"].unique())) + "."}]}]
    items = []
    for metric in sorted(df["metric"].unique()):
        key = f"metric-{re.sub(r'[^A-Za-z0-9]', '', metric.title())}"
        if key in figs:
            uri = "data:image/png;base64," + base64.b64encode(figs[key].read_bytes()).decode()
            items.append({"kind": "img", "uri": uri, "alt": metric})
    sections.append({"id": "figures", "title": "Every metric", "caption": "A point per "
                     "subject (marker = subject), colour = method (the same in every figure), "
                     "bar = mean over subjects. Good: subjects close to each other within a "
                     "method; methods differ where they should.", "items": items})
    df["who"] = df["subject"] + df["session"].map(lambda v: "" if v == "n/a" else f"/{v}")
    wide = df.pivot_table(index=["metric", "method"], columns="who", values="value",
                          aggfunc="first")
    rows = [[m, meth, metric_label(m)[0], *(f"{v:.4g}" for v in row)]
            for (m, meth), row in zip(wide.index, wide.to_numpy())]
    sections.append({"id": "values", "title": "Values", "caption": "The table's values, one row "
                     "per metric and method, one column per subject.",
                     "items": [{"kind": "table", "header": ["metric", "method", "unit",
                                                            *(f"sub-{w}" for w in wide.columns)],
                                "rows": rows}]})
    page = render("prismflow group report", f"{df['subject'].nunique()} subject(s), "
                  f"{df['method'].nunique()} method(s), {df['metric'].nunique()} metrics",
                  [{"name": None, "sections": sections}])
    return write_atomic(page, path)
