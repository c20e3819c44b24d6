"""The plain functions behind the pydra tasks (reachable without pydra running anything)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prismflow.tasks.baselines import seeded_options
from prismflow.tasks.prism import prism_config, read_plan, volume_config


def test_random_baselines_get_the_run_seed_and_deterministic_ones_do_not():
    opts, used = seeded_options("force", {"library_size": 100}, 7)
    assert opts == {"library_size": 100, "seed": 7} and used == 7
    opts, used = seeded_options("odffp", {}, 0)         # seed 0 is a seed, not "unset"
    assert opts == {"seed": 0} and used == 0
    opts, used = seeded_options("dipy-csd", {"sh_order": 8}, 7)
    assert opts == {"sh_order": 8} and used is None


def test_volume_config_keeps_defaults_for_none_and_rejects_bad_sizes():
    from prismflow.prism import VolumeConfig

    assert volume_config({"slab_size": None, "slab_overlap": None}) == VolumeConfig()
    assert volume_config({"slab_size": 12, "mem_gb": 2.0}).slab_size == 12
    with pytest.raises(ValueError, match="slab_size"):
        volume_config({"slab_size": 0})
    with pytest.raises(ValueError, match="smaller"):
        volume_config({"slab_size": 5, "slab_overlap": 5})


def test_prism_config_is_the_volume_defaults_with_recipe_changes():
    from prismflow.prism import PrismConfig

    cfg = prism_config({"n_iter": 7, "seed": 3})
    assert cfg == PrismConfig.for_volume(n_iter=7, seed=3)
    assert cfg.priors.smoothness > 0                      # spatial priors on for volumes


def test_plan_round_trips_through_json(tmp_path):
    from prismflow.phantoms.crossing import make_crossing_phantom
    from prismflow.prism import PrismConfig, VolumeConfig, plan_volume

    ph = make_crossing_phantom(snr=30, n_per_angle=24, n_single=12, seed=0, angles_deg=(90,),
                               n_dirs=12, n_b0=2)
    dwi = ph.signal.reshape(3, 4, 3, -1)
    plan = plan_volume(dwi, ph.acquisition, None, PrismConfig(),
                       VolumeConfig(slab_size=2, slab_overlap=1, mem_gb=4.0))
    assert plan.device in ("cpu", "cuda:0") and plan.config["device"] == plan.device
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan.to_dict()))
    again = read_plan(path)
    assert again.prism_config() == plan.prism_config()
    assert again.to_dict() == json.loads(json.dumps(plan.to_dict()))
    assert [(s.start, s.stop) for s in again.slabs] == [(0, 2), (1, 3)]
    assert np.isfinite(again.noise_sigma) and again.noise_sigma > 0
