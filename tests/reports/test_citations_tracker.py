"""The methods text names the tracker that ran (fixel tracker by default, EuDX only for dipy)."""

from prismflow.reports.citations import methods_text

VER = {"prismflow": "1", "dipy": "1.12", "mrtrix3": "3.0.3"}


def _tracking_text(**params):
    steps = [{"action": "tracking", "step_mm": 0.5, "angle_deg": 20, "min_fraction": 0.1,
              **params}]
    text, refs = methods_text(steps, versions=VER, seed=0, baselines_run=[], tracked=["prism"],
                              connectome=True)
    return next(t for t in text if "streamlines" in t), [r.key for r in refs]


def test_fixel_tracker_is_named_by_default_and_when_chosen():
    for params in ({}, {"tracker": "fixel"}):
        text, _ = _tracking_text(**params)
        assert "fixel tracker" in text and "fibre fraction 0.1" in text
        assert "EuDX" not in text and "tckgen" not in text


def test_dipy_and_mrtrix_trackers_are_named_and_cited():
    text, keys = _tracking_text(tracker="dipy")
    assert "EuDX" in text and "fixel tracker" not in text and "dipy" in keys
    text, keys = _tracking_text(tracker="mrtrix")
    assert "tckgen FACT" in text and "EuDX" not in text and "mrtrix3" in keys
