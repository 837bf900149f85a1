"""Dynamic Tanh (Zhu, Chen, He, LeCun, Liu 2025, "Transformers without Normalization").

A drop-in for LayerNorm that takes no statistic at all: each value is squashed on its own,

    y = tanh(α · x) · γ + β        over the trailing ``normalized_shape``

α is one learnable scalar (shape (1,), initialised to ``alpha_init_value``, 0.5 in the paper),
γ starts at ones and β at zeros, one per element of ``normalized_shape`` as in LayerNorm.
The paper's observation: a trained transformer's LayerNorm maps its pooled inputs through an
S-shaped curve, so a tanh with a learned scale can stand in for it. Nothing here couples the
values of a token, so the plain autograd of these three ops is the backward.

:func:`convert_ln_to_dyt` swaps every LayerNorm of a model (torch.nn's and normcore's) for a
DynamicTanh, as the paper's code does.
"""

from __future__ import annotations

import torch
from torch import nn

from . import checks

WHO = "dynamic_tanh"


def dynamic_tanh(input: torch.Tensor, alpha: torch.Tensor, weight: torch.Tensor | None = None,
                 bias: torch.Tensor | None = None) -> torch.Tensor:
    """``tanh(alpha · input) · weight + bias``; ``weight`` and ``bias`` (either may be None)
    have the input's trailing shape, ``alpha`` is a one-element tensor (or a number)."""
    checks.check_floating(input, WHO)
    if isinstance(alpha, torch.Tensor) and alpha.numel() != 1:
        raise checks.NormcoreError(
            f"{WHO}: alpha is one learnable scalar, so it must have one element; got shape {tuple(alpha.shape)}. "
            "Pass a tensor of shape (1,).")
    shape = next((tuple(t.shape) for t in (weight, bias) if t is not None), None)
    if shape is not None:
        checks.check_trailing_shape(input, shape, WHO)
        if weight is not None and bias is not None:
            checks.check_affine_shape(bias, tuple(weight.shape), "bias", WHO)
    y = torch.tanh(alpha * input)  # the S-curve; α sets how early it saturates
    if weight is not None:
        y = y * weight  # γ: per-element scale, as LayerNorm's
    return y if bias is None else y + bias  # β: per-element shift


class DynamicTanh(nn.Module):
    """``tanh(α·x)·γ + β`` over the last ``len(normalized_shape)`` dims; LayerNorm's signature
    with ``alpha_init_value`` in place of ``eps``. Parameters: ``alpha`` (1,), ``weight`` and
    ``bias`` of ``normalized_shape`` (None without ``elementwise_affine``; no ``bias`` with
    ``bias=False``)."""

    def __init__(self, normalized_shape, alpha_init_value: float = 0.5, elementwise_affine: bool = True,
                 bias: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
        self.normalized_shape = checks.check_normalized_shape(tuple(shape), "DynamicTanh")
        if any(s < 0 for s in self.normalized_shape):
            raise checks.NormcoreError(f"DynamicTanh: normalized_shape must not be negative, got {self.normalized_shape}.")
        self.alpha_init_value = float(alpha_init_value)
        self.elementwise_affine = elementwise_affine
        factory = {"device": device, "dtype": dtype}
        self.alpha = nn.Parameter(torch.empty(1, **factory))
        affine = nn.Parameter(torch.empty(self.normalized_shape, **factory)) if elementwise_affine else None
        self.register_parameter("weight", affine)
        has_bias = elementwise_affine and bias
        self.register_parameter("bias", nn.Parameter(torch.empty(self.normalized_shape, **factory)) if has_bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.alpha, self.alpha_init_value)
        if self.weight is not None:
            nn.init.ones_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, alpha_init_value={self.alpha_init_value}, "
                f"elementwise_affine={self.elementwise_affine}")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.weight is None:  # no affine: the trailing shape is still the contract
            checks.check_floating(input, "DynamicTanh")
            checks.check_trailing_shape(input, self.normalized_shape, "DynamicTanh")
        return dynamic_tanh(input, self.alpha, self.weight, self.bias)


def convert_ln_to_dyt(module: nn.Module, alpha_init_value: float = 0.5) -> nn.Module:
    """``module`` with every LayerNorm (``torch.nn.LayerNorm`` or ``normcore.LayerNorm``) replaced
    by a :class:`DynamicTanh` of the same shape, affine flags, device and dtype, in place
    (children are swapped) and returned, as the paper's ``convert_ln_to_dyt``. A LayerNorm
    passed as ``module`` itself comes back as a new DynamicTanh. γ and β start afresh (ones,
    zeros), as in the paper, where the swap happens before training."""
    from .normalization import LayerNorm as NormcoreLayerNorm

    if isinstance(module, (nn.LayerNorm, NormcoreLayerNorm)):
        like = next(iter(module.parameters()), None)
        factory = {} if like is None else {"device": like.device, "dtype": like.dtype}
        return DynamicTanh(module.normalized_shape, alpha_init_value, module.elementwise_affine,
                           bias=getattr(module, "bias", None) is not None, **factory)
    for name, child in module.named_children():
        replaced = convert_ln_to_dyt(child, alpha_init_value)
        if replaced is not child:
            setattr(module, name, replaced)
    return module


__all__ = ["DynamicTanh", "convert_ln_to_dyt", "dynamic_tanh"]
