"""ReMiDi mesh reconstruction (Algorithm 1): optimise the SAE latent so the simulated signal
matches a measured one.

``z = encoder(straight mesh)``; repeat: ``mesh = decoder(z)`` → ``Ŝ = simulate(mesh)`` →
``loss = k · ‖Ŝ − S_ref‖²`` → step on z. Signals are b0-normalised, shape (n_seq, n_b, n_dir).
The mesh with the lowest loss is returned (warm restarts make the last iterate noisy).

Stopping rule: stop after ``n_iter`` iterations, or when the loss falls below ``loss_tol``, or when
the best loss has not improved by more than ``rel_tol`` (relative) for ``patience`` iterations.

References
----------
Khole et al., "ReMiDi: Reconstruction of Microstructure Using a Differentiable Diffusion MRI
Simulator", section 3.2, Algorithm 1.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .protocol import Protocol

logger = logging.getLogger(__name__)

__all__ = [
    "ReconstructionConfig",
    "ReconstructionResult",
    "MeshReconstruction",
    "reconstruct",
    "reconstruct_from_signal",
    "reconstruct_files",
    "save_reconstruction",
    "load_reference_mesh",
    "simulate_vertices",
    "OUTPUT_NAMES",
]

OUTPUT_NAMES = {"mesh": "mesh.vtu", "json": "reconstruction.json"}
"""Files written by :func:`save_reconstruction` into its output folder."""


@dataclass(frozen=True)
class ReconstructionConfig:
    """Settings of the latent optimisation (defaults: the ReMiDi authors' code).

    Parameters
    ----------
    n_iter : int — maximum iterations (paper: 750 bend/bead, 1000 fan).
    lr : float — learning rate on the latent (paper code: 0.25).
    optimizer : {"adamw", "adam", "sgd"}
    weight_decay : float — AdamW weight decay on the latent.
    scheduler : {"cosine_warm_restarts", "cosine", "none"}
    restart_period : int — iterations of the first cosine cycle (T_0).
    restart_mult : int — cycle-length multiplier after each restart (T_mult).
    min_lr_ratio : float — eta_min / lr.
    grad_clip : float or None — max gradient norm on z (paper code: 1).
    loss_scale : float — k in ``k·‖Ŝ − S‖²`` (paper code: 100).
    reduction : {"sum", "mean"} — over measurements.
    loss_tol : float — stop when the loss is below this.
    rel_tol, patience : stop when the best loss improved by less than ``rel_tol`` (relative)
        over the last ``patience`` iterations.
    n_eig : int or None — fixed eigenpair count for the simulator (None: the protocol's, else the
        count the straight start mesh gets from the simulator's default cut-off, then kept fixed).
    quality_weight : float — weight of the element-quality barrier
        ``w·Σ_e max(0, ρ_min − V_e/V_e⁰)²`` on the signed volumes V_e relative to the start
        mesh's V_e⁰ (0 = off); it keeps decoded meshes free of inverted or flat tetrahedra.
    quality_min_ratio : float — ρ_min, the volume ratio below which the barrier acts.
    precision : {"double", "single"} — arithmetic of the simulator's propagation in the small
        eigenbasis (the eigenproblem is always float64); "single" is ≈ 2× faster with ≈ 1e-6
        relative signal error, far below the FEM's own error (validation table ≥ 1e-4).
    device : str — "cpu", "cuda", "cuda:N" or "auto" (cuda when available): where the
        auto-encoder and latent live. The simulator's eigenproblem runs on the CPU in float64
        either way (scipy/LAPACK); vertices cross over once per iteration.
    """

    n_iter: int = 750
    lr: float = 0.25
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    scheduler: str = "cosine_warm_restarts"
    restart_period: int = 100
    restart_mult: int = 1
    min_lr_ratio: float = 0.0
    grad_clip: float | None = 1.0
    loss_scale: float = 100.0
    reduction: str = "sum"
    loss_tol: float = 0.0
    rel_tol: float = 1e-4
    patience: int = 150
    n_eig: int | None = None
    quality_weight: float = 0.0
    quality_min_ratio: float = 0.2
    precision: str = "double"
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.optimizer not in ("adamw", "adam", "sgd"):
            raise ValueError(f"optimizer must be adamw, adam or sgd, got {self.optimizer!r}")
        if self.scheduler not in ("cosine_warm_restarts", "cosine", "none"):
            raise ValueError(f"scheduler must be cosine_warm_restarts, cosine or none, "
                             f"got {self.scheduler!r}")
        if self.reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be sum or mean, got {self.reduction!r}")
        if self.n_iter < 1 or not self.lr > 0:
            raise ValueError(f"need n_iter >= 1 and lr > 0, got {self.n_iter}, {self.lr}")
        if self.restart_period < 1 or self.restart_mult < 1 or self.patience < 1:
            raise ValueError(f"restart_period, restart_mult and patience must be >= 1, got "
                             f"{self.restart_period}, {self.restart_mult}, {self.patience}")
        if self.quality_weight < 0 or not 0 < self.quality_min_ratio < 1:
            raise ValueError(f"need quality_weight >= 0 and 0 < quality_min_ratio < 1, got "
                             f"{self.quality_weight}, {self.quality_min_ratio}")
        if self.precision not in ("double", "single"):
            raise ValueError(f"precision must be double or single, got {self.precision!r}")
        resolve_device(self.device)


def resolve_device(device: str) -> torch.device:
    """The torch device ``device`` names ("auto": cuda when available, else cpu)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r}: use cpu, cuda, cuda:N or auto") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but torch has no CUDA here; use cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: only cpu and cuda are supported")
    return dev


