"""Fold an eval-mode BatchNorm into the convolution or linear layer before it, from the formula.

In eval, BatchNorm is a fixed affine map per channel c:

    y_c = (x_c − μ_c) · γ_c / √(σ²_c + ε) + β_c        (μ, σ²: the running statistics)

so after a layer ``x = W·u + b`` it can be folded into that layer:

    W'_c = W_c · γ_c/√(σ²_c + ε)          b'_c = (b_c − μ_c) · γ_c/√(σ²_c + ε) + β_c

>>> import torch, normcore
>>> conv, bn = torch.nn.Conv2d(3, 8, 3).eval(), torch.nn.BatchNorm2d(8).eval()
>>> fused = normcore.fuse_conv_bn_eval(conv, bn)   # torch.nn.utils.fusion's signature
>>> x = torch.randn(2, 3, 5, 5)
>>> torch.testing.assert_close(fused(x), bn(conv(x)))

Where torch.nn.utils.fusion's functions fail, these do not: a grouped ``ConvTranspose``
(torch: a shape error), a BatchNorm without affine after a ``Linear`` (torch: ``TypeError``).
A ``ConvTranspose`` keeps its output channels in dim 1 of its weight, so it needs
``transpose=True``; without it torch scales the input channels instead (silently wrong when
they are as many), while these refuse and say so. The factors are computed in float64 (float32
where the device has no float64) and the results cast to the layer's dtype, so a float16
layer is folded from exact factors; it warns (``HalfPrecisionFoldWarning``) that the layer or
the BatchNorm is already rounded to half: fold in float32, then cast.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from . import modules as normcore_modules

BATCH_NORMS = (nn.modules.batchnorm._BatchNorm, normcore_modules._BatchNorm)


def _work_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float32 if t.device.type == "mps" else torch.float64


def _check_bn(bn: nn.Module, layer: nn.Module, out_features: int, what: str) -> None:
    if not isinstance(bn, BATCH_NORMS):
        raise TypeError(f"bn must be a BatchNorm layer (torch.nn or normcore), got {type(bn).__name__}.")
    if layer.training or bn.training:
        which = " and ".join(n for n, m in ((type(layer).__name__, layer), (type(bn).__name__, bn)) if m.training)
        raise ValueError(f"Folding needs eval mode, but the {which} is in training mode, where BatchNorm normalizes "
                         "with each batch's statistics. Call .eval() on the model (or both layers) first.")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"The {type(bn).__name__} keeps no running statistics (track_running_stats=False): it "
                         "normalizes with each batch's statistics even in eval, so it cannot be folded. Keep it "
                         "as a layer, or train with track_running_stats=True.")
    if bn.num_features != out_features and not (what == "linear" and bn.num_features == 1):
        raise ValueError(f"The {type(bn).__name__} has {bn.num_features} channels but the {type(layer).__name__} "
                         f"gives {out_features}: they are not one after the other in this model.")


HALF_DTYPES = (torch.float16, torch.bfloat16)


class HalfPrecisionFoldWarning(UserWarning):
    """A fold whose layer or BatchNorm is already in float16/bfloat16: fold in float32, then cast."""


def _warn_if_half(layer: nn.Module, bn: nn.Module) -> None:
    """The Fold tab's float16 mistake: a model cast to half *before* folding carries the rounding
    of its weights, γ/β and running statistics into the folded weights, and rounds them again."""
    tensors = {"weight": layer.weight, "running_var": bn.running_var}
    half = [f"the {type(m).__name__}'s {n}s are {t.dtype}" for (n, t), m in zip(tensors.items(), (layer, bn))
            if t.dtype in HALF_DTYPES]
    if half:
        warnings.warn(
            f"Folding in half precision ({' and '.join(half)}): the weights, γ/β and running statistics were "
            "already rounded (float16 keeps 11 bits, and a running variance below about 6·10⁻⁸ is subnormal, "
            "so σ² + ε loses ε), and the folded weights are rounded again. The factors are computed in float64 "
            "from the rounded values; for the closest fold, fold the float32 model and cast once at the end: "
            "normcore.fold_batchnorm(model.float()).half().",
            HalfPrecisionFoldWarning, stacklevel=3,
        )


def bn_scale_shift(bn: nn.Module, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel (s, t) with bn(x) = x·s + t in eval: s = γ/√(σ²+ε), t = β − μ·s, in ``dtype``."""
    mean, var = bn.running_mean.to(dtype), bn.running_var.to(dtype)
    gamma = torch.ones_like(mean) if bn.weight is None else bn.weight.detach().to(dtype)
    beta = torch.zeros_like(mean) if bn.bias is None else bn.bias.detach().to(dtype)
    scale = gamma / torch.sqrt(var + bn.eps)
    return scale, beta - mean * scale


