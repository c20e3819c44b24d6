"""The README's default path in the default suite, and recovery from failed and killed runs.

One uninterrupted run (module fixture: the bundled synthetic example, the default recipe, the
``cf`` worker, participant then group level) is the reference; the recovery tests rerun one
participant after an injected failure and after ``kill -9`` with the same work directory and
compare its derivatives with the reference's, file by file.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prismflow.cli.run import main
from prismflow.engine.cache import job_state
from prismflow.engine.faults import ENV

REPO = Path(__file__).resolve().parents[2]
EXPECTED = REPO / "tests" / "data" / "synthetic_outputs.txt"
#: Sidecar keys that record the run, not the result: how long something took, and the memory
#: that was free when the slabs were planned. The only differences allowed.
RUN_KEYS = re.compile(r"seconds|time|mem_gb", re.IGNORECASE)


def output_list(out: Path) -> list[str]:
    """Relative paths of every file under ``out``, run ids replaced by ``<run_id>``."""
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    return [re.sub(r"/log/[^/]+/", "/log/<run_id>/", f) for f in files]


def _untimed(obj):
    if isinstance(obj, dict):
        return {k: _untimed(v) for k, v in obj.items() if not RUN_KEYS.search(k)}
    if isinstance(obj, list):
        return [_untimed(v) for v in obj]
    return obj


def assert_same_derivatives(ref: Path, got: Path) -> int:
    """Every derivative of ``ref`` exists in ``got`` with the same bytes (JSON: same content
    but for timings). Returns the number of files compared."""
    files = [p for p in ref.rglob("*") if p.is_file() and "log" not in p.parts
             and p.suffix != ".html"]
    assert files
    bad = []
    for f in files:
        other = got / f.relative_to(ref)
        if not other.is_file():
            bad.append(f"missing after the rerun: {other}")
        elif f.suffix == ".json":
            if _untimed(json.loads(f.read_text())) != _untimed(json.loads(other.read_text())):
                bad.append(f"JSON differs: {other}")
        elif f.read_bytes() != other.read_bytes():
            bad.append(f"bytes differ: {other}")
    assert not bad, "differs from the uninterrupted run:\n" + "\n".join(bad)
    return len(files)


@pytest.fixture(scope="module")
def bids(tmp_path_factory, make_examples) -> Path:
    """The bundled synthetic example, built as ``bids_examples/make_examples.py`` builds it."""
    return make_examples.make_synthetic(tmp_path_factory.mktemp("bids") / "synthetic",
                                        n_subjects=2, seed=0)


@pytest.fixture(scope="module")
def reference(bids, tmp_path_factory):
    """The README's command (default recipe, ``cf`` worker), then the group level."""
    root = tmp_path_factory.mktemp("reference")
    out, work = root / "out", root / "work"
    common = ["-w", str(work), "--nprocs", "2", "--skip-bids-validation"]
    rc_participant = main([str(bids), str(out), "participant", *common])
    rc_group = main([str(bids), str(out), "group", *common])
    return {"out": out, "work": work, "rc": (rc_participant, rc_group)}


def test_default_path_participant_then_group(reference):
    assert reference["rc"] == (0, 0)
    got = output_list(reference["out"])
    expected = EXPECTED.read_text().split()
    assert got == expected, "\n".join(sorted(set(got) ^ set(expected)))


def test_default_path_leaves_a_clean_cache(reference):
    cache = reference["work"] / "pydra"
    assert not list(cache.glob("*.lock")) and not list(cache.glob("*_info.json"))
    assert {job_state(d) for d in cache.iterdir() if d.is_dir()} == {"done"}


def _series_01(bids, out, work, *extra) -> list[str]:
    return [str(bids), str(out), "participant", "--participant-label", "01", "-w", str(work),
            "--nprocs", "2", "--skip-bids-validation", *extra]


def _prepare_result(work: Path) -> Path:
    """The finished ``prepare`` job of sub-01 (the first task of the workflow)."""
    import cloudpickle as cp

    for d in sorted((work / "pydra").glob("python-*")):
        try:
            with open(d / "_job.pklz", "rb") as fh:
                if cp.load(fh).name == "prepare" and job_state(d) == "done":
                    return d / "_result.pklz"
        except OSError:
            continue
    raise AssertionError("no finished prepare job in the cache")


