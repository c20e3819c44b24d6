"""Report figures (matplotlib, Agg): slice mosaics, glyphs, curves, matrices → PNG data URIs.

Every function takes arrays that the caller has already loaded (one map at a time, so a report
never holds more than one whole volume plus a few slices) and returns a ``data:image/png``
URI ready to embed in the self-contained HTML page. Arrays are in voxel order (X, Y, Z[, C]);
slices are shown radiologically neutral, as stored, with the first voxel axis to the right and
the second up (``origin="lower"``), at the true voxel aspect ratio.
"""

from __future__ import annotations

import base64
import io

import numpy as np

#: Axis index → name of the plane shown when slicing along it.
PLANES = {2: "axial", 1: "coronal", 0: "sagittal"}
#: Figure resolution; with the sizes below, text is ≥ 9 pt at 100 % browser zoom.
DPI = 100


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10,
                         "figure.dpi": DPI})
    return plt


def to_uri(fig) -> str:
    """Render ``fig`` as PNG, close it and return a ``data:image/png;base64,…`` URI."""
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def pick_slices(mask: np.ndarray, axis: int, n: int) -> list[int]:
    """``n`` evenly spaced slice indices along ``axis`` inside the bounding box of ``mask``."""
    other = tuple(a for a in range(3) if a != axis)
    occupied = np.flatnonzero(np.any(mask, axis=other))
    if occupied.size == 0:
        occupied = np.arange(mask.shape[axis])
    lo, hi = int(occupied[0]), int(occupied[-1])
    n = min(n, hi - lo + 1)
    # avoid the very first/last slices of the box, which hold only the mask's rim
    return sorted({int(round(v)) for v in np.linspace(lo, hi, n + 2)[1:-1]} or {lo})


