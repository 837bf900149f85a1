"""SyncBatchNorm: BatchNorm whose statistics span every worker of a process group, on any backend.

A drop-in for ``torch.nn.SyncBatchNorm`` (torch 2.13's signature, ``process_group`` included,
the same state_dict, ``convert_sync_batchnorm``), which also runs where torch's does not: on
the CPU with gloo. The device and the transport are the process group's business (gloo on
CPU, NCCL on GPU): the layer only calls ``torch.distributed.all_reduce``.

In training, with an initialized process group of more than one worker, each worker holds a
slice of one batch and the layer normalizes with the statistics of the *whole* batch: two
all-reduces in forward, one in backward (``cross_worker.py`` has the formulas), so that every
worker's outputs, input gradient and running statistics are those one BatchNorm would give
on the whole batch in one process. A worker with 0 samples still joins every collective.

Otherwise (eval mode, world size 1, no initialized group) it is normcore's BatchNorm: the same
code path, no collectives.

Gradients of γ and β are each worker's own sums over its slice. DistributedDataParallel
*averages* parameter gradients over workers, so for the single-process gradient of a loss
that is a mean over the global batch, scale each worker's loss to the global batch:
``loss = loss_sum_over_my_slice * world_size / global_batch`` (with equal slices that is the
plain mean). Without DDP, sum the γ/β gradients over workers yourself.

The cost is three small all-reduces (2C + 1, 2C and 2C numbers) per layer per step; with
``normcore.sync_batchnorm.time_collectives()`` the time spent in them is measured.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from . import checks
from . import functional as F
from .cross_worker import CollectiveTimer, NormalizeAcrossWorkers, time_collectives
from .modules import _BatchNorm
from .moments import NormStats, compute_dtype

__all__ = ["CollectiveTimer", "SyncBatchNorm", "time_collectives"]


class SyncBatchNorm(_BatchNorm):
    """BatchNorm over (N, C, *spatial) input (2D or more), synchronized across workers.

    Arguments as ``torch.nn.SyncBatchNorm``; ``process_group=None`` means the whole world.
    Keyword-only extra: ``unbiased_running_var`` (as normcore's BatchNorm). After each forward
    pass ``last_stats`` holds the statistics used (global ones when synchronized; their
    ``values_per_stat`` is then the count over all workers).
    """

    _layout = "(N, C, *spatial)"

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group=None,
        device=None,
        dtype=None,
        *,
        bias: bool = True,
        unbiased_running_var: bool = True,
    ) -> None:
        super().__init__(
            num_features, eps, momentum, affine, track_running_stats, device, dtype,
            bias=bias, unbiased_running_var=unbiased_running_var,
        )
        self.process_group = process_group

    def _check_input(self, x: torch.Tensor) -> None:
        """torch's SyncBatchNorm checks: at least 2D, a non-zero channel count."""
        checks.check_floating(x, "SyncBatchNorm")
        if x.dim() < 2:
            raise checks.NormcoreError(
                f"SyncBatchNorm expects an input {self._layout} of at least 2D, got a {x.dim()}D input of shape "
                f"{tuple(x.shape)}. Add the batch dim, e.g. x.unsqueeze(0)."
            )
        if x.shape[1] == 0:
            raise checks.NormcoreError(
                f"SyncBatchNorm got an input with 0 channels (shape {tuple(x.shape)}); dim 1 holds the channels."
            )

    def _sync_group(self):
        """The process group to synchronize over, or None when there is nothing to synchronize:
        eval mode, no initialized group, or a group of one worker (torch's rule)."""
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return None
        group = self.process_group if self.process_group else dist.group.WORLD
        world = dist.get_world_size(group)
        if world < 1:
            raise checks.NormcoreError(
                f"This worker (rank {dist.get_rank()}) is not a member of the SyncBatchNorm's process_group. "
                "Give each worker a layer built with a group it belongs to (convert_sync_batchnorm(model, its_group))."
            )
        return group if world > 1 else None

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        group = self._sync_group()
        if group is None:
            return super().forward(input)  # normcore's BatchNorm, no collectives
        return self._forward_synced(input, group)

    def _forward_synced(self, input: torch.Tensor, group) -> torch.Tensor:
        self._check_input(input)
        if self.affine or self.track_running_stats:  # per-channel state; the collectives need C anyway
            checks.check_channels(input, self.num_features, "SyncBatchNorm")
        checks.check_batch_eps(self.eps, True)
        _check_backend(input, group)
        momentum = self._momentum_factor()
        x = input.to(compute_dtype(input))
        shape = (1, -1) + (1,) * (x.dim() - 2)  # a half γ/β computes in float32 with x, as the single-process path
        w, b = F._view(self.weight, shape, x.dtype), F._view(self.bias, shape, x.dtype)
        y, mean, var, total = NormalizeAcrossWorkers.apply(x, w, b, self.eps, group)
        if self.track_running_stats:
            if total > 0:  # no worker had values: the running statistics stay, as BatchNorm's
                F._update_running(self.running_mean, self.running_var, mean, var, momentum, total, self.unbiased_running_var)
            self.num_batches_tracked.add_(1)
        self.last_stats = NormStats(mean, var, "batch", total)
        return y.to(input.dtype)

    @classmethod
    def convert_sync_batchnorm(cls, module: nn.Module, process_group=None) -> nn.Module:
        """Replace every BatchNorm1d/2d/3d in ``module`` (torch.nn's or normcore's, at any
        depth) by a normcore SyncBatchNorm that shares its parameters and buffers and keeps
        its ``training`` flag. Returns ``module`` itself, or the new layer if it is one."""
        out = module
        if isinstance(module, (nn.modules.batchnorm._BatchNorm, _BatchNorm)):
            out = cls(
                module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats,
                process_group, bias=module.bias is not None,
                unbiased_running_var=getattr(module, "unbiased_running_var", True),
            )
            if module.affine:
                with torch.no_grad():  # the same Parameter objects: values, requires_grad, optimizer state
                    out.weight, out.bias = module.weight, module.bias
            out.running_mean, out.running_var = module.running_mean, module.running_var
            out.num_batches_tracked = module.num_batches_tracked
            out.training = module.training
            if hasattr(module, "qconfig"):
                out.qconfig = module.qconfig
        for name, child in module.named_children():
            out.add_module(name, cls.convert_sync_batchnorm(child, process_group))
        return out


def _check_backend(x: torch.Tensor, group) -> None:
    """NCCL all-reduces CUDA tensors only: say so before the collective fails obscurely."""
    if x.device.type != "cuda" and dist.get_backend(group) == "nccl":
        raise checks.NormcoreError(
            f"SyncBatchNorm's process group uses NCCL, which needs CUDA tensors, but the input is on {x.device}. "
            "Move the model and its input to cuda:LOCAL_RANK, or create the group with backend='gloo' for the CPU."
        )

