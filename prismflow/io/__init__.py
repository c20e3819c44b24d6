"""Input/output: gradient tables, NIfTI images, atomic writes."""

from .errors import InputError
from .gradients import Acquisition, read_bval_bvec, write_bval_bvec, B0_THRESHOLD

__all__ = ["InputError", "Acquisition", "read_bval_bvec", "write_bval_bvec", "B0_THRESHOLD"]
from .nifti import load_image, save_nifti_atomic, save_json_atomic  # noqa: E402

__all__ += ["load_image", "save_nifti_atomic", "save_json_atomic"]