def take(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """The 2-D slice ``index`` along ``axis`` (extra trailing axes kept), transposed so that
    ``imshow(origin="lower")`` shows the first remaining voxel axis horizontally."""
    sl = np.take(volume, index, axis=axis)
    return np.swapaxes(sl, 0, 1)


def _aspect(zooms, axis: int) -> float:
    a, b = (zooms[i] for i in range(3) if i != axis)
    return float(b) / float(a)


def mosaic(volume: np.ndarray | None, mask: np.ndarray, zooms, *, axis: int = 2, n: int = 6,
           cmap: str = "gray", vmin=None, vmax=None, overlay: np.ndarray | None = None,
           label: str = "", rows: list[tuple[str, np.ndarray]] | None = None,
           discrete: int | None = None) -> str:
    """A row of ``n`` slices along ``axis`` (or one row per entry of ``rows``), one colour bar.

    The slices of a row are pasted side by side into one canvas and drawn with a single
    ``imshow`` (one axes per slice made a report ten times slower to draw).

    Parameters
    ----------
    volume : (X, Y, Z) scalar map, or (X, Y, Z, 3) RGB in [0, 1].
    mask : (X, Y, Z) bool — chooses the slices; with ``overlay`` it is drawn as a red contour.
    zooms : voxel sizes in mm (aspect ratio).
    rows : optional list of (name, (X, Y, Z) map) drawn as rows sharing the colour scale
        (``volume`` is then ignored).
    discrete : when set, a colour bar with integer ticks 0..discrete.
    label : colour-bar label with the unit.
    """
    plt = _plt()
    rows = rows or [("", volume)]
    idx = pick_slices(mask, axis, n)
    rgb = rows[0][1].ndim == 4
    if vmin is None and not rgb:
        vals = np.concatenate([r[1][mask] for r in rows]) if mask.any() else np.zeros(1)
        vals = vals[np.isfinite(vals)]
        vmin, vmax = (np.percentile(vals, [1, 99]) if vals.size else (0, 1))
        if vmax <= vmin:
            vmax = vmin + 1
    asp = _aspect(zooms, axis)
    w, h = (mask.shape[i] for i in range(3) if i != axis)
    gap = max(1, w // 20)

    def canvas(vol, fill):
        tiles = [take(vol, axis, k) for k in idx]
        pad = np.full((h, gap) + tiles[0].shape[2:], fill, dtype=np.float32)
        out = [tiles[0]]
        for t in tiles[1:]:
            out += [pad, t]
        return np.concatenate(out, axis=1).astype(np.float32)

    width_in = min(13.0, max(4.5, 1.9 * len(idx)))
    height_in = width_in * (h * asp) / (len(idx) * (w + gap)) + 0.35
    fig, axes = plt.subplots(len(rows), 1, figsize=(width_in + 1.3, height_in * len(rows) + 0.2),
                             squeeze=False, facecolor="black")
    cm = (plt.get_cmap(cmap, discrete + 1) if discrete is not None
          else plt.get_cmap(cmap)).with_extremes(bad="black")
    im = None
    for r, (name, vol) in enumerate(rows):
        ax = axes[r, 0]
        ax.set_facecolor("black")
        # gaps between tiles: black for RGB, "bad" (drawn black) for scalar maps
        data = canvas(vol, 0.0 if rgb else np.nan)
        if rgb:
            im = ax.imshow(np.clip(data, 0, 1), origin="lower", aspect=asp,
                           interpolation="nearest")
        else:
            im = ax.imshow(data, origin="lower", aspect=asp, cmap=cm, vmin=vmin, vmax=vmax,
                           interpolation="nearest")
        if overlay is not None:
            ax.contour(canvas(overlay.astype(np.float32), 0.0), levels=[0.5], colors="#ff2a2a",
                       linewidths=1.6)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if r == 0:
            for c, k in enumerate(idx):
                ax.text(c * (w + gap) + w / 2, h, f"{PLANES[axis]} {k}", color="white",
                        ha="center", va="bottom", fontsize=9)
        if name:
            ax.set_ylabel(name, color="white", fontsize=10)
    if not rgb and im is not None and (label or discrete is not None):
        cb = fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.03, pad=0.01)
        if discrete is not None:
            cb.set_ticks(range(discrete + 1))
        cb.set_label(label, color="white")
        cb.ax.tick_params(colors="white")
    return to_uri(fig)


def dec_rgb(vectors: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """Direction-encoded colour: |x| red, |y| green, |z| blue, scaled by ``weight`` (0–1).

    vectors : (..., 3); weight : (...) or None (the vector norm is used).
    """
    norm = np.linalg.norm(vectors, axis=-1, keepdims=True)
    rgb = np.abs(np.divide(vectors, norm, out=np.zeros_like(vectors), where=norm > 0))
    w = norm[..., 0] if weight is None else weight
    top = np.percentile(w[w > 0], 99) if np.any(w > 0) else 1.0
    return rgb * np.clip(w / max(top, 1e-12), 0, 1)[..., None]


def crossing_window(n_fibres: np.ndarray, size: int = 12) -> tuple[int, slice, slice]:
    """Axial slice and (x, y) window of side ``size`` with the most voxels of ≥ 2 fibres."""
    X, Y, Z = n_fibres.shape
    wx, wy = min(size, X), min(size, Y)
    cross = (n_fibres >= 2).astype(np.int64)
    best, where = -1, (Z // 2, 0, 0)
    for z in range(Z):
        c = np.pad(cross[:, :, z], ((1, 0), (1, 0))).cumsum(0).cumsum(1)
        counts = c[wx:, wy:] - c[:-wx, wy:] - c[wx:, :-wy] + c[:-wx, :-wy]
        i, j = np.unravel_index(np.argmax(counts), counts.shape)
        if counts[i, j] > best:
            best, where = int(counts[i, j]), (z, int(i), int(j))
    z, i, j = where
    return z, slice(i, i + wx), slice(j, j + wy)


def glyphs(panels: list[tuple[str, np.ndarray]], background: np.ndarray, window,
           zooms) -> str:
    """Fibre directions as line glyphs in one axial window, one panel per method.

    panels : (name, peaks (X, Y, Z, K, 3) in the voxel frame, length = amplitude).
    background : (X, Y, Z) map drawn in grey (e.g. the WM fraction).
    window : (z, x-slice, y-slice) from :func:`crossing_window`.
    """
    plt = _plt()
    from matplotlib.collections import LineCollection

    z, xs, ys = window
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.4), squeeze=False)
    bg = background[xs, ys, z]
    for ax, (name, peaks) in zip(axes[0], panels):
        ax.imshow(bg.T, origin="lower", cmap="gray", vmin=0, vmax=max(1e-6, float(bg.max())),
                  extent=(xs.start - 0.5, xs.stop - 0.5, ys.start - 0.5, ys.stop - 0.5),
                  aspect=float(zooms[1]) / float(zooms[0]))
        p = peaks[xs, ys, z]                                   # (wx, wy, K, 3)
        amp = np.linalg.norm(p, axis=-1)
        top = amp.max() if amp.max() > 0 else 1.0
        ii, jj, kk = np.nonzero(amp > 0)
        v = p[ii, jj, kk]
        half = 0.45 * (amp[ii, jj, kk] / top)[:, None] * v / np.maximum(
            np.linalg.norm(v[:, :2], axis=-1, keepdims=True), 1e-9)
        # glyph length ∝ in-plane length × amplitude; through-plane fibres stay short
        inplane = np.linalg.norm(v[:, :2], axis=-1) / np.maximum(np.linalg.norm(v, axis=-1), 1e-9)
        half = half[:, :2] * inplane[:, None]
        cx, cy = ii + xs.start, jj + ys.start
        segs = np.stack([np.column_stack([cx - half[:, 0], cy - half[:, 1]]),
                         np.column_stack([cx + half[:, 0], cy + half[:, 1]])], axis=1)
        ax.add_collection(LineCollection(segs, colors=dec_rgb(v, np.ones(len(v))) * 0.85 + 0.15,
                                         linewidths=2.2))
        ax.set_title(f"{name}: {int((amp > 0).any(-1).sum())} voxels with fibres")
        ax.set_xlabel("x (voxel)")
        ax.set_ylabel("y (voxel)")
    fig.suptitle(f"axial slice {z}, voxels x {xs.start}–{xs.stop - 1}, "
                 f"y {ys.start}–{ys.stop - 1}", fontsize=10)
    fig.tight_layout()
    return to_uri(fig)


def curves(series: list[tuple[str, np.ndarray, np.ndarray]], *, xlabel: str, ylabel: str,
           title: str = "", logy: bool = False, kind: str = "line",
           hline: float | None = None) -> str:
    """Line (or marker) plot of (label, x, y) series, with axis labels and a legend."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for i, (name, x, y) in enumerate(series):
        style = dict(color=f"C{i % 10}", label=name)
        if kind == "line":
            ax.plot(x, y, lw=1.5, **style)
        else:
            ax.plot(x, y, "o", ms=4, **style)
    if hline is not None:
        ax.axhline(hline, color="0.4", lw=1, ls="--")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if 1 < len(series) <= 12:
        ax.legend(fontsize=8, ncol=2 if len(series) > 6 else 1)
    fig.tight_layout()
    return to_uri(fig)


def bars(labels: list[str], values: np.ndarray, *, ylabel: str, xlabel: str,
         title: str = "") -> str:
    """A labelled bar chart (one bar per label, value printed on top)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(labels), 3.2))
    ax.bar(range(len(labels)), values, color="C0")
    for i, v in enumerate(values):
        ax.annotate(f"{v:.3g}", (i, v), ha="center", va="bottom", fontsize=9)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.margins(y=0.15)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return to_uri(fig)