@dataclass
class ReconstructionResult:
    """Output of :func:`reconstruct`.

    Attributes
    ----------
    vertices : Tensor, shape (V, 3), float64 — best mesh (lowest loss), µm.
    tetrahedra : Tensor, shape (T, 4) — connectivity.
    latent : Tensor, shape (latent_dim,) — its latent.
    loss : list of float — loss per iteration (before the step).
    chamfer : list of float or None — Chamfer distance (µm) to the reference per iteration.
    modified_chamfer : float or None — modified Chamfer (µm) of the best mesh to the reference.
    best_iteration : int — 0-based index of the returned mesh.
    n_iter : int — iterations run.
    stopped : str — why it stopped ("max_iter", "loss_tol", "plateau").
    seconds : float — wall time.
    n_eig : int — eigenpairs used by the simulator.
    n_inverted : int — tetrahedra of the returned mesh with signed volume ≤ 0.
    device : str — the device the latent optimisation ran on (resolved, e.g. "cpu").
    """

    vertices: torch.Tensor
    tetrahedra: torch.Tensor
    latent: torch.Tensor
    loss: list[float]
    chamfer: list[float] | None
    modified_chamfer: float | None
    best_iteration: int
    n_iter: int
    stopped: str
    seconds: float
    n_eig: int | None
    config: ReconstructionConfig = field(default_factory=ReconstructionConfig)
    template: object = field(default=None, repr=False)
    n_inverted: int = 0
    device: str = "cpu"

    def mesh(self):
        """The reconstructed mesh as a simulator Mesh (the template's connectivity)."""
        return _with_vertices(self.template, self.vertices)

    def summary(self) -> dict:
        """JSON-ready summary (no tensors except small lists)."""
        return {
            "final_loss": self.loss[self.best_iteration],
            "initial_loss": self.loss[0],
            "best_iteration": self.best_iteration,
            "n_iter": self.n_iter,
            "stopped": self.stopped,
            "seconds": self.seconds,
            "n_eig": self.n_eig,
            "n_inverted_tetrahedra": self.n_inverted,
            "device": self.device,
            "modified_chamfer_um": self.modified_chamfer,
            "chamfer_um_final": None if self.chamfer is None else self.chamfer[self.best_iteration],
            "chamfer_um_initial": None if self.chamfer is None else self.chamfer[0],
            "config": dataclasses.asdict(self.config),
        }


