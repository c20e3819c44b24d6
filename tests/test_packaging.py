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