def streamlines_views(streamlines: list[np.ndarray], total: int, name: str = "") -> str:
    """Three orthogonal projections (world mm) of a subsample of streamlines, DEC-coloured."""
    plt = _plt()
    from matplotlib.collections import LineCollection

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.9), facecolor="black")
    views = [((0, 1), "axial (x–y)"), ((0, 2), "coronal (x–z)"), ((1, 2), "sagittal (y–z)")]
    names = "xyz"
    segs = [np.stack([s[:-1], s[1:]], axis=1) for s in streamlines if len(s) > 1]
    seg = np.concatenate(segs) if segs else np.zeros((0, 2, 3))
    colours = dec_rgb(seg[:, 1] - seg[:, 0], np.ones(len(seg))) if len(seg) else np.zeros((0, 3))
    for ax, ((a, b), title) in zip(axes, views):
        ax.set_facecolor("black")
        ax.add_collection(LineCollection(seg[:, :, [a, b]], colors=colours, linewidths=0.6,
                                         alpha=0.8))
        if len(seg):
            pts = seg.reshape(-1, 3)
            ax.set_xlim(pts[:, a].min() - 1, pts[:, a].max() + 1)
            ax.set_ylim(pts[:, b].min() - 1, pts[:, b].max() + 1)
        ax.set_aspect("equal")
        ax.set_title(title, color="white")
        ax.set_xlabel(f"{names[a]} (mm)", color="white")
        ax.set_ylabel(f"{names[b]} (mm)", color="white")
        ax.tick_params(colors="white")
    fig.suptitle(f"{name}: {len(streamlines)} of {total} streamlines drawn".lstrip(": "),
                 color="white")
    fig.tight_layout()
    return to_uri(fig)


def matrix(values: np.ndarray, labels, *, label: str, title: str = "") -> str:
    """A labelled heat map of a square matrix (e.g. a connectome), colour bar with unit."""
    plt = _plt()
    n = len(labels)
    size = min(9.0, 2.6 + 0.35 * n)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    im = ax.imshow(values, cmap="viridis", interpolation="nearest")
    step = max(1, n // 20)
    ax.set_xticks(range(0, n, step), [str(v) for v in list(labels)[::step]], rotation=90)
    ax.set_yticks(range(0, n, step), [str(v) for v in list(labels)[::step]])
    ax.set_xlabel("parcel label")
    ax.set_ylabel("parcel label")
    if n <= 12:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{values[i, j]:.0f}", ha="center", va="center", fontsize=8,
                        color="white" if values[i, j] < values.max() / 2 else "black")
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cb.set_label(label)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return to_uri(fig)
