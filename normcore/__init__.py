"""normcore: normalization layers written from the formulas, a drop-in for torch.nn.

>>> import torch, normcore
>>> bn = normcore.BatchNorm2d(3)            # same signature, state_dict and outputs as nn.BatchNorm2d
>>> y = bn(torch.randn(8, 3, 4, 4))
>>> bn.last_stats.mean.shape                 # the statistics it normalized with
torch.Size([3])
"""

from . import functional
from .modules import (
    BatchNorm1d,
    BatchNorm2d,
    BatchNorm3d,
    GroupNorm,
    InstanceNorm1d,
    InstanceNorm2d,
    InstanceNorm3d,
    LayerNorm,
    RMSNorm,
)
from .moments import NormStats
from .sync_batchnorm import SyncBatchNorm
from .checks import NormcoreDtypeError, NormcoreError, NormcoreIndexError, NormcoreTypeError, NormcoreZeroDivisionError
from .axes import ReductionAxes, reduction_axes, statistic_ids
from .ema import batch_mean_standard_error, ema_half_life, keras_momentum_from_torch, torch_momentum_from_keras
from .fusion import fuse_conv_bn_eval, fuse_linear_bn_eval
from .folding import FoldReport, fold_batchnorm
from .dynamic_tanh import DynamicTanh, convert_ln_to_dyt
from .batch_renorm import BatchRenorm1d, BatchRenorm2d, BatchRenorm3d, renorm_schedule

__all__ = [
    "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d",
    "InstanceNorm3d", "LayerNorm", "NormStats", "NormcoreDtypeError", "NormcoreError", "NormcoreIndexError",
    "NormcoreTypeError", "NormcoreZeroDivisionError", "RMSNorm", "ReductionAxes", "SyncBatchNorm", "batch_mean_standard_error",
    "ema_half_life", "functional", "keras_momentum_from_torch", "reduction_axes", "statistic_ids",
    "torch_momentum_from_keras",
]
__all__ += ["FoldReport", "fold_batchnorm", "fuse_conv_bn_eval", "fuse_linear_bn_eval"]
__all__ += ["DynamicTanh", "convert_ln_to_dyt"]
__all__ += ["BatchRenorm1d", "BatchRenorm2d", "BatchRenorm3d", "renorm_schedule"]
__version__ = "0.1.0"


def __getattr__(name: str):
    """``normcore.keras`` is imported when it is first used, not by ``import normcore``."""
    if name == "keras":
        import importlib

        return importlib.import_module(".keras", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
