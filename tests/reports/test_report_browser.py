"""The reports in a real browser: build them for the synthetic example, open them in headless
Chromium, screenshot them and check that every section and image rendered, with no console
error. Screenshots are kept under ``$PRISMFLOW_ARTEFACTS`` (default: the test's tmp folder);
their paths are printed in the log. Skips with a reason when Chromium is not installed
(``apt-get install chromium``). Run with ``pytest -m integration tests/reports``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from prismflow.cli.run import main
from prismflow.reports.browser import check_page, find_chromium, screenshot

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PARTICIPANT_SECTIONS = ["summary", "run", "mask", "model", "tissue", "nfibres", "dec",
                        "crossings", "quality", "tracking", "connectome", "methods", "errors"]


@pytest.fixture(scope="module")
def chromium():
    exe = find_chromium()
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install chromium): no browser check")
    return exe


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """Participant (fast recipe) and group levels on the two-subject synthetic example."""
    spec = importlib.util.spec_from_file_location("make_examples",
                                                  REPO / "bids_examples" / "make_examples.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    tmp = tmp_path_factory.mktemp("report")
    bids = mod.make_synthetic(tmp / "bids", n_subjects=2, seed=0)
    out, work = tmp / "out", tmp / "work"
    common = ["-w", str(work), "--device", "cpu", "-q"]
    assert main([str(bids), str(out), "participant", "--recipe", "fast", "--nprocs", "2",
                 *common]) == 0
    assert main([str(bids), str(out), "group", *common]) == 0
    return out


def _artefacts(tmp_path) -> Path:
    root = Path(os.environ.get("PRISMFLOW_ARTEFACTS", tmp_path))
    root.mkdir(parents=True, exist_ok=True)
    return root


def _non_blank(png: Path) -> int:
    """Distinct colours (4-bit per channel) of a screenshot; a blank page has one or two."""
    from PIL import Image

    px = np.asarray(Image.open(png).convert("RGB"))[::4, ::4] >> 4
    return len(np.unique(px.reshape(-1, 3), axis=0))


def _check(page: Path, expected: list[str], exe: str) -> dict:
    res = check_page(page, exe=exe)
    assert res["errors"] == [], res["errors"]
    got = [s["id"] for s in res["sections"]]
    assert got == expected
    for s in res["sections"]:
        assert s["height"] > 40 and s["caption"].strip(), s
    assert res["images"], "no image on the page"
    for im in res["images"]:
        assert im["complete"] and im["width"] > 0 and im["height"] > 0, im   # not broken
        assert im["shown_width"] > 100, im                                   # not tiny
        assert im["colours"] >= 3, im                                        # not blank
    return res


def test_participant_report_renders(outputs, chromium, tmp_path, capsys):
    page = outputs / "sub-01.html"
    assert page.is_file() and (outputs / "sub-02.html").is_file()
    text = page.read_text()
    assert "<script" not in text and "http://" not in text.replace("https://doi.org", "")
    res = _check(page, PARTICIPANT_SECTIONS, chromium)
    by_section = {}
    for im in res["images"]:
        by_section.setdefault(im["section"], 0)
        by_section[im["section"]] += 1
    # three orthogonal mosaics where asked; PRISM beside CSD + the angle map; both tractograms
    assert by_section["tissue"] == 3 and by_section["mask"] == 3 and by_section["dec"] == 3
    assert by_section["crossings"] == 2 and by_section["tracking"] == 2
    assert by_section["quality"] >= 5
    png = screenshot(page, _artefacts(tmp_path) / "sub-01.png", height=4000, exe=chromium)
    assert _non_blank(png) > 50
    # one section alone (the README's model screenshot): its table at the top, and below it
    # only the page background where the full page shows figures
    from PIL import Image

    model = screenshot(page, _artefacts(tmp_path) / "sub-01-model.png", height=1200,
                       section="model", exe=chromium)
    assert not (outputs / ".shot-model-sub-01.html").exists()       # the probe page is removed
    px = np.asarray(Image.open(model).convert("RGB"))
    assert len(np.unique((px[900:] >> 4).reshape(-1, 3), axis=0)) <= 3 < _non_blank(model)
    with capsys.disabled():
        print(f"\nCI artefact: participant report screenshot {png}")


def test_group_report_renders(outputs, chromium, tmp_path, capsys):
    page = outputs / "group" / "report.html"
    res = _check(page, ["table", "figures", "values"], chromium)
    tsv = (outputs / "group" / "prismflow_metrics.tsv").read_text().splitlines()
    metrics = {line.split("\t")[3] for line in tsv[1:]}
    assert len(res["images"]) == len(metrics)          # every metric has its figure
    assert 'href="prismflow_metrics.tsv"' in page.read_text()
    png = screenshot(page, _artefacts(tmp_path) / "group.png", height=3000, exe=chromium)
    assert _non_blank(png) > 50
    with capsys.disabled():
        print(f"\nCI artefact: group report screenshot {png}")
