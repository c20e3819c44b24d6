"""The participant report: what one DWI series went through and whether the fit can be trusted.

:func:`build_sections` reads the files one participant-level workflow wrote (the checked input
series, the mask, PRISM's maps, the baselines' peaks, tractograms, connectomes) and turns them
into report sections, each a title, a one-line caption that says what good looks like, and
items (embedded figures, tables, text). :func:`render_report` (in :mod:`.html`) makes the page.

Memory: maps are read one at a time and dropped; the 4-D series and the 4-D prediction are
streamed one volume at a time (:func:`iter_volumes`), so a brain-sized report holds at most one
3-D map plus a few slices beyond the largest single map.
"""

from __future__ import annotations

import json
import logging
import math
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from . import figures as fg
from .citations import methods_text

logger = logging.getLogger(__name__)

#: Shells closer than this (s/mm²) are one shell.
SHELL_TOLERANCE = 100.0
TISSUES = ("CSF", "GM", "restricted", "WM")
#: Streamlines drawn per tractogram (an even subsample of the file).
MAX_DRAWN_STREAMLINES = 1000


@dataclass
class ParticipantInputs:
    """Files of one series (paths as strings; ``None`` / empty where a step did not run).

    dwi, bval, bvec : the checked series PRISM fitted (X, Y, Z, N).
    mask : (X, Y, Z) brain mask.
    prism_maps : folder of PRISM maps (``<name>.nii.gz``, ``calibration.json``).
    prism_peaks : PRISM peaks in the bvec (voxel) frame, (X, Y, Z, 3K).
    prism_info : JSON with the PRISM config, slab count and fit seconds.
    baseline_peaks, baseline_info : per baseline, peaks in the bvec frame and its info JSON.
    tractograms, connectomes : ``tracts_<method>.trk|tck`` and ``connectome_<method>.csv``.
    recipe : the recipe that ran (``{"name", "steps": [{"action", ...}]}``); seed : its seed.
    """

    dwi: str
    bval: str
    bvec: str
    mask: str
    recipe: dict
    seed: int = 0
    prism_maps: str | None = None
    prism_peaks: str | None = None
    prism_info: str | None = None
    baseline_peaks: list[str] = field(default_factory=list)
    baseline_info: list[str] = field(default_factory=list)
    tractograms: list[str] = field(default_factory=list)
    connectomes: list[str] = field(default_factory=list)


# --- reading -------------------------------------------------------------------------------

def load(path, dtype=np.float32) -> np.ndarray:
    """The whole image as an array (for 3-D maps and small 4-D maps)."""
    import nibabel as nib

    return np.nan_to_num(np.asarray(nib.load(str(path)).dataobj, dtype=dtype))


def iter_volumes(path):
    """Yield the 3-D volumes of a 4-D NIfTI one after the other, reading the file once.

    nibabel's ``dataobj[..., n]`` re-opens (and for ``.nii.gz`` re-decompresses from the start)
    at every call; here one sequential pass reads volume after volume (they are contiguous in
    NIfTI's Fortran order), so memory stays at one volume and time at one decompression.
    """
    import nibabel as nib
    from nibabel.openers import ImageOpener

    img = nib.load(str(path))
    proxy = img.dataobj           # the loaded header's offset/scaling can read 0/None: the
    shape = img.shape[:3]         # array proxy holds the values nibabel itself reads with
    n = img.shape[3] if img.ndim == 4 else 1
    dtype = np.dtype(proxy.dtype)
    slope, inter = float(proxy.slope), float(proxy.inter)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    with ImageOpener(str(path), "rb") as fh:
        fh.seek(int(proxy.offset))
        for _ in range(n):
            vol = np.frombuffer(fh.read(nbytes), dtype=dtype).reshape(shape, order="F")
            vol = vol.astype(np.float32)
            if not math.isnan(slope) and slope not in (0, 1):
                vol = vol * np.float32(slope)
            if not math.isnan(inter) and inter != 0:
                vol = vol + np.float32(inter)
            yield np.nan_to_num(vol)


