"""``prismflow-mesh reconstruct``: one-line errors, non-zero exit, atomic outputs."""

import json

import numpy as np
import pytest

from prismflow.cli.mesh import main
from prismflow.remidi.reconstruction.protocol import paper_protocol


@pytest.fixture()
def files(tmp_path):
    prot = paper_protocol(n_b=3, n_dir=3, Delta_ms=(10.0,))
    p = tmp_path / "protocol.json"
    p.write_text(json.dumps(prot.to_dict()))
    s = tmp_path / "signal.npy"
    np.save(s, np.ones(prot.shape))
    return tmp_path, p, s


def _err(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1] if err else ""


def test_recon_cli_bad_inputs_give_one_line_and_nonzero_exit(files, capsys):
    tmp, prot, sig = files
    out = tmp / "out"
    assert main(["reconstruct", "--signal", str(tmp / "missing.npy"), "--protocol", str(prot),
                 "--out", str(out)]) == 2
    assert "missing.npy: signal file not found" in _err(capsys)
    wrong = tmp / "wrong.txt"
    wrong.write_text("1 2 3")
    assert main(["reconstruct", "--signal", str(wrong), "--protocol", str(prot),
                 "--out", str(out)]) == 2
    line = _err(capsys)
    assert "wrong.txt" in line and "3 values" in line and "= 9" in line
    bad = tmp / "bad.json"
    bad.write_text("{}")
    assert main(["reconstruct", "--signal", str(sig), "--protocol", str(bad),
                 "--out", str(out)]) == 2
    assert "bad.json" in _err(capsys)
    nan = tmp / "nan.npy"
    np.save(nan, np.full((1, 3, 3), np.nan))
    assert main(["reconstruct", "--signal", str(nan), "--protocol", str(prot),
                 "--out", str(out)]) == 2
    assert "NaN" in _err(capsys)
    assert not out.exists()


def test_recon_cli_refuses_to_overwrite(files, capsys):
    tmp, prot, sig = files
    out = tmp / "out"
    out.mkdir()
    (out / "mesh.vtu").write_text("old")
    assert main(["reconstruct", "--signal", str(sig), "--protocol", str(prot),
                 "--out", str(out)]) == 2
    assert "--force" in _err(capsys)
    assert (out / "mesh.vtu").read_text() == "old"


def test_recon_cli_writes_mesh_and_json(files):
    meshio = pytest.importorskip("meshio")
    import torch

    from prismflow.remidi import cylinder_mesh
    from prismflow.remidi.reconstruction.deform import bend_twist
    from prismflow.remidi.reconstruction.reconstruct import simulate_vertices

    tmp, prot_path, _ = files
    prot = paper_protocol(n_b=3, n_dir=3, Delta_ms=(10.0,))
    mesh = cylinder_mesh(3.0, 9.0)
    ref = bend_twist(mesh.vertices.detach().double(), bend=0.3)
    with torch.no_grad():
        sig = simulate_vertices(mesh, ref, prot).numpy()
    sig_path = tmp / "sig.json"
    sig_path.write_text(json.dumps({"signal": sig.tolist()}))
    ref_path = tmp / "ref.vtu"
    meshio.write(str(ref_path), meshio.Mesh(ref.numpy(), [("tetra",
                 np.asarray(mesh.tetrahedra))]))
    out = tmp / "out"
    assert main(["reconstruct", "--signal", str(sig_path), "--protocol", str(prot_path),
                 "--out", str(out), "--iterations", "3", "--reference", str(ref_path)]) == 0
    m = meshio.read(out / "mesh.vtu")
    assert m.points.shape == (mesh.vertices.shape[0], 3)
    info = json.loads((out / "reconstruction.json").read_text())
    assert len(info["loss_curve"]) == 3 and info["units"]["vertices"] == "um"
    assert info["modified_chamfer_um"] is not None
    assert sorted(p.name for p in out.iterdir()) == ["mesh.vtu", "reconstruction.json"]


@pytest.mark.parametrize("option, value, words", [
    ("--restart-period", "0", "--restart-period must be >= 1"),
    ("--patience", "0", "--patience must be >= 1"),
    ("--loss-scale", "-1", "--loss-scale must be > 0"),
    ("--n-eig", "0", "--n-eig must be >= 1"),
    ("--device", "tpu", "unknown device"),
])
def test_recon_cli_bad_option_values_give_one_line(files, capsys, option, value, words):
    tmp, prot, sig = files
    rc = main(["reconstruct", "--signal", str(sig), "--protocol", str(prot),
               "--out", str(tmp / "out"), option, value])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and words in err[0], err
    assert "Traceback" not in "\n".join(err)


def test_train_sae_cli_refuses_bad_output(tmp_path, capsys):
    existing = tmp_path / "w.pt"
    existing.write_text("old")
    assert main(["train-sae", "--kind", "fan", "--out", str(existing)]) == 2
    assert "--force" in _err(capsys)
    assert main(["train-sae", "--kind", "fan", "--out", str(tmp_path / "w.txt")]) == 2
    assert ".pt" in _err(capsys)
    assert main(["train-sae", "--kind", "fan", "--epochs", "0", "--out",
                 str(tmp_path / "n.pt")]) == 2
    assert existing.read_text() == "old" and not (tmp_path / "n.pt").exists()
