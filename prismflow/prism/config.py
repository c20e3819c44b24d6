"""Configuration of a PRISM fit: one frozen dataclass tree, serialisable for provenance.

Units: diffusivities in mm²/s, b-values in s/mm². Defaults are documented field by field; the
PRISM paper fixes its diffusivities across experiments and so do we (see ``Diffusivities``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace


@dataclass(frozen=True)
class Diffusivities:
    """Fixed compartment diffusivities of the forward model, mm²/s.

    The phantoms deliberately simulate other values (tensors, not sticks), so the model is
    mismatched to the data as in the paper.
    """

    csf: float = 3.0e-3        #: free water at body temperature
    gm: float = 0.8e-3         #: grey-matter apparent isotropic diffusivity
    restricted: float = 0.1e-3  #: slow restricted isotropic pool (soma-like)
    axial: float = 1.7e-3      #: D∥ of stick and zeppelin
    radial: float = 0.3e-3     #: D⊥ of the zeppelin (extra-axonal)


@dataclass(frozen=True)
class PriorWeights:
    """Weights of the regularisers (0 switches a term off).

    Units: Rician negative log-likelihood per measurement (nats). In MSE mode the penalty is
    multiplied by 2σ̂² (σ̂: noise level estimated from repeated b=0 volumes, relative to b0),
    which converts nats to squared-signal units, so the same weights hold at any SNR.

    Defaults follow the paper's synthetic set-up: only direction repulsion and minor-fibre
    sparsity are on; the spatial terms (smoothness, continuity) are for image volumes and are
    switched on by ``PrismConfig.for_volume()``.
    """

    smoothness: float = 0.0      #: Huber-Laplacian of tissue fractions (paper default on volumes)
    smoothness_delta: float = 0.05  #: Huber transition, fraction units
    neighbourhood: int = 6       #: 6 or 26
    repulsion: float = 0.0       #: Σ_{j<k} f_j f_k (n_j·n_k)² per voxel
    sparsity: float = 0.005      #: L1 on the minor fibre fractions, rank-weighted
    #: each further minor fibre costs this much more. 32: the weakest rank prior for which
    #: ``benchmarks/crossing.py --snr 30`` (tuning set) stays ≤ 2.0° overall (1.997°; 48: 1.956°,
    #: 64: 1.963°); on the tuning cell random/3shell/SNR 30 the 3-fibre error is 12.2° at 32 and
    #: 18.7 / 20.9 / 23.4° at 48 / 64 / 128 (the earlier value, which erased most true third
    #: fibres). Which fibres are reported is decided after the fit by the evidence test
    #: (``prism/selection.py``), not by this prior.
    sparsity_growth: float = 32.0
    orphan_wm: float = 0.0       #: WM fraction where S0 is near zero
    continuity: float = 0.0      #: neighbouring voxels share fibre directions
    topology_warmup: float = 0.5  #: fraction of iterations over which repulsion/sparsity ramp from 0
    ordering: float = 0.0        #: hinge on f_{k+1} > f_k (breaks permutation symmetry)


@dataclass(frozen=True)
class CalibrationConfig:
    """Nuisance calibration: bias field, per-measurement affine, learned σ (all near identity)."""

    bias_field: bool = False     #: exp of a trilinearly upsampled low-resolution control grid
    bias_grid: tuple[int, int, int] = (4, 4, 4)
    measurement_affine: bool = False  #: per-measurement log-scale a_n and offset c_n
    weight_bias: float = 1e-2    #: L2 on bias-grid coefficients
    weight_bias_tv: float = 1e-2  #: TV of the upsampled log bias field
    weight_scale: float = 1e-3   #: L2 on a_n
    weight_offset: float = 1e-3  #: L2 on c_n
    sigma_init: float = 0.05     #: initial σ relative to the b0 signal (NLL mode)


@dataclass(frozen=True)
class PrismConfig:
    """Everything that decides a PRISM fit.

    Parameters
    ----------
    n_fibres : K, fibres per voxel (default 3).
    loss : ``"mse"`` or ``"nll"`` (Rician negative log-likelihood with learned σ).
    n_iter : maximum optimiser iterations.
    optimizer : ``"rprop"`` (default), ``"adam"``, ``"adamw"``, ``"rmsprop"``, ``"sgd"``.
    lr : initial step (Rprop) or learning rate.
    tol : convergence: stop when the relative loss decrease over ``patience`` iterations is
        below ``tol`` (0 disables).
    seed : seeds the random initial directions and fractions.
    device : ``"auto"`` (CUDA when present, else CPU), ``"cpu"`` or ``"cuda"``.
    min_fibre_fraction : a fibre is reported (peaks, metrics) when its volume fraction is at
        least this and at least ``relative_fibre_fraction`` × the largest fibre's (and, with
        ``fibre_selection="evidence"``, when the data support it; see ``prism/selection.py``).
    estimate_diffusivities : estimate D∥, D⊥ (and CSF/GM where the data allow) from the data
        once per volume before the fit (``prism/response.py``); False uses ``diffusivities``.
    diffusivity_source : where ``diffusivities`` came from; set by the estimate (a one-line
        summary). Non-empty means "already estimated for this volume": slab fits use the
        values as they are instead of estimating again.
    fibre_selection : ``"evidence"`` (default) keeps a fibre only when removing it raises the
        residual by more than the information criterion allows (per voxel, estimated σ);
        ``"threshold"`` uses the fraction thresholds alone.
    fibre_criterion : the evidence test's information criterion, ``"bic"`` (default), ``"hqc"``
        or ``"aic"`` (``prism/selection.py``: the price of one parameter).
    shared_f_in : one intra-axonal fraction f_in per voxel, shared by its fibres (default);
        False gives every fibre its own, as the PRISM paper does. A per-fibre f_in lets each
        fibre of a crossing take its own kernel shape (stick to zeppelin), which trades off
        against its direction and lets a spurious fibre absorb a single fibre's misfit. Measured
        on the tuning set: ``benchmarks/crossing.py --snr 30`` 1.99° → 1.91°; robustness cell
        random / 3shell / SNR 30 overall 5.05° → 4.68°, three-fibre 10.6° → 6.9°, FP1 1 → 0 %.
    evidence_pool_deg : on image volumes, the evidence test's criterion differences are
        averaged over the voxel and those of its 26 neighbours whose candidates have the same
        fibre directions within this angle, degrees, and a voxel keeps the larger of its own
        and the pooled fibre count (``prism/pooling.py``); 0 decides every voxel alone.
        Independent voxels (no spatial layout) are never pooled. 15: the lowest connectome
        error on the tuning geometry of ``benchmarks/connectivity.py`` (seed 100, two-sided
        pooling: 0.223 alone; 0.212 / 0.210 / 0.206 / 0.201 / 0.206 at 5 / 7.5 / 10 / 15 / 20°).
    """

    n_fibres: int = 3
    loss: str = "mse"
    n_iter: int = 300
    optimizer: str = "rprop"
    lr: float = 0.02
    tol: float = 1e-6
    patience: int = 20
    seed: int = 0
    device: str = "auto"
    min_fibre_fraction: float = 0.1
    relative_fibre_fraction: float = 0.15
    fast_kernel: bool = True
    estimate_diffusivities: bool = True
    diffusivity_source: str = ""
    fibre_selection: str = "evidence"
    fibre_criterion: str = "bic"
    shared_f_in: bool = True
    evidence_pool_deg: float = 15.0
    diffusivities: Diffusivities = field(default_factory=Diffusivities)
    priors: PriorWeights = field(default_factory=PriorWeights)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)

    def __post_init__(self):
        if self.n_fibres < 1:
            raise ValueError(f"n_fibres must be >= 1, got {self.n_fibres}")
        if self.loss not in ("mse", "nll"):
            raise ValueError(f"loss must be 'mse' or 'nll', got {self.loss!r}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.fibre_criterion not in ("bic", "hqc", "aic"):
            raise ValueError(f"fibre_criterion must be 'bic', 'hqc' or 'aic', got {self.fibre_criterion!r}")
        if self.fibre_selection not in ("evidence", "threshold"):
            raise ValueError(f"fibre_selection must be 'evidence' or 'threshold', got {self.fibre_selection!r}")
        if not 0.0 <= self.evidence_pool_deg < 90.0:
            raise ValueError(f"evidence_pool_deg must be in [0, 90), got {self.evidence_pool_deg!r}")
        if self.priors.neighbourhood not in (6, 26):
            raise ValueError("priors.neighbourhood must be 6 or 26")

    def to_dict(self) -> dict:
        """A JSON-serialisable dict of every setting."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PrismConfig":
        """Inverse of :meth:`to_dict` (unknown keys raise ``TypeError``)."""
        d = dict(d)
        sub = {"diffusivities": Diffusivities, "priors": PriorWeights,
               "calibration": CalibrationConfig}
        for key, typ in sub.items():
            if key in d and isinstance(d[key], dict):
                val = dict(d[key])
                if "bias_grid" in val:
                    val["bias_grid"] = tuple(val["bias_grid"])
                d[key] = typ(**val)
        return cls(**d)

    def replace(self, **changes) -> "PrismConfig":
        """A copy with ``changes`` applied (nested sections accept dicts of changes)."""
        for key in ("diffusivities", "priors", "calibration"):
            if isinstance(changes.get(key), dict):
                changes[key] = replace(getattr(self, key), **changes[key])
        return replace(self, **changes)

    @classmethod
    def for_volume(cls, **changes) -> "PrismConfig":
        """Defaults for image volumes (the paper's HCP run): all priors and calibration on."""
        base = cls(priors=PriorWeights(smoothness=1e-3, orphan_wm=1e-3, continuity=1e-3),
                   calibration=CalibrationConfig(bias_field=True, measurement_affine=True),
                   n_iter=100)
        return base.replace(**changes)


