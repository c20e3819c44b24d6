"""Every package directory is declared in pyproject.toml (explicit list; see its comment)."""

import pathlib
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_every_package_directory_is_listed():
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "prismflow").rglob("__init__.py")}
    found |= {"prismflow.workflows." + ".".join(p.parent.relative_to(ROOT / "workflows").parts)
              for p in (ROOT / "workflows").rglob("__init__.py") if p.parent != ROOT / "workflows"}
    found.add("prismflow.workflows")
    assert found == declared


def _lock_pins() -> dict[str, str]:
    from packaging.utils import canonicalize_name

    pins = {}
    for line in (ROOT / "requirements" / "py311-linux.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonicalize_name(name.split("[")[0])] = version.strip()
    return pins


def test_lock_pins_every_declared_dependency_within_its_range():
    """The lock (what CI installs) must satisfy pyproject.toml's ranges (what users get), so the
    two install paths of the README describe the same package. torch is left to the user."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"]) + list(project["optional-dependencies"]["test"])
    pins = _lock_pins()
    for spec in declared:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        if name == "torch":
            assert name not in pins, "torch is installed by the user's choice, not by the lock"
            continue
        assert name in pins, f"{req.name} is declared in pyproject.toml but missing from the lock: run requirements/update-lock.sh"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"lock pins {req.name}=={pins[name]} outside pyproject.toml's {req.specifier}: "
            "run requirements/update-lock.sh")