def _with_vertices(mesh, vertices: torch.Tensor):
    """The simulator mesh with new vertex positions and the same connectivity."""
    if hasattr(mesh, "with_vertices"):
        return mesh.with_vertices(vertices)
    if dataclasses.is_dataclass(mesh):
        return dataclasses.replace(mesh, vertices=vertices)
    return type(mesh)(vertices, mesh.tetrahedra)


def simulate_vertices(
    template,
    vertices: torch.Tensor,
    protocol: Protocol,
    *,
    n_eig: int | None = None,
    precision: str = "double",
) -> torch.Tensor:
    """Simulated b0-normalised signal of ``template``'s connectivity with new vertex positions.

    Parameters
    ----------
    template : Mesh — connectivity (and any compartment data) of the simulator mesh.
    vertices : Tensor, shape (V, 3), µm — differentiable.
    protocol : Protocol
    n_eig : int, optional — fixed eigenpair count (overrides the protocol's).
    precision : {"double", "single"} — propagation arithmetic (see ReconstructionConfig).

    Returns
    -------
    Tensor, shape (n_seq, n_b, n_dir), float64.
    """
    from ..simulator import simulate_signal

    mesh = _with_vertices(template, vertices.to(torch.float64))
    return simulate_signal(
        mesh, protocol.pgse(), protocol.bvalue_tensor(), protocol.direction_tensor(),
        diffusivity=protocol.diffusivity,
        n_eig=n_eig if n_eig is not None else protocol.n_eig,
        length_scale_um=protocol.length_scale_um, precision=precision,
    )


def _scheduler(opt, cfg: ReconstructionConfig):
    eta_min = cfg.lr * cfg.min_lr_ratio
    if cfg.scheduler == "cosine_warm_restarts":
        return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            opt, T_0=cfg.restart_period, T_mult=cfg.restart_mult, eta_min=eta_min)
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.n_iter, eta_min=eta_min)
    return None


def _optimizer(params, cfg: ReconstructionConfig):
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9)


