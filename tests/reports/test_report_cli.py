"""A failed participant run still writes sub-<label>.html, with the error on it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import prismflow.engine
from prismflow.cli.run import main
from prismflow.engine import EngineError

REPO = Path(__file__).resolve().parents[2]


def test_failed_run_writes_a_report_with_the_error(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("make_examples",
                                                  REPO / "bids_examples" / "make_examples.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    bids = mod.make_synthetic(tmp_path / "bids", n_subjects=2, seed=0)

    def failing(task, cfg, **kwargs):
        raise EngineError("ValueError: slab 2 diverged (crash report: /x/crash-fit_slab.txt)")

    monkeypatch.setattr(prismflow.engine, "run_task", failing)
    out = tmp_path / "out"
    rc = main([str(bids), str(out), "participant", "-w", str(tmp_path / "work"), "-q",
               "--skip-bids-validation"])
    assert rc == 1
    for sub in ("01", "02"):
        page = (out / f"sub-{sub}.html").read_text()
        assert "slab 2 diverged" in page and "did not finish" in page and "failed" in page
        assert 'id="errors"' in page and "errors-found" in page


def test_one_page_per_subject_with_every_session_and_its_crash_reports(tmp_path):
    import json
    from types import SimpleNamespace

    from prismflow.cli.report_sink import write_reports

    def series(sub, ses):
        name = f"sub-{sub}" + (f"_ses-{ses}" if ses else "") + "_dwi.nii.gz"
        return SimpleNamespace(subject=sub, session=ses, dwi=str(tmp_path / "bids" / name),
                               bval="dwi.bval", bvec="dwi.bvec", dseg=None)

    inputs = [series("01", "a"), series("01", "b"), series("02", None)]
    reports = []
    for i, s in enumerate(inputs):
        f = tmp_path / f"sections{i}.json"
        f.write_text(json.dumps([{"id": "summary", "title": "Summary", "caption": "c",
                                  "items": [{"kind": "text", "text": f"series number {i}"}]}]))
        reports.append(f)
    crash = tmp_path / "out" / "sub-01" / "ses-b" / "log" / "run1" / "crash-fit_slab-1.txt"
    crash.parent.mkdir(parents=True)
    crash.write_text("ValueError: bad slab\n")
    run_wide = tmp_path / "out" / "log" / "run1" / "crash-ParticipantWorkflow.txt"
    run_wide.parent.mkdir(parents=True)
    run_wide.write_text("RuntimeError: hashes changed\n")
    pages = write_reports(tmp_path / "out", inputs, SimpleNamespace(report=reports),
                          run_id="run1", command="prismflow …", seconds=1.0,
                          steps=[{"name": "fit_slab", "jobs": 2, "seconds": 3.0}],
                          bids_dir=tmp_path / "bids")
    assert [p.name for p in pages] == ["sub-01.html", "sub-02.html"]
    assert "run run1 finished" in pages[1].read_text()      # one series: the subtitle
    one = pages[0].read_text()
    assert "sub-01_ses-a_dwi" in one and "sub-01_ses-b_dwi" in one
    assert "series number 0" in one and "series number 1" in one and "series number 2" not in one
    assert str(crash) in one and "ValueError: bad slab" in one
    two = pages[1].read_text()
    assert "series number 2" in two and "ValueError: bad slab" not in two
    assert str(run_wide) in one and str(run_wide) in two     # run-wide: on every page
