"""dipy FORCE through our wrapper.

FORCE is **not validated** on our tensor phantoms (13–19° there whatever its threshold or
diffusivity ranges; its library's fibres are dispersed sticks and zeppelins with d∥ 2–3e-3 mm²/s),
so it is left out of the robustness matrix and its phantom accuracy is not asserted here. What is
checked is the wrapper itself, against an independent reference — FORCE's own library: a noise-free
library entry fitted by the wrapper must come back with the library's labelled directions (the
label → direction mapping, the fraction ranking and the peak rule), as in dipy's FORCE example,
which fits simulated library signals.
"""

import numpy as np
import pytest

from prismflow.baselines import get_method
from prismflow.metrics.peaks import pairwise_angles


@pytest.fixture(scope="module")
def force_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("force"))


def test_force_returns_its_own_library_entries(tiny_phantom, force_cache):
    from dipy.sims.force import default_sphere, load_force_simulations

    m = get_method("force", response="data", library_size=5000, cache_dir=force_cache)
    acq = tiny_phantom.acquisition
    m.prepare(acq)
    sims = load_force_simulations(str(next(__import__("pathlib").Path(force_cache).glob("force-*.npz"))))
    single = np.flatnonzero((sims["num_fibers"] == 1) & (sims["wm_fraction"] >= 0.7))[:40]
    assert single.size >= 20
    res = m.fit_peaks(np.asarray(sims["signals"])[single], acq)
    truth = np.stack([default_sphere.vertices[np.asarray(sims["labels"])[i] == 1][0] for i in single])
    ang = pairwise_angles(res.directions[:, :1], truth[:, None])[:, 0, 0]
    # the entry is its own nearest neighbour: its labelled direction exactly (grid vertices)
    assert np.median(ang) < 0.5 and np.mean(ang < 1.0) >= 0.9, np.sort(ang)[-5:]


def test_force_library_is_cached(tiny_phantom, force_cache):
    m = get_method("force", response="data", library_size=5000, cache_dir=force_cache)
    res = m.fit_peaks(tiny_phantom.signal, tiny_phantom.acquisition)
    again = get_method("force", response="data", library_size=5000, cache_dir=force_cache)
    res2 = again.fit_peaks(tiny_phantom.signal, tiny_phantom.acquisition)
    assert res.info["setup_seconds"] >= 0 and res2.info["library"].startswith("cache")
    assert np.allclose(res2.directions, res.directions)
