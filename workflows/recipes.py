"""Named recipes (YAML) that choose what the participant workflow runs, checked by a schema.

A recipe is a list of steps; each step names an *action* of the registry in
:mod:`prismflow.workflows.actions` and sets that action's parameters. Parameter names carry
their unit (``step_mm``, ``angle_deg``, ``slab_size_vox``); the schema below gives each one a
type, a default and a one-line help used by ``prismflow --help-recipes``.

Example (``workflows/recipes/default.yaml``)::

    name: default
    description: PRISM, dipy CSD beside it, tracking on both, connectome when labels exist
    steps:
      - {action: mask, method: median_otsu}
      - {action: prism, n_iter: 100}
      - {action: baseline, method: dipy-csd}
      - {action: tracking, sources: [prism, dipy-csd]}
      - {action: connectome}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from prismflow.io import InputError
from prismflow.prism.config import VolumeConfig

RECIPE_DIR = "recipes"


@dataclass(frozen=True)
class Param:
    """One recipe parameter: type, default, help (with unit), optional allowed values/range."""

    type: type | tuple
    default: object
    help: str
    choices: tuple = ()
    min: float | None = None


#: action -> parameter name -> Param.  Keys name their units.
SCHEMA: dict[str, dict[str, Param]] = {
    "mask": {
        "method": Param(str, "median_otsu", "brain mask from the mean b=0: median_otsu | all",
                        choices=("median_otsu", "all")),
        "median_radius_vox": Param(int, 4, "median filter radius, voxels", min=1),
        "numpass": Param(int, 4, "median filter passes", min=1),
    },
    "denoise": {},
    "degibbs": {},
    "prism": {
        "n_fibres": Param(int, 3, "fibres per voxel (K)", min=1),
        "n_iter": Param(int, 100, "optimiser iterations per slab", min=1),
        "loss": Param(str, "mse", "data term: mse | nll (Rician)", choices=("mse", "nll")),
        "slab_size_vox": Param(int, VolumeConfig.slab_size, "most slices per slab along z, "
                               "voxels (--slab-size wins)", min=1),
        "slab_overlap_vox": Param(int, VolumeConfig.slab_overlap, "slices shared by "
                                  "neighbouring slabs, voxels (--slab-overlap wins)", min=0),
        "warm_start": Param(str, "none", "initial directions: none (random, as the paper) | "
                            "sd (spherical-deconvolution peaks)", choices=("none", "sd")),
        "options": Param(dict, {}, "further PrismConfig fields (see prismflow-fit --help); "
                         "not seed or device: those are --seed and --device"),
    },
    "baseline": {
        "method": Param(str, None, "baseline name: dipy-csd, dipy-msmt, mrtrix-csd, "
                        "mrtrix-msmt, force, odffp"),
        "n_peaks": Param(int, 3, "at most this many peaks per voxel", min=1),
        "options": Param(dict, {}, "method options (see prismflow.baselines.get_method)"),
    },
    "tracking": {
        "sources": Param(list, ["prism"], "peaks sources to track: prism and/or baseline names"),
        "tracker": Param(str, "fixel", "fixel (prismflow: follows the best-aligned fixel, stops on "
                         "fibre fraction) | dipy (EuDX on the peaks) | mrtrix (tckgen FACT, .tck)",
                         choices=("fixel", "dipy", "mrtrix")),
        "step_mm": Param((int, float), 0.5, "step size, mm", min=0.01),
        "angle_deg": Param((int, float), 45.0, "largest turn per step, degrees", min=1),
        "seeds_per_voxel": Param(int, 1, "seeds per voxel with a peak", min=1),
        "min_length_mm": Param((int, float), 4.0, "shortest streamline kept, mm", min=0),
        "max_length_mm": Param((int, float), 250.0, "longest streamline, mm", min=1),
        "peak_threshold": Param((int, float), 0.1, "ignore peaks below this fraction of the "
                                "voxel's largest", min=0),
        "min_fraction": Param((int, float), 0.1, "fixel tracker: stop below this fibre fraction "
                              "(baseline amplitudes scaled to their 95th percentile)", min=0),
        "seed_fixel": Param(str, "fraction", "fixel tracker: the fixel a streamline starts along: "
                            "fraction (drawn in proportion to the seed voxel's fixel amplitudes, so "
                            "crossing bundles are seeded by their volume) | largest",
                            choices=("fraction", "largest")),
        "interpolation": Param(str, "trilinear", "fixel tracker: trilinear (best-aligned fixels of "
                               "the 8 surrounding voxels, weighted) | nearest (FACT)",
                               choices=("trilinear", "nearest")),
    },
    "connectome": {},
}


@dataclass(frozen=True)
class Step:
    """One validated step: the action's name and its complete parameters (defaults filled)."""

    action: str
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    """A validated recipe."""

    name: str
    description: str
    steps: tuple[Step, ...]
    source: str = ""

    def steps_of(self, action: str) -> list[Step]:
        return [s for s in self.steps if s.action == action]

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "source": self.source,
                "steps": [{"action": s.action, **s.params} for s in self.steps]}


