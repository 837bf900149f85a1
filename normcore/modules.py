"""``nn.Module`` layers with torch.nn's signatures, parameters, buffers and state_dict keys.

Built like ``torch/nn/modules/batchnorm.py``: :class:`_NormBase` owns the parameters, the
running-statistics buffers and the momentum logic once; each public class only states the
input ranks it accepts. A normcore layer and its torch.nn twin load each other's
state_dicts and give the same outputs.

Two keyword-only extras on every layer:

* ``backward="closed_form" | "autograd"``: hand-derived gradient (default) or torch's autograd
  through the forward formulas.
* ``unbiased_running_var`` (BatchNorm/InstanceNorm): ``True`` (torch) stores the unbiased
  batch variance in ``running_var``; ``False`` stores the biased one, as d2l's from-scratch
  code does.

After every forward pass ``layer.last_stats`` holds the :class:`~normcore.moments.NormStats`
the layer actually normalized with.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from . import checks
from . import functional as F
from normcore.moments import NormStats


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
        unbiased_running_var: bool = True,
        backward: str = "closed_form",
    ) -> None:
        super().__init__()
        if int(num_features) < 1:
            raise ValueError(f"num_features must be a positive integer, got {num_features}.")
        factory = {"device": device, "dtype": dtype}
        self.num_features = int(num_features)
        self.eps = checks.check_eps(eps)
        self.momentum = checks.check_momentum(momentum)
        self.affine = affine
        self.track_running_stats = track_running_stats
        self.unbiased_running_var = unbiased_running_var
        self.backward_mode = checks.check_backward(backward)
        self.last_stats: NormStats | None = None
        if affine:
            self.weight = nn.Parameter(torch.empty(num_features, **factory))  # γ
            self.bias = nn.Parameter(torch.empty(num_features, **factory))  # β
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
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
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def extra_repr(self) -> str:
        text = (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"track_running_stats={self.track_running_stats}"
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
    def _check_input(self, x: torch.Tensor) -> None:
        super()._check_input(x)
        checks.check_channels(x, self.num_features, type(self).__name__)
        if self.training:
            checks.check_more_than_one_value(x)

    def _momentum_factor(self) -> float:
        """The EMA weight of this batch: ``momentum``, or 1/num_batches_tracked when it is None.

        ``momentum=None`` makes the running statistics a cumulative average; its first step
        has factor 1, so the initial 0/1 values are discarded.
        """
        momentum = checks.check_momentum(self.momentum)
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if momentum is None:
                return 1.0 / float(self.num_batches_tracked)
        return 0.0 if momentum is None else momentum

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        # Checked before anything changes, so a rejected batch leaves num_batches_tracked alone
        # (torch increments it, then raises).
        self._check_input(input)
        factor = self._momentum_factor()
        # Batch statistics in training, and in eval too when no running statistics are kept.
        use_batch_stats = self.training or self.running_mean is None
        update = self.training and self.track_running_stats
        y, self.last_stats = F.batch_norm(
            input,
            self.running_mean if (update or not use_batch_stats) else None,
            self.running_var if (update or not use_batch_stats) else None,
            self.weight,
            self.bias,
            use_batch_stats,
            factor,
            self.eps,
            unbiased_running_var=self.unbiased_running_var,
            backward=self.backward_mode,
            return_stats=True,
        )
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
    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=False, track_running_stats=False, device=None, dtype=None, **extras):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, **extras)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input(input)
        name = type(self).__name__
        unbatched = input.dim() == min(self._input_ranks)  # e.g. (C, L) for InstanceNorm1d
        x = input.unsqueeze(0) if unbatched else input
        if x.shape[1] != self.num_features:
            if self.affine or self.track_running_stats:
                checks.check_channels(x, self.num_features, name)
            # As torch: without per-channel state the channel count does not matter, so only warn.
            warnings.warn(f"{name}({self.num_features}) got input with {x.shape[1]} channels; no affine or running stats, so it still works.")
        use_input_stats = self.training or not self.track_running_stats
        # torch's InstanceNorm passes momentum=None on as 0.0 (running stats never move) and
        # does not count num_batches_tracked; normcore follows it exactly.
        y, self.last_stats = F.instance_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            use_input_stats,
            0.0 if self.momentum is None else checks.check_momentum(self.momentum),
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


class LayerNorm(nn.Module):
    """LayerNorm over the last ``len(normalized_shape)`` dims, with a per-element affine."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True, device=None, dtype=None, *, backward: str = "closed_form") -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        if not shape or any(int(s) < 1 for s in shape):
            raise ValueError(f"normalized_shape must be a non-empty shape of positive sizes, got {normalized_shape!r}.")
        self.normalized_shape = tuple(int(s) for s in shape)
        self.eps = checks.check_eps(eps)
        self.elementwise_affine = elementwise_affine
        self.backward_mode = checks.check_backward(backward)
        self.last_stats: NormStats | None = None
        if elementwise_affine:
            self.weight = nn.Parameter(torch.empty(self.normalized_shape, **factory))
            if bias:
                self.bias = nn.Parameter(torch.empty(self.normalized_shape, **factory))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.elementwise_affine:
            nn.init.ones_(self.weight)
            if self.bias is not None:
                nn.init.zeros_(self.bias)

    def extra_repr(self) -> str:
        text = f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
        return text + (f", backward={self.backward_mode!r}" if self.backward_mode != "closed_form" else "")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        y, self.last_stats = F.layer_norm(
            input, self.normalized_shape, self.weight, self.bias, self.eps, backward=self.backward_mode, return_stats=True
        )
        return y


class GroupNorm(nn.Module):
    """GroupNorm: a mean/variance per (sample, group of C/G channels), per-channel affine."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True, device=None, dtype=None, *, backward: str = "closed_form") -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        checks.check_groups(int(num_channels), int(num_groups))
        self.num_groups, self.num_channels = int(num_groups), int(num_channels)
        self.eps = checks.check_eps(eps)
        self.affine = affine
        self.backward_mode = checks.check_backward(backward)
        self.last_stats: NormStats | None = None
        if affine:
            self.weight = nn.Parameter(torch.empty(num_channels, **factory))
            self.bias = nn.Parameter(torch.empty(num_channels, **factory))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def extra_repr(self) -> str:
        text = f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"
        return text + (f", backward={self.backward_mode!r}" if self.backward_mode != "closed_form" else "")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        checks.check_floating(input, "GroupNorm")
        checks.check_rank(input, (2, 3, 4, 5), "GroupNorm", "(N, C, *spatial)")
        checks.check_channels(input, self.num_channels, "GroupNorm")
        y, self.last_stats = F.group_norm(
            input, self.num_groups, self.weight, self.bias, self.eps, backward=self.backward_mode, return_stats=True
        )
        return y
