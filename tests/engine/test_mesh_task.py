"""The mesh-reconstruction pydra task runs the same core function as the CLI."""

import json

import numpy as np
import torch

from prismflow.engine import EngineConfig, run_task
from prismflow.remidi import cylinder_mesh
from prismflow.remidi.reconstruction.deform import bend_twist
from prismflow.remidi.reconstruction.protocol import paper_protocol
from prismflow.remidi.reconstruction.reconstruct import simulate_vertices
from prismflow.tasks.mesh import ReconstructMesh


def test_reconstruct_mesh_task_writes_mesh_and_report(tmp_path):
    prot = paper_protocol(n_b=3, n_dir=3, Delta_ms=(10.0,))
    (tmp_path / "protocol.json").write_text(json.dumps(prot.to_dict()))
    mesh = cylinder_mesh(3.0, 9.0)
    with torch.no_grad():
        sig = simulate_vertices(mesh, bend_twist(mesh.vertices.detach().double(), bend=0.3), prot)
    np.save(tmp_path / "signal.npy", sig.numpy())
    task = ReconstructMesh(signal=tmp_path / "signal.npy", protocol=tmp_path / "protocol.json",
                           n_iter=3)
    out = run_task(task, EngineConfig(worker="debug", cache_root=str(tmp_path / "cache")))
    report = json.loads(open(out.report).read())
    assert len(report["loss_curve"]) == 3
    assert str(out.mesh).endswith("mesh.vtu")
