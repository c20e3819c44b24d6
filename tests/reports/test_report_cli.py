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