def test_injected_failure_then_rerun_resumes(bids, reference, tmp_path, monkeypatch, capsys):
    out, work = tmp_path / "out", tmp_path / "work"
    monkeypatch.setenv(ENV, "fail@fit_slab")
    assert main(_series_01(bids, out, work)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("prismflow: workflow failed: fit_slab[0] ("), err
    assert "InjectedFault" in err[0]
    # the crash report: where the one-line error says, named by the task, with inputs + traceback
    crash = Path(err[0].split("crash report: ")[1].split(" (and")[0])
    assert crash.is_file() and crash.parent.parent.parent == out / "sub-01"
    assert re.fullmatch(r"crash-\d{8}-\d{6}-fit_slab-0\.txt", crash.name)
    text = crash.read_text()
    assert "subject:   sub-01" in text and "slab_index = 0" in text
    assert "Traceback (most recent call last)" in text and "sub-01_dwi.nii.gz" in text
    kept = re.search(r"kept as (\S+)/", text).group(1)
    assert (Path(kept) / "_error.pklz").is_file() and (Path(kept) / "_job.pklz").is_file()
    prepared = _prepare_result(work)
    mtime = prepared.stat().st_mtime_ns

    monkeypatch.delenv(ENV)
    assert main(_series_01(bids, out, work)) == 0          # the same command, the same -w
    assert prepared.stat().st_mtime_ns == mtime            # resumed: prepare was not redone
    assert assert_same_derivatives(reference["out"] / "sub-01", out / "sub-01") > 20


def test_kill_9_halfway_then_rerun_resumes(bids, reference, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    env = {**os.environ, ENV: "hang@fit_slab", "NO_ET": "1", "OMP_NUM_THREADS": "1"}
    code = "import sys; from prismflow.cli.run import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, *_series_01(bids, out, work)],
                            env=env, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        for line in proc.stderr:              # wait until fit_slab runs (prepare has finished)
            if "injected hang in fit_slab" in line or time.monotonic() > deadline:
                break
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)   # the run and its worker processes, kill -9
        proc.wait()
    cache = work / "pydra"
    # what a killed run leaves: locks and job folders without a result
    assert list(cache.glob("*.lock"))
    assert "unfinished" in {job_state(d) for d in cache.iterdir() if d.is_dir()}
    prepared = _prepare_result(work)
    mtime = prepared.stat().st_mtime_ns

    assert main(_series_01(bids, out, work)) == 0
    assert prepared.stat().st_mtime_ns == mtime
    assert assert_same_derivatives(reference["out"] / "sub-01", out / "sub-01") > 20


def test_group_failure_then_rerun(bids, reference, tmp_path, monkeypatch, capsys):
    """A failed group level names the task and its crash report (no '_error.pklz' that does
    not exist); the rerun with the same -w succeeds and writes the reference's table."""
    import shutil

    out, work = tmp_path / "out", tmp_path / "work"
    shutil.copytree(reference["out"], out, ignore=shutil.ignore_patterns("group"))
    argv = [str(bids), str(out), "group", "-w", str(work), "--nprocs", "2"]
    monkeypatch.setenv(ENV, "fail@subject_metrics[1]")
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "subject_metrics[1] (" in err[0] and "_error.pklz" not in err[0]
    crash = Path(err[0].split("crash report: ")[1].split(" (and")[0])
    assert crash.is_file() and crash.parents[2] == out / "sub-02"    # the subject it failed on
    monkeypatch.delenv(ENV)
    assert main(argv) == 0
    name = "group/prismflow_metrics.tsv"
    got = [ln.split("\t") for ln in (out / name).read_text().splitlines()]
    ref = [ln.split("\t") for ln in (reference["out"] / name).read_text().splitlines()]
    untimed = [[r for r in rows if not RUN_KEYS.search(r[3] if len(r) > 3 else "")]
               for rows in (got, ref)]
    assert untimed[0] == untimed[1]
