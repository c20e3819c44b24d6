"""Recipes are validated data: schema with units in keys, registry dispatch, clear errors."""

from __future__ import annotations

import pytest

from prismflow.io import InputError
from prismflow.workflows.actions import ACTIONS
from prismflow.workflows.recipes import (
    SCHEMA, available_recipes, describe_recipes, load_recipe, validate_recipe)

UNIT_SUFFIXES = ("_mm", "_deg", "_vox", "_s")
# dimensionless by nature: counts and fractions (0–1)
UNITLESS = {"n_fibres", "n_iter", "n_peaks", "numpass", "seeds_per_voxel", "peak_threshold",
            "min_fraction"}


def test_shipped_recipes_validate():
    names = set(available_recipes())
    assert {"default", "fast", "prism-only", "full"} <= names
    for name in names:
        rec = load_recipe(name)
        assert rec.steps and rec.description


def test_every_action_has_a_builder_and_numeric_keys_carry_units():
    assert set(SCHEMA) == set(ACTIONS)
    for action, spec in SCHEMA.items():
        for key, p in spec.items():
            types = p.type if isinstance(p.type, tuple) else (p.type,)
            if float in types or int in types:
                assert key.endswith(UNIT_SUFFIXES) or key in UNITLESS, (action, key)


def _rec(*steps):
    return {"name": "t", "description": "d", "steps": list(steps)}


@pytest.mark.parametrize("steps, match", [
    ([{"action": "mask", "method": "all"}, {"action": "prism", "n_iters": 3}], "unknown key.*n_iters"),
    ([{"action": "prism", "n_iter": "many"}], "n_iter must be int"),
    ([{"action": "prism", "n_iter": 0}], "n_iter must be >= 1"),
    ([{"action": "baseline"}], "'method' is required"),
    ([{"action": "prism"}, {"action": "tracking", "sources": ["dipy-csd"]}], "dipy-csd are not produced"),
    ([{"action": "prism"}, {"action": "connectome"}], "needs an earlier tracking"),
    ([{"action": "prism"}, {"action": "mask"}], "must be the first step"),
    ([{"action": "fly"}], "unknown action 'fly'"),
    ([{"action": "tracking", "sources": ["prism"], "angle_deg": True}], "angle_deg must be"),
])
def test_invalid_recipes_name_the_problem(steps, match):
    with pytest.raises(InputError, match=match):
        validate_recipe(_rec(*steps), source="my.yaml")


def test_defaults_filled_and_recipe_from_file(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("name: r\ndescription: x\nsteps:\n  - action: prism\n    n_iter: 5\n")
    rec = load_recipe(p)
    (step,) = rec.steps
    assert step.params["n_iter"] == 5 and step.params["slab_size_vox"] == 30
    with pytest.raises(InputError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")
    p.write_text("steps: [\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_recipe(p)


def test_describe_lists_units():
    text = describe_recipes()
    assert "step_mm" in text and "angle_deg" in text and "default:" in text