def reconstruct(
    signal: torch.Tensor,
    protocol: Protocol,
    sae,
    *,
    template=None,
    init_vertices: torch.Tensor | None = None,
    config: ReconstructionConfig | None = None,
    reference: torch.Tensor | None = None,
    callback: Callable[[int, float, torch.Tensor], None] | None = None,
    simulate: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> ReconstructionResult:
    """Reconstruct a mesh from a b0-normalised signal by optimising the SAE latent.

    Parameters
    ----------
    signal : Tensor, shape (n_seq, n_b, n_dir) — reference signal S_ref, normalised by b = 0.
    protocol : Protocol — the acquisition that produced ``signal``.
    sae : SpectralAutoEncoder — trained on the mesh family (see
        :func:`prismflow.remidi.reconstruction.sae.load_sae`).
    template : Mesh, optional — connectivity of the simulator mesh (default
        the family template whose vertex count matches the SAE, see
        :func:`prismflow.remidi.reconstruction.sae.template_for`).
    init_vertices : Tensor, shape (V, 3), optional — start mesh, µm (default: the template's
        straight cylinder).
    config : ReconstructionConfig, optional.
    reference : Tensor, shape (V', 3), optional — true vertices; enables per-iteration Chamfer.
    callback : callable(iteration, loss, vertices), optional — called every iteration.
    simulate : callable(vertices) -> signal, optional — replaces the simulator (tests).

    Returns
    -------
    ReconstructionResult
    """
    from ...metrics.chamfer import chamfer_distance, modified_chamfer_distance

    cfg = config or ReconstructionConfig()
    if template is None:
        from .sae import template_for

        template = template_for(sae)
    signal = torch.as_tensor(signal, dtype=torch.float64)
    if tuple(signal.shape) != protocol.shape:
        raise ValueError(f"signal has shape {tuple(signal.shape)} but the protocol expects "
                         f"(n_seq, n_b, n_dir) = {protocol.shape}")
    start = (template.vertices if init_vertices is None else init_vertices).detach()
    n_eig = cfg.n_eig if cfg.n_eig is not None else protocol.n_eig
    if simulate is None:
        if n_eig is None:  # fix the basis size from the start mesh so it cannot jump
            with torch.no_grad():
                n_eig = _default_n_eig(template, start, protocol)

        def simulate(v: torch.Tensor) -> torch.Tensor:
            return simulate_vertices(template, v, protocol, n_eig=n_eig,
                                     precision=cfg.precision)

    dev = resolve_device(cfg.device)
    sae = sae.to(dev)
    for p in sae.parameters():
        p.requires_grad_(False)
    sae.eval()
    tets = template.tetrahedra
    with torch.no_grad():
        z0 = sae.encode_mesh(start.to(dev, torch.float32))
        vol0 = _signed_volumes(start.to(torch.float64), tets).abs().clamp_min(1e-12)
    z = z0.clone().requires_grad_(True)
    opt = _optimizer([z], cfg)
    sched = _scheduler(opt, cfg)
    losses: list[float] = []
    chamfers: list[float] | None = [] if reference is not None else None
    best = (math.inf, 0, z0.clone(), None)
    stopped = "max_iter"
    t0 = time.perf_counter()
    last_improvement, best_at_check = 0, math.inf
    for it in range(cfg.n_iter):
        opt.zero_grad()
        verts = sae.decode_mesh(z).to("cpu", torch.float64)
        pred = simulate(verts)
        sq = (pred - signal) ** 2
        loss = cfg.loss_scale * (sq.sum() if cfg.reduction == "sum" else sq.mean())
        if cfg.quality_weight > 0:
            ratio = _signed_volumes(verts, tets) / vol0
            barrier = torch.relu(cfg.quality_min_ratio - ratio).square().sum()
            loss = loss + cfg.quality_weight * barrier
        loss.backward()
        lval = float(loss.detach())
        if not math.isfinite(lval):
            stopped = "non_finite"
            logger.warning("non-finite loss at iteration %d; keeping the best mesh", it)
            break
        losses.append(lval)
        if chamfers is not None:
            chamfers.append(float(chamfer_distance(verts.detach(), reference.to(torch.float64))))
        if lval < best[0]:
            best = (lval, it, z.detach().clone(), verts.detach().clone())
        if callback is not None:
            callback(it, lval, verts.detach())
        if lval <= cfg.loss_tol:
            stopped = "loss_tol"
            break
        if best[0] < best_at_check * (1.0 - cfg.rel_tol):
            best_at_check, last_improvement = best[0], it
        elif it - last_improvement >= cfg.patience:
            stopped = "plateau"
            break
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_([z], cfg.grad_clip)
        opt.step()
        if sched is not None:
            sched.step()
    seconds = time.perf_counter() - t0
    _, best_it, best_z, best_v = best
    if best_v is None:
        with torch.no_grad():
            best_v = sae.decode_mesh(best_z).to("cpu", torch.float64)
    n_inv = int((_signed_volumes(best_v, tets) <= 0).sum())
    mod = None
    if reference is not None:
        mod = float(modified_chamfer_distance(best_v, reference.to(torch.float64)))
    logger.info("reconstruction: %d iterations (%s), loss %.4g -> %.4g, %.1f s", len(losses),
                stopped, losses[0] if losses else math.nan, best[0], seconds)
    return ReconstructionResult(
        vertices=best_v, tetrahedra=template.tetrahedra, latent=best_z, loss=losses,
        chamfer=chamfers, modified_chamfer=mod, best_iteration=best_it, n_iter=len(losses),
        stopped=stopped, seconds=seconds, n_eig=n_eig, config=cfg, template=template,
        n_inverted=n_inv, device=str(dev))


def _signed_volumes(vertices: torch.Tensor, tetrahedra: torch.Tensor) -> torch.Tensor:
    """Signed tetrahedron volumes (T,), µm³ (positive = the template's orientation)."""
    p = vertices[tetrahedra]
    return torch.linalg.det(p[:, 1:] - p[:, :1]) / 6.0


def _default_n_eig(template, start: torch.Tensor, protocol: Protocol) -> int | None:
    """Eigenpair count the simulator picks for the start mesh (then frozen)."""
    try:
        from ..simulator import eigen_count  # optional helper of the simulator
    except ImportError:
        return None
    mesh = _with_vertices(template, start.to(torch.float64))
    return int(eigen_count(mesh, diffusivity=protocol.diffusivity,
                           length_scale_um=protocol.length_scale_um))


class MeshReconstruction:
    """ReMiDi as a model: ``MeshReconstruction(protocol).fit(signal) -> ReconstructionResult``.

    Parameters
    ----------
    protocol : Protocol
    sae_kind : {"bend", "bead", "fan", "all"} — which trained SAE to use (ignored if ``sae``).
    sae : SpectralAutoEncoder, optional — an explicit trained SAE.
    config : ReconstructionConfig, optional.
    """

    def __init__(self, protocol: Protocol, *, sae_kind: str = "bend", sae=None,
                 config: ReconstructionConfig | None = None) -> None:
        from .weights import load_sae

        self.protocol = protocol
        self.config = config or ReconstructionConfig()
        self.sae = sae if sae is not None else load_sae(sae_kind)

    def fit(self, signal: torch.Tensor, *, reference: torch.Tensor | None = None,
            init_vertices: torch.Tensor | None = None) -> ReconstructionResult:
        """Reconstruct from ``signal`` (n_seq, n_b, n_dir); see :func:`reconstruct`."""
        return reconstruct(signal, self.protocol, self.sae, config=self.config,
                           reference=reference, init_vertices=init_vertices)

    def predict(self, vertices: torch.Tensor) -> torch.Tensor:
        """Simulated b0-normalised signal (n_seq, n_b, n_dir) of a mesh with these vertices."""
        from .sae import template_for

        with torch.no_grad():
            return simulate_vertices(template_for(self.sae), vertices, self.protocol,
                                     n_eig=self.config.n_eig)


def reconstruct_from_signal(
    signal,
    protocol: Protocol | dict | str,
    *,
    sae_kind: str = "bend",
    config: ReconstructionConfig | None = None,
    reference: torch.Tensor | None = None,
) -> ReconstructionResult:
    """One-call reconstruction for tasks and the CLI.

    Parameters
    ----------
    signal : array-like — b0-normalised signal, shape (n_seq, n_b, n_dir) or flat in that order.
    protocol : Protocol, dict (JSON structure) or path to a protocol JSON file.
    sae_kind : {"bend", "bead", "fan", "all"} — SAE prior (weights shipped/cached/trained).
    config : ReconstructionConfig, optional.
    reference : Tensor (V, 3), optional — true mesh, for Chamfer curves.

    Returns
    -------
    ReconstructionResult
    """
    from ...io.errors import InputError

    if isinstance(protocol, dict):
        protocol = Protocol.from_dict(protocol)
    elif not isinstance(protocol, Protocol):
        protocol = Protocol.load(protocol)
    sig = torch.as_tensor(signal, dtype=torch.float64)
    n = math.prod(protocol.shape)
    if sig.numel() != n:
        raise InputError(f"signal has {sig.numel()} values but the protocol has "
                         f"{protocol.shape[0]} sequences × {protocol.shape[1]} b-values × "
                         f"{protocol.shape[2]} directions = {n}")
    sig = sig.reshape(protocol.shape)
    if not torch.isfinite(sig).all():
        raise InputError("signal contains NaN or infinite values")
    return MeshReconstruction(protocol, sae_kind=sae_kind, config=config).fit(sig,
                                                                             reference=reference)


# ---------------------------------------------------------------------------------------------
# Files in, files out (the CLI and the pydra task call these)


def load_reference_mesh(path: str | os.PathLike) -> torch.Tensor:
    """Vertices (V, 3), µm, of a mesh file readable by meshio; InputError naming the file."""
    import meshio

    from ...io.errors import InputError

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: reference mesh not found")
    try:
        mesh = meshio.read(path)
    except Exception as err:  # meshio raises many types for unreadable files
        raise InputError(f"{path}: cannot read the reference mesh ({err})") from err
    return torch.as_tensor(np.asarray(mesh.points, dtype=np.float64))


def _write_vtu_atomic(path: Path, vertices: np.ndarray, tetrahedra: np.ndarray) -> None:
    import meshio

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".mesh-", suffix=".vtu")
    os.close(fd)
    try:
        meshio.write(tmp, meshio.Mesh(vertices, [("tetra", tetrahedra)]), file_format="vtu")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600 files
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_reconstruction(result: ReconstructionResult, out_dir: str | os.PathLike, *,
                        protocol: Protocol, extra: dict | None = None) -> dict[str, Path]:
    """Write ``mesh.vtu`` (µm) and ``reconstruction.json`` atomically into ``out_dir``.

    Returns
    -------
    dict — ``{"mesh": Path, "json": Path}``.
    """
    from ...io import save_json_atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / v for k, v in OUTPUT_NAMES.items()}
    tets = torch.as_tensor(result.tetrahedra).detach().cpu().numpy().astype(np.int64)
    _write_vtu_atomic(paths["mesh"], result.vertices.detach().cpu().numpy().astype(np.float64),
                      tets)
    summary = result.summary()
    summary.update({
        "protocol": protocol.to_dict(),
        "loss_curve": result.loss,
        "chamfer_curve_um": result.chamfer,
        "latent": result.latent.tolist(),
        "units": {"vertices": "um", "bvalues": "s/mm^2", "times": "ms",
                  "diffusivity": "mm^2/s", "chamfer": "um"},
        "torch": str(torch.__version__),
    })
    summary.update(extra or {})
    save_json_atomic(summary, paths["json"])
    return paths


