#!/usr/bin/env python
"""Time a rerun after ``kill -9`` halfway against a fresh run (the BIDS app, ``cf`` worker).

1. Builds the synthetic example (``bids_examples/make_examples.py``) in a temporary folder.
2. Fresh run: ``prismflow <bids> out_fresh participant -w work_fresh`` (default recipe).
3. Killed run: the same command with a new ``-w``, ``kill -9`` of its whole process group once
   ``--kill-after`` task results are in the cache (default: half of the fresh run's).
4. Rerun of that command with the same ``-w``; checks its derivatives equal the fresh run's
   (NIfTI/TRK/CSV bytes; JSON but for timings) and prints the times.

Usage: ``OMP_NUM_THREADS=1 nice -n 10 python benchmarks/recovery.py [--subjects 1] [--repeats 1]``
Wall times on a shared machine are noisy: the script prints CPU seconds and the load as well.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CODE = "import sys; from prismflow.cli.run import main; sys.exit(main(sys.argv[1:]))"


def _examples():
    spec = importlib.util.spec_from_file_location("make_examples",
                                                  REPO / "bids_examples" / "make_examples.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _argv(bids: Path, out: Path, work: Path, subjects: list[str]) -> list[str]:
    return [str(bids), str(out), "participant", "-w", str(work), "--nprocs", "2",
            "--skip-bids-validation", "-q", "--participant-label", *subjects]


def _run(argv) -> tuple[float, float, int]:
    cpu0, t0 = _children_cpu(), time.perf_counter()
    rc = subprocess.run([sys.executable, "-c", CODE, *argv], cwd=REPO).returncode
    return time.perf_counter() - t0, _children_cpu() - cpu0, rc


def _results(work: Path) -> int:
    return len(list((work / "pydra").glob("python-*/_result.pklz")))


def _killed_run(argv, work: Path, after: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CODE, *argv], cwd=REPO,
                            start_new_session=True)
    while proc.poll() is None and _results(work) < after:
        time.sleep(0.1)
    done = _results(work)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return time.perf_counter() - t0, done


def _untimed(obj):
    if isinstance(obj, dict):
        return {k: _untimed(v) for k, v in obj.items()
                if not re.search(r"seconds|time|mem_gb", k, re.IGNORECASE)}
    return [_untimed(v) for v in obj] if isinstance(obj, list) else obj


def _same(ref: Path, got: Path) -> tuple[int, list[str]]:
    files = [p for p in ref.rglob("*") if p.is_file() and "log" not in p.parts
             and p.suffix != ".html"]
    bad = []
    for f in files:
        g = got / f.relative_to(ref)
        if not g.is_file():
            bad.append(f"missing {g}")
        elif f.suffix == ".json":
            if _untimed(json.loads(f.read_text())) != _untimed(json.loads(g.read_text())):
                bad.append(str(g))
        elif f.read_bytes() != g.read_bytes():
            bad.append(str(g))
    return len(files), bad


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subjects", type=int, default=1, help="participants (default: 1)")
    p.add_argument("--kill-after", type=int, default=None,
                   help="kill once this many task results exist (default: half the fresh run's)")
    p.add_argument("--repeats", type=int, default=1, help="kill/rerun pairs (default: 1)")
    args = p.parse_args()
    os.environ.setdefault("NO_ET", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    labels = [f"{i + 1:02d}" for i in range(args.subjects)]
    with tempfile.TemporaryDirectory(prefix="prismflow-recovery-") as tmp:
        tmp = Path(tmp)
        bids = _examples().make_synthetic(tmp / "synthetic", n_subjects=args.subjects, seed=0)
        wall, cpu, rc = _run(_argv(bids, tmp / "out_fresh", tmp / "work_fresh", labels))
        assert rc == 0, "fresh run failed"
        total = _results(tmp / "work_fresh")
        after = args.kill_after or max(1, total // 2)
        print(f"fresh run: {wall:.1f} s wall, {cpu:.1f} s CPU, {total} task results "
              f"(load {os.getloadavg()[0]:.1f})")
        for r in range(args.repeats):
            work, out = tmp / f"work_{r}", tmp / f"out_{r}"
            argv = _argv(bids, out, work, labels)
            k_wall, done = _killed_run(argv, work, after)
            locks = len(list((work / "pydra").glob("*.lock")))
            wall2, cpu2, rc2 = _run(argv)
            n, bad = _same(tmp / "out_fresh", out)
            print(f"kill -9 after {k_wall:.1f} s ({done}/{total} task results, {locks} stale "
                  f"lock(s)); rerun with the same -w: rc {rc2}, {wall2:.1f} s wall, "
                  f"{cpu2:.1f} s CPU; {n} derivatives compared, {len(bad)} differ "
                  f"(load {os.getloadavg()[0]:.1f})")
            for b in bad:
                print("  differs:", b)
    print("command:", " ".join(["python", "benchmarks/recovery.py", *sys.argv[1:]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