def _fused(layer: nn.Module, weight: torch.Tensor, bias: torch.Tensor) -> nn.Module:
    fused = copy.deepcopy(layer)
    requires_grad = layer.weight.requires_grad
    bias_dtype = layer.bias.dtype if layer.bias is not None else layer.weight.dtype
    fused.weight = nn.Parameter(weight.to(layer.weight.dtype), requires_grad)
    fused.bias = nn.Parameter(bias.to(bias_dtype), requires_grad)
    return fused


def _out_channels_view(weight: torch.Tensor, groups: int, transpose: bool) -> tuple[torch.Tensor, tuple[int, ...]]:
    """The weight as (…, out_channels, …) with the per-output-channel factor's broadcast shape.

    A conv's weight is (out, in/groups, *k): output channels in dim 0. A transposed conv's is
    (in, out/groups, *k): output channel g·(out/groups)+j is column j of group g's rows."""
    if not transpose:
        return weight, (-1,) + (1,) * (weight.dim() - 1)
    in_channels, per_group, *kernel = weight.shape
    grouped = weight.reshape(groups, in_channels // groups, per_group, *kernel)
    return grouped, (groups, 1, per_group) + (1,) * len(kernel)


def fuse_conv_bn_eval(conv, bn, transpose=False):
    """A new conv computing ``bn(conv(x))`` of the eval-mode pair, as torch.nn.utils.fusion's.

    ``transpose=True`` for a ``ConvTranspose{1,2,3}d`` (grouped ones included). Refused with a
    ``ValueError`` that says what to change: a layer in training mode, a BatchNorm without
    running statistics, channel counts that do not match, a transposed conv without
    ``transpose=True`` (or a plain conv with it)."""
    if not isinstance(conv, nn.modules.conv._ConvNd):
        raise TypeError(f"conv must be a torch.nn Conv or ConvTranspose layer, got {type(conv).__name__}.")
    if conv.transposed != bool(transpose):
        fix = "pass transpose=True" if conv.transposed else "leave transpose=False"
        raise ValueError(f"{type(conv).__name__} keeps its output channels in dim {1 if conv.transposed else 0} of "
                         f"its weight, but transpose={transpose} scales dim {1 if transpose else 0}: {fix}.")
    _check_bn(bn, conv, conv.out_channels, "conv")
    _warn_if_half(conv, bn)
    dtype = _work_dtype(conv.weight)
    scale, shift = bn_scale_shift(bn, dtype)
    weight, shape = _out_channels_view(conv.weight.detach().to(dtype), conv.groups, conv.transposed)
    weight = (weight * scale.reshape(shape)).reshape(conv.weight.shape)
    bias = shift if conv.bias is None else conv.bias.detach().to(dtype) * scale + shift
    return _fused(conv, weight, bias)


def fuse_linear_bn_eval(linear, bn):
    """A new ``Linear`` computing ``bn(linear(x))`` of the eval-mode pair, as torch.nn.utils.fusion's
    (a BatchNorm1d over the linear layer's features, or one with a single feature).

    Like torch's, it assumes the BatchNorm normalizes the linear layer's output features, as it
    does on an (N, F) output; on an (N, L, F) one BatchNorm1d normalizes dim 1 (L) instead."""
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"linear must be a torch.nn.Linear, got {type(linear).__name__}.")
    _check_bn(bn, linear, linear.out_features, "linear")
    _warn_if_half(linear, bn)
    dtype = _work_dtype(linear.weight)
    scale, shift = bn_scale_shift(bn, dtype)
    weight = linear.weight.detach().to(dtype) * scale.unsqueeze(-1)
    bias = shift if linear.bias is None else linear.bias.detach().to(dtype) * scale + shift
    return _fused(linear, weight, bias.expand(linear.out_features).contiguous())


__all__ = ["BATCH_NORMS", "HalfPrecisionFoldWarning", "bn_scale_shift", "fuse_conv_bn_eval", "fuse_linear_bn_eval"]