@dataclass(frozen=True)
class VolumeConfig:
    """How a whole volume is cut into slabs and run: the one home of these defaults.

    Every layer above (``prismflow-fit``, the BIDS app, recipes, benchmarks) passes ``None``
    for what the user did not set and lets :meth:`with_changes` keep these values.

    Parameters
    ----------
    slab_size : most slices per slab (the paper: 30); ``None``: as thick as the memory budget
        allows. The budget may make slabs thinner than this, never thicker.
    slab_overlap : slices shared by neighbouring slabs (exactly this many; default 5).
    axis : the axis along which slabs are cut (2: z).
    mem_gb : memory budget of the whole fit, GiB: every concurrently fitted slab plus the
        stitched result (default ``None``: half the free RAM, or 80 % of the free device
        memory on CUDA).
    workers : slabs fitted at the same time (CPU worker processes for ``prismflow-fit``;
        concurrent slab jobs in the BIDS app); ``None``: cores, slabs and budget permitting.
    warm_start : ``None`` (random start, the paper) or a method of
        :func:`prismflow.prism.warmstart.warm_start_init` (``"sd"``).
    """

    slab_size: int | None = 30
    slab_overlap: int = 5
    axis: int = 2
    mem_gb: float | None = None
    workers: int | None = None
    warm_start: str | None = None

    def __post_init__(self):
        if self.slab_size is not None and self.slab_size < 1:
            raise ValueError(f"slab_size must be >= 1 slice (or None: from memory), got "
                             f"{self.slab_size}")
        if self.slab_overlap < 0:
            raise ValueError(f"slab_overlap must be >= 0 slices, got {self.slab_overlap}")
        if self.slab_size is not None and self.slab_overlap >= self.slab_size:
            raise ValueError(f"slab_overlap ({self.slab_overlap}) must be smaller than "
                             f"slab_size ({self.slab_size})")
        if self.axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2, got {self.axis}")
        if self.mem_gb is not None and not self.mem_gb > 0:
            raise ValueError(f"mem_gb must be > 0 GiB, got {self.mem_gb}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.warm_start not in (None, "sd"):
            raise ValueError(f"warm_start must be None or 'sd', got {self.warm_start!r}")

    def with_changes(self, **changes) -> "VolumeConfig":
        """A copy with the changes that are not ``None`` applied (``None`` = keep the default)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        return asdict(self)


def config_field_names() -> list[str]:
    """Top-level field names of :class:`PrismConfig` (for CLIs and recipes)."""
    return [f.name for f in fields(PrismConfig)]
