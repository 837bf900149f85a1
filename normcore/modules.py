"""``nn.Module`` layers with torch.nn's signatures, parameters, buffers and state_dict keys.

Built like ``torch/nn/modules/batchnorm.py`` and ``instancenorm.py``: :class:`_NormBase` owns
the parameters, the running-statistics buffers and the momentum logic once; each public
class only states the input ranks it accepts. LayerNorm, GroupNorm and RMSNorm are in
``normalization.py``, as in torch. A normcore layer and its torch.nn twin load each other's
state_dicts and give the same outputs.

Constructors take torch 2.13's arguments (``bias=False``: a γ without a β) and check nothing
torch does not check there; a value is validated when a call uses it (``checks.py``). Two
keyword-only extras follow torch's arguments:

* ``backward="closed_form" | "autograd"``: hand-derived gradient (default) or torch's autograd
  through the forward formulas.
* ``unbiased_running_var``: ``True`` (torch) stores the unbiased batch variance in
  ``running_var``; ``False`` stores the biased one, as d2l's from-scratch code does.

After every forward pass ``layer.last_stats`` holds the :class:`~normcore.moments.NormStats`
the layer actually normalized with.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from . import checks
from . import functional as F
from .moments import NormStats
from .normalization import GroupNorm, LayerNorm, RMSNorm

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "LayerNorm", "RMSNorm"]


class _NormBase(nn.Module):
    """Parameters, running-statistics buffers and momentum handling shared by BN and IN."""

    _version = 2  # state_dict version 2 has num_batches_tracked, as in torch
    _input_ranks: tuple[int, ...] = ()
    _layout = ""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device=None,
        dtype=None,
        *,
        bias: bool = True,
        unbiased_running_var: bool = True,
        backward: str = "closed_form",
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.unbiased_running_var = unbiased_running_var
        self.backward_mode = checks.check_backward(backward)
        self.last_stats: NormStats | None = None
        self.register_parameter("weight", nn.Parameter(torch.empty(num_features, **factory)) if affine else None)  # γ
        self.register_parameter("bias", nn.Parameter(torch.empty(num_features, **factory)) if affine and bias else None)  # β
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **factory))
            self.register_buffer("running_var", torch.ones(num_features, **factory))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.weight is not None:
            nn.init.ones_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def extra_repr(self) -> str:
        text = (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}"
        )
        if not self.unbiased_running_var:
            text += ", unbiased_running_var=False"
        if self.backward_mode != "closed_form":
            text += f", backward={self.backward_mode!r}"
        return text

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        # Checkpoints written before num_batches_tracked existed (torch's version < 2) lack the
        # key; as torch, keep this layer's own count then. Unlike torch, a version-2 state_dict
        # missing the key is accepted too (torch's strict loading rejects it): the count only
        # matters for momentum=None.
        key = prefix + "num_batches_tracked"
        if self.track_running_stats and key not in state_dict:
            state_dict[key] = self.num_batches_tracked if self.num_batches_tracked is not None else torch.tensor(0, dtype=torch.long)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)

    def _check_input(self, x: torch.Tensor) -> None:
        name = type(self).__name__
        checks.check_floating(x, name)
        checks.check_rank(x, self._input_ranks, name, self._layout)


class _BatchNorm(_NormBase):
    def _momentum_factor(self) -> float:
        """The EMA weight of this batch: ``momentum``, or 1/num_batches_tracked when it is None.

        ``momentum=None`` makes the running statistics a cumulative average; its first step
        has factor 1, so the initial 0/1 values are discarded. The count itself is advanced
        by ``forward`` once the batch is accepted.
        """
        if self.training and self.track_running_stats and self.momentum is None:
            return 1.0 / float(self.num_batches_tracked + 1)
        return 0.0 if self.momentum is None else self.momentum

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input(input)
        if input.numel() > 0 and (self.affine or self.track_running_stats):  # per-channel state; else any C will do
            checks.check_channels(input, self.num_features, type(self).__name__)
        # Batch statistics in training, and in eval too when no running statistics are kept.
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        update = self.training and self.track_running_stats
        running = not self.training or self.track_running_stats  # else keep them out of F's reach
        y, stats = F.batch_norm(
            input,
            self.running_mean if running else None,
            self.running_var if running else None,
            self.weight,
            self.bias,
            use_batch_stats,
            self._momentum_factor(),
            self.eps,
            unbiased_running_var=self.unbiased_running_var,
            backward=self.backward_mode,
            return_stats=True,
        )
        if update:
            # Counted after the batch is accepted (torch counts first, then raises), so a
            # rejected batch leaves the count alone. An empty batch is counted, as in torch.
            self.num_batches_tracked.add_(1)
        self.last_stats = stats
        return y


class BatchNorm1d(_BatchNorm):
    """BatchNorm over (N, C) or (N, C, L) input: one mean/variance per channel."""

    _input_ranks, _layout = (2, 3), "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """BatchNorm over (N, C, H, W) input: one mean/variance per channel, over N, H and W."""

    _input_ranks, _layout = (4,), "(N, C, H, W)"


class BatchNorm3d(_BatchNorm):
    """BatchNorm over (N, C, D, H, W) input: one mean/variance per channel, over N, D, H and W."""

    _input_ranks, _layout = (5,), "(N, C, D, H, W)"


class _InstanceNorm(_NormBase):
    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = False,
        track_running_stats: bool = False,
        device=None,
        dtype=None,
        *,
        bias: bool = True,
        unbiased_running_var: bool = True,
        backward: str = "closed_form",
    ) -> None:
        super().__init__(
            num_features, eps, momentum, affine, track_running_stats, device, dtype,
            bias=bias, unbiased_running_var=unbiased_running_var, backward=backward,
        )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input(input)
        name = type(self).__name__
        unbatched = input.dim() == min(self._input_ranks)  # e.g. (C, L) for InstanceNorm1d
        x = input.unsqueeze(0) if unbatched else input
        if x.shape[1] != self.num_features:
            if self.affine:
                checks.check_channels(x, self.num_features, name)
            # As torch: γ, β are what need C entries; running statistics are checked by F.
            warnings.warn(f"{name}({self.num_features}) got input with {x.shape[1]} channels; no affine, so the count is not used.")
        # torch's InstanceNorm passes momentum=None on as 0.0 (running stats never move) and
        # does not count num_batches_tracked; normcore follows it exactly.
        y, self.last_stats = F.instance_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            self.training or not self.track_running_stats,
            0.0 if self.momentum is None else self.momentum,
            self.eps,
            unbiased_running_var=self.unbiased_running_var,
            backward=self.backward_mode,
            return_stats=True,
        )
        return y.squeeze(0) if unbatched else y


class InstanceNorm1d(_InstanceNorm):
    """InstanceNorm over (N, C, L) or unbatched (C, L): a mean/variance per sample and channel."""

    _input_ranks, _layout = (2, 3), "(N, C, L) or (C, L)"


class InstanceNorm2d(_InstanceNorm):
    """InstanceNorm over (N, C, H, W) or unbatched (C, H, W)."""

    _input_ranks, _layout = (3, 4), "(N, C, H, W) or (C, H, W)"


class InstanceNorm3d(_InstanceNorm):
    """InstanceNorm over (N, C, D, H, W) or unbatched (C, D, H, W)."""

    _input_ranks, _layout = (4, 5), "(N, C, D, H, W) or (C, D, H, W)"
