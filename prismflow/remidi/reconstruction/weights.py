"""Trained auto-encoder weights: shipped with the package, else the user cache, else trained
on first use (a few CPU minutes) and cached.

Kept apart from the model (:mod:`.sae`) and the training (:mod:`.sae_training`) because it uses
both. Units: µm.
"""

from __future__ import annotations

import logging

from . import sae as sae_mod
from .sae import (SAE_KINDS, SpectralAutoEncoder, _load_file, sae_cache_dir, save_sae,
                  template_mesh)
from .sae_training import SAETrainConfig, train_from_config

logger = logging.getLogger(__name__)

__all__ = ["load_sae"]


def load_sae(
    kind: str = "bend",
    *,
    tetrahedra=None,
    n_vertices: int | None = None,
    train_if_missing: bool = True,
    config: SAETrainConfig | None = None,
) -> SpectralAutoEncoder:
    """Trained SAE for a deformation family: shipped, else cached, else trained and cached.

    Parameters
    ----------
    kind : {"bend", "bead", "fan", "all"}
    tetrahedra, n_vertices : connectivity the weights must fit (default: the default
        :func:`template_mesh` of ``kind``); weights whose stored basis is not an eigenbasis of this
        connectivity's Laplacian are ignored.
    train_if_missing : bool — train (minutes on CPU) and cache when nothing fits.
    config : SAETrainConfig, optional — training settings when training.

    Returns
    -------
    SpectralAutoEncoder (eval mode, float32).
    """
    if kind not in SAE_KINDS:
        raise ValueError(f"SAE kind must be one of {SAE_KINDS}, got {kind!r}")
    if tetrahedra is None:
        mesh = template_mesh(kind)
        tetrahedra, n_vertices = mesh.tetrahedra, mesh.vertices.shape[0]
    name = f"sae-{kind}.pt"
    for folder in (sae_mod._DATA_DIR, sae_cache_dir()):
        path = folder / name
        if path.is_file():
            model = _load_file(path)
            if model.matches_mesh(tetrahedra, n_vertices):
                logger.info("SAE weights: %s", path)
                return model
            logger.warning("ignoring %s: its basis does not fit this mesh connectivity", path)
    if not train_if_missing:
        raise FileNotFoundError(f"no SAE weights {name} for this mesh (searched "
                                f"{sae_mod._DATA_DIR}, "
                                f"{sae_cache_dir()})")
    cfg = config or SAETrainConfig(kind=kind)
    logger.warning("training the %s SAE (first use; cached afterwards)", kind)
    model, _ = train_from_config(cfg)
    if not model.matches_mesh(tetrahedra, n_vertices):
        raise ValueError("SAE training uses the family's template_mesh(); this connectivity "
                         "differs — train on your own meshes with train_sae()")
    try:
        save_sae(model, sae_cache_dir() / name, meta=model.meta)
    except OSError as err:  # read-only home: keep the in-memory model
        logger.warning("could not cache SAE weights: %s", err)
    return model
