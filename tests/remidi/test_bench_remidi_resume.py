"""benchmarks/remidi.py resumes: finished reconstructions and trained MLPs are cached by
everything that determines them, and a rerun recomputes nothing that finished."""

import importlib.util
import json
import math
from pathlib import Path

import torch

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "remidi.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_remidi", _PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_remidi_noise_is_seeded_by_the_case_not_its_position():
    b = _bench()
    clean = torch.full((50,), 0.5, dtype=torch.float64)
    one = b.rician(clean, 100.0, b.case_generator(0, "bend", "bend=0.3 twist=0", 100.0))
    # drawing another case's noise first must not change this case's draw
    b.rician(clean, 100.0, b.case_generator(0, "bend", "bend=0.5 twist=0", 100.0))
    two = b.rician(clean, 100.0, b.case_generator(0, "bend", "bend=0.3 twist=0", 100.0))
    assert torch.equal(one, two)
    other_snr = b.rician(clean, 50.0, b.case_generator(0, "bend", "bend=0.3 twist=0", 50.0))
    other_seed = b.rician(clean, 100.0, b.case_generator(1, "bend", "bend=0.3 twist=0", 100.0))
    assert not torch.equal(one, other_snr) and not torch.equal(one, other_seed)
    assert torch.equal(b.rician(clean, math.inf, None), clean)


def test_bench_remidi_result_key_changes_with_what_determines_the_result():
    from prismflow.remidi.reconstruction.protocol import paper_protocol

    b = _bench()
    g = torch.Generator().manual_seed(0)
    job = {"kind": "bend", "label": "x", "snr": 100.0, "config": {"n_iter": 750},
           "protocol": paper_protocol(n_b=3, n_dir=3),
           "signal": torch.rand(27, generator=g, dtype=torch.float64),
           "ref": torch.rand(10, 3, generator=g, dtype=torch.float64)}
    tv = torch.zeros(10, 3, dtype=torch.float64)
    key = b.result_key(job, "sae0", tv)
    assert key == b.result_key(dict(job), "sae0", tv)
    changed = [
        {**job, "config": {"n_iter": 749}},
        {**job, "signal": job["signal"] + 1e-12},
        {**job, "ref": job["ref"] + 1e-9},
        {**job, "protocol": paper_protocol(n_b=4, n_dir=3)},
        {**job, "snr": 50.0},
    ]
    keys = {b.result_key(j, "sae0", tv) for j in changed}
    keys |= {b.result_key(job, "sae1", tv), b.result_key(job, "sae0", tv + 1e-9)}
    assert key not in keys and len(keys) == len(changed) + 2


def test_bench_remidi_rerun_recomputes_nothing_that_finished(tmp_path, capsys):
    """A tiny run (3 b × 3 directions, 2 iterations, one case, a 1-layer MLP) twice."""
    b = _bench()
    argv = ["--rows", "bend", "--labels", "bend=0.3 twist=0", "--n-sample", "0",
            "--named-snr", "none", "--n-b", "3", "--n-dir", "3", "--iterations", "2",
            "--mlp-train", "6", "--mlp-hidden", "8", "--mlp-depth", "1", "--mlp-epochs", "2",
            "--ref-cache", str(tmp_path / "refs"), "--result-cache", str(tmp_path / "res")]
    assert b.main(argv + ["--out", str(tmp_path / "a.json")]) == 0
    first = capsys.readouterr().out
    assert "0 from the result cache" in first and "1 to run" in first
    assert len(list((tmp_path / "res").glob("res-bend-*.json"))) == 1
    assert len(list((tmp_path / "res").glob("mlp-bend-*.pt"))) == 1
    assert b.main(argv + ["--out", str(tmp_path / "b.json")]) == 0
    second = capsys.readouterr().out
    assert "1 from the result cache" in second and "0 to run" in second
    assert "MLP 1 × 8 (bend) from the result cache" in second
    a = json.loads((tmp_path / "a.json").read_text())
    c = json.loads((tmp_path / "b.json").read_text())
    assert a["rows"][0]["remidi"] == c["rows"][0]["remidi"]
    assert a["rows"][0]["mlp"] == c["rows"][0]["mlp"]
    # the cached run spent (almost) nothing on reconstructions but reports their recorded cost
    assert c["results"][0]["cached"] and c["results"][0]["cpu_seconds"] > 0
    assert c["cpu_seconds_all_cases"] >= c["results"][0]["cpu_seconds"]
    # a changed iteration count is a different result: recomputed, not reused
    assert b.main(argv[:-4] + ["--iterations", "3"] + argv[-4:]) == 0
    assert "1 to run" in capsys.readouterr().out
