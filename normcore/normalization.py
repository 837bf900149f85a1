"""LayerNorm, GroupNorm and RMSNorm as ``nn.Module``s: torch.nn's signatures, parameters and state_dict keys.

None keeps running statistics, so each is a thin wrapper around its functional form
(as in ``torch/nn/modules/normalization.py``). The constructors take torch 2.13's
arguments (``bias`` for LayerNorm and GroupNorm; RMSNorm has no β) and check only what
torch's check (GroupNorm: C divisible by G); the rest is validated when the layer is called. One keyword-only extra follows:
``backward="closed_form" | "autograd"``. ``layer.last_stats`` holds the
:class:`~normcore.moments.NormStats` of the last forward pass.
"""

from __future__ import annotations

import numbers

import torch
from torch import nn

from . import checks
from . import functional as F
from .moments import NormStats


def _affine_parameters(module: nn.Module, shape, affine: bool, bias: bool, factory: dict) -> None:
    """γ (ones) and β (zeros) of ``shape``, or registered as None (no γ without affine)."""
    module.register_parameter("weight", nn.Parameter(torch.empty(shape, **factory)) if affine else None)
    module.register_parameter("bias", nn.Parameter(torch.empty(shape, **factory)) if affine and bias else None)


def _reset(module: nn.Module) -> None:
    if module.weight is not None:
        nn.init.ones_(module.weight)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


class LayerNorm(nn.Module):
    """LayerNorm over the last ``len(normalized_shape)`` dims, with a per-element affine."""

    def __init__(
        self,
        normalized_shape,
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        device=None,
        dtype=None,
        *,
        backward: str = "closed_form",
    ) -> None:
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
        self.normalized_shape = tuple(shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        self.backward_mode = checks.check_backward(backward)
        self.last_stats: NormStats | None = None
        _affine_parameters(self, self.normalized_shape, elementwise_affine, bias, {"device": device, "dtype": dtype})
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset(self)

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

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        device=None,
        dtype=None,
        *,
        bias: bool = True,
        backward: str = "closed_form",
    ) -> None:
        super().__init__()
        checks.check_groups(num_channels, num_groups, in_forward=False)
        self.num_groups, self.num_channels = num_groups, num_channels
        self.eps = eps
        self.affine = affine
        self.backward_mode = checks.check_backward(backward)
        self.last_stats: NormStats | None = None
        _affine_parameters(self, num_channels, affine, bias, {"device": device, "dtype": dtype})
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset(self)

    def extra_repr(self) -> str:
        text = f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, bias={self.bias is not None}"
        return text + (f", backward={self.backward_mode!r}" if self.backward_mode != "closed_form" else "")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        has_channels = isinstance(input, torch.Tensor) and input.dim() >= 2  # else F says what is wrong
        if has_channels and (self.weight is not None or self.bias is not None):  # else any C will do
            checks.check_channels(input, self.num_channels, "GroupNorm")
        y, self.last_stats = F.group_norm(
            input, self.num_groups, self.weight, self.bias, self.eps, backward=self.backward_mode, return_stats=True
        )
        return y


class RMSNorm(nn.Module):
    """RMSNorm over the last ``len(normalized_shape)`` dims: no centring, a per-element γ.

    As torch's: no β at all (no ``bias`` attribute, a state_dict of ``weight`` alone, or
    nothing without ``elementwise_affine``), and ``eps=None`` (see ``rms_norm.py``).
    """

    def __init__(
        self,
        normalized_shape,
        eps: float | None = None,
        elementwise_affine: bool = True,
        device=None,
        dtype=None,
        *,
        backward: str = "closed_form",
    ) -> None:
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, numbers.Integral) else normalized_shape
        self.normalized_shape = tuple(shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        self.backward_mode = checks.check_backward(backward)
        self.last_stats: NormStats | None = None
        weight = nn.Parameter(torch.empty(self.normalized_shape, device=device, dtype=dtype)) if elementwise_affine else None
        self.register_parameter("weight", weight)  # γ
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.weight is not None:
            nn.init.ones_(self.weight)

    def extra_repr(self) -> str:
        text = f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
        return text + (f", backward={self.backward_mode!r}" if self.backward_mode != "closed_form" else "")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        y, self.last_stats = F.rms_norm(
            input, self.normalized_shape, self.weight, self.eps, backward=self.backward_mode, return_stats=True
        )
        return y
