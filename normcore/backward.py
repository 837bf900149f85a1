"""Closed-form backward passes (DESIGN.md §3), as ``torch.autograd.Function``s.

One derivation covers BatchNorm, LayerNorm, GroupNorm and InstanceNorm: they differ only in
``dims``, the axes a statistic is taken over, and in the shape of the affine parameters.

Forward, over the reduced axes (M values per statistic)::

    μ  = mean(x)                 σ² = mean((x - μ)²)          (biased)
    x̂  = (x - μ) / sqrt(σ² + ε)
    y  = γ · x̂ + β

Backward, with ``istd = 1 / sqrt(σ² + ε)``::

    dβ  = Σ dy                   (summed over every axis γ/β are broadcast along)
    dγ  = Σ dy · x̂
    dx̂  = dy · γ
    dx  = istd / M · (M · dx̂ − Σ_red dx̂ − x̂ · Σ_red(dx̂ · x̂))
        = istd · (dx̂ − mean_red(dx̂) − x̂ · mean_red(dx̂ · x̂))

The two subtracted terms are the paths through μ and σ²: moving one input moves the
statistic every other input is normalized with. With fixed (running) statistics those
paths vanish and ``dx = dy · γ · istd``.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from .stats import standardize


def _affine(x_hat, weight, bias):
    y = x_hat if weight is None else x_hat * weight  # γ · x̂
    return y if bias is None else y + bias  # + β


def _affine_grads(ctx, dy, x_hat, weight):
    """dγ = Σ dy·x̂ and dβ = Σ dy, summed down to the parameters' own shapes.

    ``needs_input_grad`` is False for a ``None`` parameter, so absent ones get no gradient.
    """
    i = ctx.weight_index
    d_weight = (dy * x_hat).sum_to_size(weight.shape) if ctx.needs_input_grad[i] else None
    d_bias = dy.sum_to_size(ctx.bias_shape) if ctx.needs_input_grad[i + 1] else None
    return d_weight, d_bias


class NormalizeWithBatchStats(torch.autograd.Function):
    """y = γ · (x − μ_batch) / sqrt(σ²_batch + ε) + β, with μ and σ² taken over ``dims``.

    ``weight`` and ``bias`` are ``None`` or already shaped to broadcast against ``x``.
    Returns ``(y, mean, var)``; mean and var (keepdim) are not differentiable outputs.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, dims, eps):
        x_hat, mean, var, inv_std = standardize(x, dims, eps)
        ctx.save_for_backward(x_hat, inv_std, weight)
        ctx.dims, ctx.weight_index = dims, 1
        ctx.bias_shape = None if bias is None else bias.shape
        ctx.mark_non_differentiable(mean, var)
        return _affine(x_hat, weight, bias), mean, var

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, _d_mean, _d_var):
        x_hat, inv_std, weight = ctx.saved_tensors
        d_weight, d_bias = _affine_grads(ctx, dy, x_hat, weight)
        d_x = None
        if ctx.needs_input_grad[0]:
            d_xhat = dy if weight is None else dy * weight  # dx̂ = dy · γ
            mean_d_xhat = d_xhat.mean(ctx.dims, keepdim=True)  # (1/M) Σ dx̂        (path through μ)
            mean_d_xhat_xhat = (d_xhat * x_hat).mean(ctx.dims, keepdim=True)  # (1/M) Σ dx̂·x̂  (through σ²)
            d_x = inv_std * (d_xhat - mean_d_xhat - x_hat * mean_d_xhat_xhat)
        return d_x, d_weight, d_bias, None, None


class NormalizeWithFixedStats(torch.autograd.Function):
    """y = γ · (x − μ) / sqrt(σ² + ε) + β with constant μ, σ² (running statistics, eval mode).

    ``mean``/``var``/``weight``/``bias`` are ``None`` or shaped to broadcast against ``x``.
    """

    @staticmethod
    def forward(ctx, x, mean, var, weight, bias, eps):
        inv_std = torch.rsqrt(var + eps)
        x_hat = (x - mean) * inv_std
        ctx.save_for_backward(x_hat, inv_std, weight)
        ctx.weight_index = 3
        ctx.bias_shape = None if bias is None else bias.shape
        return _affine(x_hat, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        x_hat, inv_std, weight = ctx.saved_tensors
        d_weight, d_bias = _affine_grads(ctx, dy, x_hat, weight)
        d_x = None
        if ctx.needs_input_grad[0]:
            d_x = dy * inv_std if weight is None else dy * (weight * inv_std)  # dx = dy · γ · istd
        return d_x, None, None, d_weight, d_bias, None