def available_recipes() -> dict[str, Path]:
    """Recipes shipped with prismflow: name -> path."""
    root = resources.files("prismflow.workflows").joinpath(RECIPE_DIR)
    return {Path(p.name).stem: Path(str(p)) for p in root.iterdir() if p.name.endswith(".yaml")}


def _check_param(where: str, name: str, value, spec: Param):
    types = spec.type if isinstance(spec.type, tuple) else (spec.type,)
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        want = " or ".join(t.__name__ for t in types)
        raise InputError(f"{where}: {name} must be {want}, got {value!r}")
    if spec.choices and value not in spec.choices:
        raise InputError(f"{where}: {name} must be one of {', '.join(spec.choices)}, got {value!r}")
    if spec.min is not None and value < spec.min:
        raise InputError(f"{where}: {name} must be >= {spec.min}, got {value!r}")


def validate_recipe(data: dict, source: str = "<recipe>") -> Recipe:
    """Check ``data`` against :data:`SCHEMA`; fill defaults; check step order.

    Raises :class:`InputError` naming the file, the step and the offending key.
    """
    if not isinstance(data, dict) or "steps" not in data:
        raise InputError(f"{source}: a recipe is a mapping with 'name', 'description', 'steps'")
    unknown = set(data) - {"name", "description", "steps"}
    if unknown:
        raise InputError(f"{source}: unknown top-level key(s) {', '.join(sorted(unknown))}")
    steps = []
    seen_sources = set()
    for i, raw in enumerate(data["steps"] or []):
        where = f"{source}: step {i + 1}"
        if not isinstance(raw, dict) or "action" not in raw:
            raise InputError(f"{where}: each step is a mapping with an 'action' key")
        action = raw["action"]
        if action not in SCHEMA:
            raise InputError(f"{where}: unknown action {action!r}; known: {', '.join(SCHEMA)}")
        spec = SCHEMA[action]
        extra = set(raw) - set(spec) - {"action"}
        if extra:
            raise InputError(f"{where} ({action}): unknown key(s) {', '.join(sorted(extra))}; "
                             f"allowed: {', '.join(spec) or 'none'}")
        params = {}
        for name, p in spec.items():
            if name in raw:
                _check_param(f"{where} ({action})", name, raw[name], p)
                params[name] = raw[name]
            elif p.default is None:
                raise InputError(f"{where} ({action}): '{name}' is required ({p.help})")
            else:
                params[name] = p.default
        if action == "mask" and steps:
            raise InputError(f"{where}: 'mask' must be the first step (it also checks the input)")
        if action == "prism":
            run_level = sorted({"seed", "device"} & set(params["options"]))
            if run_level:
                raise InputError(f"{where} (prism): options {', '.join(run_level)} are run "
                                 "settings; pass them on the command line (--seed, --device)")
            seen_sources.add("prism")
        if action == "baseline":
            if "seed" in params["options"]:
                raise InputError(f"{where} (baseline): the seed is a run setting; pass --seed "
                                 "(it reaches every method that draws random numbers)")
            seen_sources.add(params["method"])
        if action == "tracking":
            missing = [s for s in params["sources"] if s not in seen_sources]
            if missing:
                raise InputError(f"{where} (tracking): source(s) {', '.join(missing)} are not "
                                 "produced by an earlier prism/baseline step")
        if action == "connectome" and not any(s.action == "tracking" for s in steps):
            raise InputError(f"{where}: connectome needs an earlier tracking step")
        steps.append(Step(action, params))
    return Recipe(name=str(data.get("name", Path(source).stem)),
                  description=str(data.get("description", "")), steps=tuple(steps),
                  source=source)


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A shipped recipe by name (``default``, ``fast``, …) or a YAML file by path."""
    shipped = available_recipes()
    path = shipped.get(str(name_or_path)) or Path(name_or_path)
    if not path.is_file():
        raise InputError(f"recipe {name_or_path!r} not found: not a shipped recipe "
                         f"({', '.join(sorted(shipped))}) nor a YAML file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise InputError(f"{path}: not valid YAML ({err})") from err
    return validate_recipe(data, source=str(path))


def describe_recipes() -> str:
    """Text for ``--help-recipes``: each shipped recipe and the schema of every action."""
    lines = ["Shipped recipes:"]
    for name, path in sorted(available_recipes().items()):
        r = load_recipe(path)
        lines.append(f"  {name:10s} {r.description}")
        lines.append("             steps: " + ", ".join(s.action for s in r.steps))
    lines.append("")
    lines.append("Actions and their parameters (type, default; units in the names):")
    for action, spec in SCHEMA.items():
        lines.append(f"  {action}")
        for name, p in spec.items():
            t = "/".join(x.__name__ for x in (p.type if isinstance(p.type, tuple) else (p.type,)))
            d = "required" if p.default is None else f"default: {p.default!r}"
            lines.append(f"      {name:18s} {t:10s} {p.help} ({d})")
    return "\n".join(lines)
