"""Container recipes parse and reference files that exist (images cannot be built here)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "containers" / "Dockerfile"
APPTAINER = REPO / "containers" / "prismflow.def"


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    out, buf = [], ""
    for line in path.read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        buf += line.rstrip("\\").rstrip() + " " if line.rstrip().endswith("\\") else line
        if not line.rstrip().endswith("\\"):
            instr, _, args = buf.strip().partition(" ")
            out.append((instr.upper(), args.strip()))
            buf = ""
    assert not buf, "dangling line continuation"
    return out


KNOWN = {"FROM", "ARG", "RUN", "COPY", "ENV", "LABEL", "USER", "WORKDIR", "ENTRYPOINT", "CMD",
         "ADD", "EXPOSE", "VOLUME", "HEALTHCHECK", "SHELL", "STOPSIGNAL", "ONBUILD"}


def test_dockerfile_parses_and_is_a_bids_app():
    ins = dockerfile_instructions(DOCKERFILE)
    assert {i for i, _ in ins} <= KNOWN
    names = [i for i, _ in ins]
    assert names[0] in ("ARG", "FROM") and "FROM" in names
    entry = [a for i, a in ins if i == "ENTRYPOINT"]
    assert len(entry) == 1 and json.loads(entry[0]) == ["prismflow"]
    users = [a for i, a in ins if i == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert names.index("USER") < names.index("ENTRYPOINT")
    runs = " ".join(a for i, a in ins if i == "RUN")
    assert "mrtrix3" in runs
    assert "TORCH_VARIANT" in runs               # CPU and CUDA variants from one file


def test_dockerfile_copies_existing_files():
    for instr, args in dockerfile_instructions(DOCKERFILE):
        if instr != "COPY":
            continue
        parts = [p for p in shlex.split(args) if not p.startswith("--")]
        literal = [s for s in parts[:-1] if not any(c in s for c in "*?[")]
        assert literal, f"COPY {args}: at least one source must be a plain path"
        for src in literal:
            assert (REPO / src).exists(), f"COPY source {src} missing from the repository"


def test_dockerignore_keeps_what_is_copied():
    ignore = (REPO / "containers" / "Dockerfile.dockerignore").read_text().split()
    for needed in ("!prismflow/**", "!workflows/**", "!pyproject.toml",
                   "!requirements/py311-linux.lock"):
        assert needed in ignore


def test_dockerfile_installs_from_the_lock():
    runs = " ".join(a for i, a in dockerfile_instructions(DOCKERFILE) if i == "RUN")
    assert "-r /opt/prismflow/src/requirements/py311-linux.lock" in runs


def test_apptainer_recipe_builds_from_the_docker_image():
    text = APPTAINER.read_text()
    header = dict(re.findall(r"^(Bootstrap|From):\s*(\S+)", text, flags=re.M))
    assert header["Bootstrap"] in ("docker", "docker-daemon")
    assert "prismflow" in header["From"]
    sections = re.findall(r"^%(\w+)", text, flags=re.M)
    assert {"runscript", "environment"} <= set(sections)
    runscript = text.split("%runscript", 1)[1].split("%", 1)[0]
    assert 'exec prismflow "$@"' in runscript


def test_hadolint_if_available():
    import shutil
    import subprocess

    exe = shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint not installed")
    proc = subprocess.run([exe, "--failure-threshold", "error", str(DOCKERFILE)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
