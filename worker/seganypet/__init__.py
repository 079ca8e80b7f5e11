"""SegAnyPET network (SAM-Med3D architecture) in plain PyTorch, compatible with the official weights.

No Django imports here: the model can be tested and benchmarked on its own.
"""

from worker.seganypet.checkpoint import (
    CheckpointError,
    CheckpointMismatchError,
    LoadedCheckpoint,
    load_checkpoint,
    save_checkpoint,
)
from worker.seganypet.model import (
    DEMO,
    VARIANTS,
    VIT_B_ORI,
    Sam3D,
    Sam3DConfig,
    build_sam3d,
    build_sam3d_demo,
    build_sam3d_vit_b_ori,
    count_parameters,
)

__all__ = [
    "DEMO",
    "VARIANTS",
    "VIT_B_ORI",
    "CheckpointError",
    "CheckpointMismatchError",
    "LoadedCheckpoint",
    "Sam3D",
    "Sam3DConfig",
    "build_sam3d",
    "build_sam3d_demo",
    "build_sam3d_vit_b_ori",
    "count_parameters",
    "load_checkpoint",
    "save_checkpoint",
]
