"""prismflow: differentiable fixel recovery (PRISM) and mesh reconstruction (ReMiDi) for dMRI.

The core packages (``io``, ``phantoms``, ``prism``, ``remidi``, ``baselines``, ``tracking``,
``metrics``, ``reports``) are plain torch/numpy and import no workflow engine; ``tasks``,
``engine``, ``cli`` and ``prismflow.workflows`` sit above them.
"""

__version__ = "0.1.0"
