"""Protocol JSON format: round trip, validation errors naming the file."""

import json

import pytest
import torch

from prismflow.io.errors import InputError
from prismflow.remidi.reconstruction.protocol import Protocol, hemisphere_directions, paper_protocol


def test_recon_paper_protocol_shape_and_round_trip(tmp_path):
    p = paper_protocol()
    assert p.shape == (3, 21, 30)
    assert p.bvalues[0] == 0 and p.bvalues[-1] == 10000
    path = tmp_path / "protocol.json"
    path.write_text(json.dumps(p.to_dict()))
    q = Protocol.load(path)
    assert q == p
    norms = q.direction_tensor().norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(30, dtype=torch.float64))


def test_recon_hemisphere_directions_are_unit_and_distinct():
    d = hemisphere_directions(60)
    torch.testing.assert_close(d.norm(dim=1), torch.ones(60, dtype=torch.float64))
    assert (d[:, 2] > 0).all()
    gram = (d @ d.T).abs() - torch.eye(60, dtype=torch.float64)
    assert float(gram.max()) < 0.99


@pytest.mark.parametrize("data, match", [
    ({"sequences": [], "bvalues_s_per_mm2": [0, 1000], "directions": 3}, "no sequences"),
    ({"sequences": [{"delta_ms": 5, "Delta_ms": 2}], "bvalues_s_per_mm2": [0, 1000],
      "directions": 3}, "Delta_ms"),
    ({"sequences": [{"delta_ms": 5, "Delta_ms": 10}], "bvalues_s_per_mm2": [1000],
      "directions": 3}, "start with 0"),
    ({"sequences": [{"delta_ms": 5, "Delta_ms": 10}], "bvalues_s_per_mm2": [0, 1000],
      "directions": [[0, 0, 0]]}, "zero-length"),
    ({"sequences": [{"delta_ms": 5, "Delta_ms": 10}], "bvalues_s_per_mm2": [0, 1000]}, "missing"),
    ({"sequences": [{"delta_ms": 5}], "bvalues_s_per_mm2": [0, 1], "directions": 3}, "malformed"),
    ({"sequences": [], "bvalues": [0, 1], "directions": 3}, "unknown protocol keys"),
])
def test_recon_protocol_rejects_bad_input_with_file_name(tmp_path, data, match):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=match) as err:
        Protocol.load(path)
    assert "bad.json" in str(err.value)


def test_recon_protocol_missing_and_invalid_json(tmp_path):
    with pytest.raises(InputError, match="not found"):
        Protocol.load(tmp_path / "nope.json")
    (tmp_path / "x.json").write_text("{oops")
    with pytest.raises(InputError, match="not valid JSON"):
        Protocol.load(tmp_path / "x.json")