def shells(bvals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(shell b-values (S,), shell index per measurement (N,)); b in s/mm², b≈0 is shell 0."""
    b = np.asarray(bvals, float)
    centres: list[float] = []
    for v in np.sort(b):
        if not centres or v - centres[-1] > SHELL_TOLERANCE:
            centres.append(v)
    centres_arr = np.array([np.round(np.mean(b[np.abs(b - c) <= SHELL_TOLERANCE]), -1)
                            for c in centres])
    index = np.argmin(np.abs(b[:, None] - centres_arr[None, :]), axis=1)
    return centres_arr, index


def versions() -> dict[str, str]:
    """Versions of the software a report cites (``?`` when a package is missing)."""
    out = {}
    for name, dist in (("prismflow", "prismflow"), ("torch", "torch"), ("dipy", "dipy"),
                       ("numpy", "numpy"), ("nibabel", "nibabel"), ("pydra", "pydra"),
                       ("pybids", "pybids"), ("nipype", "nipype"), ("matplotlib", "matplotlib")):
        try:
            out[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[name] = "?"
    out["python"] = platform.python_version()
    out["mrtrix3"] = _mrtrix_version()
    return out


def _mrtrix_version() -> str:
    import shutil
    import subprocess

    exe = shutil.which("mrconvert")
    if not exe:
        return "not installed"
    try:
        first = subprocess.run([exe, "-version"], capture_output=True, text=True,
                               timeout=20).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "?"
    return first.split("==")[1].strip().split()[-1] if "==" in first else first.strip()


def _method_of(path) -> str:
    name = Path(path).name
    for prefix in ("scanner_peaks_", "peaks_", "tracts_", "connectome_"):
        if name.startswith(prefix):
            return name[len(prefix):].split(".")[0]
    return name.split(".")[0]


def _peaks5(path) -> np.ndarray:
    """(X, Y, Z, K, 3) peak vectors (length = amplitude)."""
    data = load(path)
    return data.reshape(data.shape[:3] + (data.shape[3] // 3, 3))


def _main_peak(peaks: np.ndarray) -> np.ndarray:
    """(X, Y, Z, 3) the largest-amplitude peak vector of each voxel."""
    amp = np.linalg.norm(peaks, axis=-1)
    k = np.argmax(amp, axis=-1)
    return np.take_along_axis(peaks, k[..., None, None], axis=3)[..., 0, :]


# --- sections ------------------------------------------------------------------------------

def _img(uri: str, alt: str) -> dict:
    return {"kind": "img", "uri": uri, "alt": alt}


def _table(header, rows) -> dict:
    return {"kind": "table", "header": list(header), "rows": [[str(c) for c in r] for r in rows]}


def _text(text: str) -> dict:
    return {"kind": "text", "text": text}


def _section(sid, title, caption, items) -> dict:
    return {"id": sid, "title": title, "caption": caption, "items": items}


def build_sections(inp: ParticipantInputs, *, mosaic_slices: int = 6) -> list[dict]:
    """Report sections for one series (see the module docstring for the layout)."""
    import nibabel as nib

    from prismflow.io import read_bval_bvec

    img = nib.load(str(inp.dwi))
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    acq = read_bval_bvec(inp.bval, inp.bvec, n_volumes=img.shape[3], image_name=Path(inp.dwi).name)
    bvals = np.asarray(acq.bvals, float)
    shell_b, shell_idx = shells(bvals)
    mask = load(inp.mask) > 0
    ver = versions()
    maps = Path(inp.prism_maps) if inp.prism_maps else None
    calib = json.loads((maps / "calibration.json").read_text()) if maps and (
        maps / "calibration.json").is_file() else {}
    slabs = calib.get("info", {}).get("slabs", [])
    prism_info = json.loads(Path(inp.prism_info).read_text()) if inp.prism_info else {}
    base_infos = [json.loads(Path(f).read_text()) for f in inp.baseline_info]
    sections = []

    # summary
    devices = sorted({s.get("device", "?") for s in slabs}) if slabs else []
    steps = inp.recipe.get("steps", [])
    rows = [
        ("data fitted", f"{img.shape[0]}×{img.shape[1]}×{img.shape[2]} voxels, "
                        f"{img.shape[3]} volumes (the checked, preprocessed series)"),
        ("voxel size", " × ".join(f"{z:.2f}" for z in zooms) + " mm"),
        ("shells (b in s/mm²: directions)", ", ".join(
            f"{b:.0f}: {int(np.sum(shell_idx == i))}" for i, b in enumerate(shell_b))),
        ("brain mask", f"{int(mask.sum())} voxels ({mask.sum() * np.prod(zooms) / 1000:.1f} mL)"),
        ("recipe", f"{inp.recipe.get('name', '?')}: "
                   + " → ".join(s.get("action", "?") for s in steps)),
        ("seed", inp.seed),
    ]
    if prism_info:
        rows.append(("PRISM device actually used", ", ".join(devices) or "?"))
        rows.append(("PRISM fit", f"{prism_info.get('n_slabs', len(slabs))} slab(s), "
                                  f"{prism_info.get('seconds', float('nan')):.1f} s of fitting "
                                  f"(sum over slabs)"))
    for info in base_infos:
        rows.append((f"{info.get('method')} fit", f"{info.get('seconds', float('nan')):.1f} s"))
    rows.append(("software", ", ".join(f"{k} {v}" for k, v in ver.items())))
    sections.append(_section(
        "summary", "Summary", "Check that the shells, directions and voxel size are the ones you "
        "acquired and that PRISM ran on the device you expected.", [_table(("", ""), rows)]))

    # mask over mean b0
    b0 = np.zeros(mask.shape, np.float32)
    nb0 = 0
    for n, vol in enumerate(iter_volumes(inp.dwi)):
        if acq.b0_mask[n]:
            b0 += vol
            nb0 += 1
    b0 /= max(nb0, 1)
    items = [_img(fg.mosaic(b0, mask, zooms, axis=a, n=mosaic_slices, overlay=mask,
                            label="mean b=0 signal (a.u.)"), f"brain mask on the mean b=0, {p}")
             for a, p in fg.PLANES.items()]
    sections.append(_section(
        "mask", "Brain mask over the mean b=0 image", "Good: the red outline follows the edge of "
        "the brain, with no holes in the tissue and no skull or background inside.", items))
    del b0

    if prism_info.get("config"):
        sections.append(_model_section(prism_info))
    if maps is not None:
        sections += _prism_sections(inp, maps, mask, zooms, calib, slabs, acq, shell_b,
                                    shell_idx, mosaic_slices)
    sections += _tracking_sections(inp)
    baselines_run = [i.get("method") for i in base_infos]
    tracked = [_method_of(t) for t in inp.tractograms]
    paragraphs, refs = methods_text(
        steps, versions=ver, seed=inp.seed, baselines_run=baselines_run, tracked=tracked,
        connectome=bool(inp.connectomes), remidi=any(s.get("action") == "mesh" for s in steps))
    sections.append(_section(
        "methods", "Methods", "Generated from the steps that ran; copy it into your paper and "
        "cite the references.", [_text(p) for p in paragraphs]
        + [{"kind": "refs", "refs": [{"text": r.text, "doi": r.doi, "url": r.url} for r in refs]}]))
    return sections


def diffusivity_rows(config: dict) -> list[tuple[str, str, str]]:
    """(compartment, value in 10⁻³ mm²/s, where it came from) for each diffusivity of a PRISM
    config: the estimate's one-line record (``diffusivity_source``) when the data were used."""
    from prismflow.prism.response import DiffusivityEstimate

    values = config.get("diffusivities", {})
    sources = DiffusivityEstimate.sources_from_summary(config.get("diffusivity_source"))
    fallback = "given" if config.get("diffusivity_source") == "given" else "constant (PrismConfig)"
    label = {"axial": "fibre D∥", "radial": "fibre D⊥ (zeppelin)"}
    return [(label.get(k, k), f"{1e3 * float(v):.3g}", sources.get(k, fallback))
            for k, v in values.items()]


def _model_section(info: dict) -> dict:
    """What PRISM estimated from these data and the rules it reported fibres by."""
    cfg = info["config"]
    rows = [(f"{name} (10⁻³ mm²/s)", f"{value} — {source}")
            for name, value, source in diffusivity_rows(cfg)]
    rows.append(("intra-axonal fraction f_in",
                 "one per voxel, shared by its fibres" if cfg.get("shared_f_in", False)
                 else "one per fibre (the paper's model)"))
    if cfg.get("fibre_selection") == "evidence":
        rule = (f"kept on evidence: per voxel the fibre count of least "
                f"{str(cfg.get('fibre_criterion', 'bic')).upper()} with σ from the b=0 volumes")
        if cfg.get("evidence_pool_deg"):
            rule += (f"; comparisons pooled over neighbours whose fibres agree within "
                     f"{cfg['evidence_pool_deg']:g}°")
    else:
        rule = "fraction thresholds alone"
    rule += (f"; reported when its fraction ≥ {cfg.get('min_fibre_fraction')} and ≥ "
             f"{cfg.get('relative_fibre_fraction')} × the voxel's largest")
    rows.append(("fibres", rule))
    sel = info.get("selection") or {}
    if sel.get("tested"):
        rows.append(("evidence test", "voxels tested per round " + ", ".join(map(str, sel["tested"]))
                     + "; fewer fibres chosen " + ", ".join(map(str, sel.get("removed", [])))
                     + (f"; fibres added by pooling {sel['pooling']['gained_fibres']}"
                        if sel.get("pooling") else "") + " (slab overlaps count twice)"))
    if info.get("single_shell"):
        rows.append(("one shell", info["single_shell"]))
    return _section(
        "model", "PRISM model: what was estimated from these data",
        "Check that the fibre diffusivities came from the data (not a constant) and lie in a "
        "plausible range for white matter (PRISM's robustness benchmark spans D∥ 1.4–2.2 and "
        "D⊥ 0.2–0.6 × 10⁻³ mm²/s).",
        [_table(("", ""), rows)])


def _prism_sections(inp, maps: Path, mask, zooms, calib, slabs, acq, shell_b, shell_idx,
                    nsl) -> list[dict]:
    out = []
    tissue = load(maps / "tissue_fractions.nii.gz")
    rows = [(name, tissue[..., k]) for k, name in enumerate(TISSUES)]
    items = [_img(fg.mosaic(None, mask, zooms, axis=a, n=min(nsl, 5), rows=rows, vmin=0, vmax=1,
                            cmap="viridis", label="volume fraction"), f"tissue fractions, {p}")
             for a, p in fg.PLANES.items()]
    out.append(_section(
        "tissue", "Tissue fractions", "Good: WM high in the white matter, GM in the cortex and "
        "deep nuclei, CSF in the ventricles and around the brain; rows are tissues, columns "
        "slices.", items))
    wm = tissue[..., 3].copy()
    del tissue, rows

    nfib = load(maps / "n_fibres.nii.gz", np.int16)
    kmax = int(max(1, nfib.max()))
    counts = [int(np.sum(nfib[mask] == k)) for k in range(kmax + 1)]
    out.append(_section(
        "nfibres", "Number of fibres per voxel",
        "Good: 1 in single bundles, 2–3 where bundles cross, 0 in CSF and most grey matter. "
        "Voxels per count: " + ", ".join(f"{k}: {c}" for k, c in enumerate(counts)) + ".",
        [_img(fg.mosaic(nfib, mask, zooms, axis=2, n=nsl, cmap="magma", vmin=-0.5,
                        vmax=kmax + 0.5, discrete=kmax, label="fibres"),
              "number of fibres, axial")]))

    dirs = load(maps / "fibre_directions.nii.gz")[..., :3]
    ff = load(maps / "fibre_fractions.nii.gz")[..., 0]
    rgb = fg.dec_rgb(dirs, ff)
    del dirs, ff
    out.append(_section(
        "dec", "Direction of the main fibre",
        "Colour = direction (red: first voxel axis, left–right; green: second, front–back; "
        "blue: third, up–down), brightness = its fraction. Good: smooth colours along each "
        "bundle, known tracts in their expected colour.",
        [_img(fg.mosaic(rgb, mask, zooms, axis=a, n=nsl), f"main fibre direction, {p}")
         for a, p in fg.PLANES.items()]))
    del rgb
    out += _crossing_section(inp, nfib, wm, mask, zooms, nsl)
    del nfib
    out += _quality_sections(inp, maps, mask, zooms, calib, slabs, acq, shell_b, shell_idx, nsl)
    return out


def _crossing_section(inp, nfib, wm, mask, zooms, nsl) -> list[dict]:
    if not inp.prism_peaks:
        return []
    prism = _peaks5(inp.prism_peaks)
    window = fg.crossing_window(np.where(mask, nfib, 0))
    base = [(p, _method_of(p)) for p in inp.baseline_peaks]
    csd = next((b for b in base if "csd" in b[1]), base[0] if base else None)
    panels = [("PRISM", prism)]
    items = []
    caption = ("Fibre directions as lines in the axial window with the most crossing voxels "
               "(line length ∝ fibre fraction or peak amplitude, colour = direction). Good: "
               "two or three distinct lines where bundles cross, one where they do not")
    if csd is not None:
        other = _peaks5(csd[0])
        panels.append((csd[1], other))
        a, b = _main_peak(prism), _main_peak(other)
        na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
        both = mask & (na > 0) & (nb > 0)
        cos = np.abs(np.sum(a * b, axis=-1)) / np.maximum(na * nb, 1e-12)
        angle = np.where(both, np.degrees(np.arccos(np.clip(cos, 0, 1))), np.nan)
        items.append(_img(fg.glyphs(panels, wm, window, zooms), "fibre glyphs"))
        med = float(np.nanmedian(angle)) if np.any(both) else float("nan")
        items.append(_img(fg.mosaic(angle, mask, zooms, axis=2, n=nsl,
                                    cmap="inferno", vmin=0, vmax=90,
                                    label=f"angle PRISM vs {csd[1]} (°)"),
                          "angle between main peaks"))
        caption += (f"; PRISM beside {csd[1]}. The map shows the angle between their main peaks, black where either has none "
                    f"(median {med:.1f}° over {int(both.sum())} voxels): good is small (< 15°) in "
                    f"single bundles; large angles flag crossings where the two methods disagree")
        del other
    else:
        items.append(_img(fg.glyphs(panels, wm, window, zooms), "fibre glyphs"))
    return [_section("crossings", "Fibre directions in a crossing region", caption + ".", items)]


def _quality_sections(inp, maps, mask, zooms, calib, slabs, acq, shell_b, shell_idx,
                      nsl) -> list[dict]:
    items = []
    rms = load(maps / "residual_rms.nii.gz")
    s0 = load(maps / "s0.nii.gz")
    # NaN outside the mask: drawn black, not as the colour map's "perfect fit" end
    rel = np.where(mask & (s0 > 0), 100 * rms / np.maximum(s0, 1e-12), np.nan)
    del rms, s0
    items.append(_img(fg.mosaic(rel, mask, zooms, axis=2, n=nsl, cmap="hot",
                                label="residual RMS (% of S0)"), "residual RMS map"))
    med_rel = float(np.nanmedian(rel[mask])) if mask.any() else float("nan")
    del rel
    # residual per shell, streamed one volume at a time
    sq = np.zeros(len(acq))
    meas = np.zeros(len(acq))
    pred_path = maps / "predicted.nii.gz"
    if pred_path.is_file():
        for n, (d, p) in enumerate(zip(iter_volumes(inp.dwi), iter_volumes(pred_path))):
            sq[n] = float(np.mean((d[mask] - p[mask]) ** 2)) if mask.any() else 0.0
            meas[n] = float(np.mean(d[mask])) if mask.any() else 0.0
        # in % of the mean b=0 signal: noise has one absolute level, so a good fit shows
        # about the same bar on every shell (the scan's noise level)
        s0_mean = max(float(meas[acq.b0_mask].mean()) if acq.b0_mask.any() else meas.max(), 1e-12)
        per_shell = np.array([100 * np.sqrt(sq[shell_idx == i].mean()) / s0_mean
                              for i in range(len(shell_b))])
        items.append(_img(fg.bars([f"{b:.0f}" for b in shell_b], per_shell,
                                  xlabel="shell b-value (s/mm²)",
                                  ylabel="residual RMS (% of mean b=0)"),
                          "residual per shell"))
    if calib:
        gain = np.exp(np.atleast_2d(np.asarray(calib.get("meas_log_scale", []), float)))
        offset = np.atleast_2d(np.asarray(calib.get("meas_offset", []), float))
        if gain.size:
            x = np.arange(gain.shape[1])
            items.append(_img(fg.curves(
                [(f"slab {i}", x, g) for i, g in enumerate(gain)], xlabel="measurement index",
                ylabel="gain (exp a_n)", title="per-measurement gain", kind="marker", hline=1.0),
                "calibration gain"))
            items.append(_img(fg.curves(
                [(f"slab {i}", x, o) for i, o in enumerate(offset)], xlabel="measurement index",
                ylabel="offset c_n (fraction of b=0)", title="per-measurement offset",
                kind="marker", hline=0.0), "calibration offset"))
    bias = np.where(mask, load(maps / "bias_field.nii.gz"), np.nan)
    items.append(_img(fg.mosaic(bias, mask, zooms, axis=2, n=nsl, cmap="coolwarm",
                                vmin=float(min(0.8, bias[mask].min() if mask.any() else 1)),
                                vmax=float(max(1.2, bias[mask].max() if mask.any() else 1)),
                                label="bias field (1 = none)"), "bias field"))
    del bias
    hist = [(f"slab {s['index']}", np.arange(1, len(s["loss_history"]) + 1),
             np.asarray(s["loss_history"], float)) for s in slabs if s.get("loss_history")]
    if hist:
        positive = all(np.all(h[2] > 0) for h in hist)
        items.append(_img(fg.curves(hist, xlabel="iteration", ylabel="loss (objective, a.u.)",
                                    title="loss per slab", logy=positive), "loss per slab"))
    sigma = np.asarray(calib.get("sigma_relative_to_b0", []), float).ravel()
    if sigma.size:
        items.append(_table(("slab", "learned σ (relative to b=0)", "iterations", "final loss"), [
            (s.get("index", i), f"{sig:.4g}" if np.isfinite(sig) else "not learned (MSE mode)",
             s.get("iterations", "?"), f"{s.get('final_loss', float('nan')):.4g}")
            for i, (s, sig) in enumerate(zip(slabs or [{}] * sigma.size, sigma))]))
    cap = (f"Good: residual RMS a few % of S0 everywhere (median {med_rel:.1f} %) with no "
           "anatomical structure in the map, similar residuals across shells, gains near 1 and "
           "offsets near 0, a smooth bias field near 1, loss curves that flatten before the last "
           "iteration, σ close to the noise level of the scan.")
    return [_section("quality", "Fit quality", cap, items)]


def _tracking_sections(inp) -> list[dict]:
    import nibabel as nib

    if not inp.tractograms:
        return []
    items, rows = [], []
    for path in inp.tractograms:
        method = _method_of(path)
        tg = nib.streamlines.load(str(path), lazy_load=True)
        total = int(tg.header.get("nb_streamlines", tg.header.get("count", 0)) or 0)
        step = max(1, math.ceil(total / MAX_DRAWN_STREAMLINES))
        sub = [np.asarray(s) for i, s in enumerate(tg.streamlines) if i % step == 0]
        lengths = [float(np.sum(np.linalg.norm(np.diff(s, axis=0), axis=1))) for s in sub]
        # every 3rd point is enough at this size (steps are ≤ 1 mm); drawing time ∝ segments
        sub = [np.vstack([s[::3], s[-1:]]) for s in sub]
        rows.append((method, total, f"{np.median(lengths):.1f}" if lengths else "n/a"))
        items.append(_img(fg.streamlines_views(sub, total, method), f"streamlines of {method}"))
    items.insert(0, _table(("peaks source", "streamlines", "median length (mm)"), rows))
    out = [_section("tracking", "Tractography", "Good: streamlines follow the bundles seen in the "
                    "direction map and stop at the mask edge; counts of the same order across "
                    "methods.", items)]
    if inp.connectomes:
        from prismflow.tracking import load_connectome_csv

        cm = []
        for path in inp.connectomes:
            matrix, labels = load_connectome_csv(path)
            cm.append(_img(fg.matrix(matrix.astype(float), labels, label="streamlines",
                                     title=f"connectome ({_method_of(path)})"),
                           f"connectome of {_method_of(path)}"))
        out.append(_section("connectome", "Connectome", "Streamline counts between parcels. "
                            "Good: strong entries between regions that known bundles join, a "
                            "symmetric matrix, few isolated parcels.", cm))
    return out