def reconstruct_files(
    signal_path: str | os.PathLike,
    protocol_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    prior: str = "bend",
    config: ReconstructionConfig | None = None,
    reference_path: str | os.PathLike | None = None,
    force: bool = False,
) -> dict[str, Path]:
    """Read a signal and a protocol file, reconstruct, write the outputs.

    Parameters
    ----------
    signal_path : path — b0-normalised signal (see :func:`prismflow.remidi.reconstruction.protocol.load_signal`).
    protocol_path : path — protocol JSON (see :mod:`prismflow.remidi.reconstruction.protocol`).
    out_dir : path — folder for ``mesh.vtu`` and ``reconstruction.json`` (created).
    prior : {"bend", "bead", "fan", "all"} — SAE deformation family.
    config : ReconstructionConfig, optional.
    reference_path : path, optional — true mesh for Chamfer curves.
    force : bool — overwrite existing outputs (otherwise InputError).

    Returns
    -------
    dict — ``{"mesh": Path, "json": Path}``.
    """
    from ...io.errors import InputError
    from .protocol import load_signal

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: output path exists and is not a folder")
    existing = [n for n in OUTPUT_NAMES.values() if (out / n).exists()]
    if existing and not force:
        raise InputError(f"{out}: outputs exist ({', '.join(existing)}); use --force to overwrite")
    protocol = Protocol.load(protocol_path)
    signal = load_signal(signal_path)
    reference = load_reference_mesh(reference_path) if reference_path else None
    try:
        result = reconstruct_from_signal(signal, protocol, sae_kind=prior, config=config,
                                         reference=reference)
    except InputError as err:
        raise InputError(f"{os.fspath(signal_path)}: {err}") from err
    return save_reconstruction(result, out, protocol=protocol, extra={
        "signal": os.path.abspath(signal_path), "prior": prior,
        "reference": None if reference_path is None else os.path.abspath(reference_path)})
