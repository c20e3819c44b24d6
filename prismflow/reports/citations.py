"""The methods paragraph of a participant report, generated from the steps that actually ran.

Each reference is cited once, in order of first use; a step that did not run cites nothing.
DOIs were checked against the publishers' pages; PRISM has no DOI yet (preprint), which the
reference says rather than inventing one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reference:
    """One bibliography entry; ``doi`` is ``None`` only where none has been assigned."""

    key: str
    text: str
    doi: str | None = None

    @property
    def url(self) -> str | None:
        return f"https://doi.org/{self.doi}" if self.doi else None


REFERENCES = {r.key: r for r in [
    Reference("prism", "PRISM: Differentiable analysis-by-synthesis for fixel recovery in "
              "diffusion MRI. Preprint (2025); no DOI assigned yet."),
    Reference("remidi", "Khole PP, Petiwala ZK, Magesh SP, Mirafzali E, Gupta U, Li JR, Ianus A, "
              "Marinescu R. ReMiDi: Reconstruction of microstructure using a differentiable "
              "diffusion MRI simulator. arXiv:2502.01988 (2025).", "10.48550/arXiv.2502.01988"),
    Reference("dipy", "Garyfallidis E, Brett M, Amirbekian B, Rokem A, van der Walt S, "
              "Descoteaux M, Nimmo-Smith I, Dipy Contributors. Dipy, a library for the analysis "
              "of diffusion MRI data. Front Neuroinform 8:8 (2014).", "10.3389/fninf.2014.00008"),
    Reference("mrtrix3", "Tournier JD, Smith R, Raffelt D, Tabbara R, Dhollander T, Pietsch M, "
              "Christiaens D, Jeurissen B, Yeh CH, Connelly A. MRtrix3: A fast, flexible and open "
              "software framework for medical image processing and visualisation. NeuroImage "
              "202:116137 (2019).", "10.1016/j.neuroimage.2019.116137"),
    Reference("pydra", "Jarecka D, Goncalves M, Markiewicz CJ, Esteban O, Lo N, Kaczmarzyk J, "
              "Ghosh S. Pydra - a flexible and lightweight dataflow engine for scientific "
              "analyses. Proc. 19th Python in Science Conference (SciPy 2020).",
              "10.25080/Majora-342d178e-012"),
    Reference("pybids", "Yarkoni T, Markiewicz CJ, de la Vega A, Gorgolewski KJ, Salo T, "
              "Halchenko YO, et al. PyBIDS: Python tools for BIDS datasets. J Open Source Softw "
              "4(40):1294 (2019).", "10.21105/joss.01294"),
    Reference("median_otsu", "Otsu N. A threshold selection method from gray-level histograms. "
              "IEEE Trans Syst Man Cybern 9(1):62-66 (1979).", "10.1109/TSMC.1979.4310076"),
    Reference("mppca", "Veraart J, Novikov DS, Christiaens D, Ades-Aron B, Sijbers J, Fieremans "
              "E. Denoising of diffusion MRI using random matrix theory. NeuroImage 142:394-406 "
              "(2016).", "10.1016/j.neuroimage.2016.08.016"),
    Reference("degibbs", "Kellner E, Dhital B, Kiselev VG, Reisert M. Gibbs-ringing artifact "
              "removal based on local subvoxel-shifts. Magn Reson Med 76(5):1574-1581 (2016).",
              "10.1002/mrm.26054"),
    Reference("csd", "Tournier JD, Calamante F, Connelly A. Robust determination of the fibre "
              "orientation distribution in diffusion MRI: non-negativity constrained "
              "super-resolved spherical deconvolution. NeuroImage 35(4):1459-1472 (2007).",
              "10.1016/j.neuroimage.2007.02.016"),
    Reference("msmt", "Jeurissen B, Tournier JD, Dhollander T, Connelly A, Sijbers J. "
              "Multi-tissue constrained spherical deconvolution for improved analysis of "
              "multi-shell diffusion MRI data. NeuroImage 103:411-426 (2014).",
              "10.1016/j.neuroimage.2014.07.061"),
    Reference("odffp", "Baete SH, Cloos MA, Lin YC, Placantonakis DG, Shepherd T, Boada FE. "
              "Fingerprinting orientation distribution functions in diffusion MRI detects "
              "smaller crossing angles. NeuroImage 198:231-241 (2019).",
              "10.1016/j.neuroimage.2019.05.024"),
    Reference("force", "Shah AJ, Henriques RN, Ramirez-Manzanares A, Filipiak P, Baete S, Deka K, "
              "Gor M, Koudoro S, Garyfallidis E. FORCE: FORward modeling for Complex "
              "microstructure Estimation. Research Square preprint (2025).",
              "10.21203/rs.3.rs-8151109/v1"),
    Reference("rprop", "Riedmiller M, Braun H. A direct adaptive method for faster "
              "backpropagation learning: the RPROP algorithm. IEEE Int Conf Neural Networks, "
              "586-591 (1993).", "10.1109/ICNN.1993.298623"),
    Reference("bids", "Gorgolewski KJ, Auer T, Calhoun VD, et al. The brain imaging data "
              "structure, a format for organizing and describing outputs of neuroimaging "
              "experiments. Sci Data 3:160044 (2016).", "10.1038/sdata.2016.44"),
]}

#: Baseline method → (sentence fragment, references).
_BASELINES = {
    "dipy-csd": ("single-shell constrained spherical deconvolution (CSD) in dipy", ["csd", "dipy"]),
    "dipy-msmt": ("multi-shell multi-tissue CSD in dipy", ["msmt", "dipy"]),
    "mrtrix-csd": ("CSD in MRtrix3 (dwi2fod csd)", ["csd", "mrtrix3"]),
    "mrtrix-msmt": ("multi-shell multi-tissue CSD in MRtrix3 (dwi2fod msmt_csd)",
                    ["msmt", "mrtrix3"]),
    "force": ("FORCE forward-model matching", ["force", "dipy"]),
    "odffp": ("ODF fingerprinting", ["odffp", "dipy"]),
}


class _Cite:
    """Numbers references in order of first use."""

    def __init__(self):
        self.order: list[str] = []

    def __call__(self, *keys: str) -> str:
        nums = []
        for k in keys:
            if k not in self.order:
                self.order.append(k)
            nums.append(self.order.index(k) + 1)
        return "[" + ", ".join(str(n) for n in sorted(set(nums))) + "]"


def methods_text(steps: list[dict], *, versions: dict, seed: int,
                 baselines_run: list[str], tracked: list[str], connectome: bool,
                 remidi: bool = False) -> tuple[list[str], list[Reference]]:
    """Paragraphs (plain text with [n] citations) and the numbered references.

    steps : the recipe steps that ran, each ``{"action": ..., **params}``.
    versions : package → version string (prismflow, torch, dipy, pydra, pybids, mrtrix3).
    baselines_run, tracked : method names that produced peaks / tractograms.
    """
    cite = _Cite()
    v = lambda name: versions.get(name, "?")  # noqa: E731
    by = {}
    for s in steps:
        by.setdefault(s["action"], s)
    out = [f"Diffusion MRI data organised in BIDS {cite('bids')} were queried with PyBIDS "
           f"{v('pybids')} {cite('pybids')} and processed with prismflow {v('prismflow')}, whose "
           f"steps ran as a pydra {v('pydra')} workflow {cite('pydra')} (random seed {seed})."]
    pre = []
    mask = by.get("mask", {"method": "median_otsu"})
    if mask.get("method", "median_otsu") == "median_otsu":
        pre.append(f"a brain mask was computed from the mean b=0 image with dipy {v('dipy')}'s "
                   f"median_otsu {cite('dipy', 'median_otsu')}")
    else:
        pre.append("every voxel with signal was kept as the brain mask")
    if "denoise" in by:
        pre.append(f"noise was removed with MP-PCA (MRtrix3 {v('mrtrix3')} dwidenoise) "
                   f"{cite('mppca', 'mrtrix3')}")
    if "degibbs" in by:
        pre.append(f"Gibbs ringing was removed with mrdegibbs {cite('degibbs', 'mrtrix3')}")
    out.append("Preprocessing: " + "; ".join(pre) + ".")
    if "prism" in by:
        p = by["prism"]
        out.append(
            f"Fibre configurations were estimated with PRISM {cite('prism')}, a differentiable "
            f"analysis-by-synthesis fit of a multi-compartment model (CSF, grey matter, a "
            f"restricted pool and up to {p.get('n_fibres', '?')} stick-and-zeppelin fibres) with "
            f"nuisance calibration, optimised with Rprop {cite('rprop')} in PyTorch "
            f"{v('torch')} for up to {p.get('n_iter', '?')} iterations ({p.get('loss', '?')} "
            f"fidelity) over overlapping slabs that were stitched back together.")
    if baselines_run:
        parts = []
        for m in baselines_run:
            text, refs = _BASELINES.get(m, (m, []))
            parts.append(f"{text} {cite(*refs)}" if refs else text)
        out.append("For comparison, fibre peaks were also estimated with " + "; ".join(parts) + ".")
    if tracked:
        tr = by.get("tracking", {})
        # the recipe's default tracker (no "tracker" key) is the fixel tracker
        tracker = tr.get("tracker", "fixel")
        fixel = ("prismflow's fixel tracker (the fixel best aligned with the incoming "
                 "direction is followed; streamlines stop below fibre fraction "
                 f"{tr.get('min_fraction', '?')} or at the angle limit"
                 + ("; each streamline starts along a fixel of its seed voxel drawn in "
                    "proportion to the fibre fractions)" if tr.get("seed_fixel", "fraction")
                    == "fraction" else "; each streamline starts along its seed voxel's "
                    "largest fixel)"))
        how = {"mrtrix": f"MRtrix3 tckgen FACT {cite('mrtrix3')}",
               "dipy": f"dipy's EuDX {cite('dipy')}", "fixel": fixel}.get(
            tracker, f"the {tracker} tracker")
        out.append(f"Deterministic streamlines were generated on the peaks of "
                   f"{', '.join(tracked)} with {how} (step {tr.get('step_mm', '?')} mm, "
                   f"maximum angle {tr.get('angle_deg', '?')}°)"
                   + (", and streamline-count connectomes were built between the labels of "
                      "the parcellation." if connectome else "."))
    if remidi:
        out.append(f"Axon geometry was reconstructed with ReMiDi {cite('remidi')}.")
    return out, [REFERENCES[k] for k in cite.order]
