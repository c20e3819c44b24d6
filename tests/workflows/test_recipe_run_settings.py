"""Run settings (seed, device) come from the command line; a recipe that sets them is refused
rather than silently winning over ``--seed``/``--device``."""

import pytest

from prismflow.cli import import_workflows
from prismflow.io import InputError

import_workflows()
from prismflow.workflows.recipes import validate_recipe  # noqa: E402


@pytest.mark.parametrize("step", [
    {"action": "prism", "options": {"seed": 3}},
    {"action": "prism", "options": {"device": "cuda"}},
    {"action": "baseline", "method": "force", "options": {"seed": 3}},
])
def test_recipe_cannot_set_run_settings(step):
    with pytest.raises(InputError, match="--seed|--device"):
        validate_recipe({"name": "x", "steps": [{"action": "mask"}, step]}, source="x.yaml")


def test_recipe_slab_defaults_are_the_volume_config_defaults():
    from prismflow.prism import VolumeConfig

    rec = validate_recipe({"name": "x", "steps": [{"action": "prism"}]})
    p = rec.steps[0].params
    assert (p["slab_size_vox"], p["slab_overlap_vox"]) == (VolumeConfig().slab_size,
                                                          VolumeConfig().slab_overlap)
