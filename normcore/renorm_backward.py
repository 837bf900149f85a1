"""Batch Renormalization's training step as a ``torch.autograd.Function`` (Ioffe 2017).

Forward, per channel over the reduced axes (M values), with σ = sqrt(running_var + ε)::

    μ_B, σ²_B = mean and biased variance              σ_B = sqrt(σ²_B + ε)
    r = clip(σ_B / σ, 1/r_max, r_max)                  d = clip((μ_B − μ) / σ, −d_max, d_max)
    x̂ = (x − μ_B) / σ_B
    y = γ · (x̂ · r + d) + β  =  (γ·r) · x̂ + (γ·d + β)

r and d are constants of the backward pass (the paper's "stop gradient"). y is then
BatchNorm's output with the per-channel affine γ' = γ·r, β' = γ·d + β, so its input
gradient is ``backward.py``'s closed form with γ' in place of γ::

    dx̂ = γ·r·dy
    dx  = istd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂))
    dγ  = Σ dy · (x̂·r + d) = r · Σ dy·x̂ + d · Σ dy
    dβ  = Σ dy

The cell sums Σdy and Σdy·x̂ and the input gradient are ``backward.py``'s own
(``_cell_sums``, ``_input_grad``), so BatchRenorm with r = 1 and d = 0 runs exactly
BatchNorm's arithmetic. Under torch.func transforms backward runs ``transforms.py``'s
out-of-place formulas instead; there is no vmap rule (the layer updates buffers anyway).
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

from . import transforms
from .backward import _cell_shape, _cell_sums, _input_grad, _reduced_to
from .moments import shifted_moments


def renorm_correction(mean, var, running_mean, running_var, eps, r_max, d_max):
    """(r, d): how far the batch's statistics are from the running ones, clipped.

    r = clip(σ_B/σ, 1/r_max, r_max), d = clip((μ_B − μ)/σ, −d_max, d_max), with σ_B over the
    biased batch variance and σ over the running (unbiased) one, both with ε inside the root.
    """
    sigma = torch.sqrt(running_var + eps)
    r = (torch.sqrt(var + eps) / sigma).clamp_(1.0 / r_max, r_max)
    d = ((mean - running_mean) / sigma).clamp_(-d_max, d_max)
    return r, d


class RenormalizeWithBatchStats(torch.autograd.Function):
    """y = γ · ((x − μ_B)/σ_B · r + d) + β over ``dims``, r and d from the running statistics.

    ``weight``/``bias``/``running_mean``/``running_var`` are ``None`` (the affine ones) or
    shaped to broadcast against ``x`` (keepdim shape of the statistics). Returns
    ``(y, mean, var, r, d, shift, shifted_mean, inv_std)``; only y is differentiable.
    """

    @staticmethod
    def forward(x, weight, bias, running_mean, running_var, dims, eps, r_max, d_max):
        centered, mean, var, shift, shifted_mean = shifted_moments(x, dims, return_shift=True)
        inv_std = torch.rsqrt(var + eps)
        r, d = renorm_correction(mean, var, running_mean, running_var, eps, r_max, d_max)
        scale = r * inv_std if weight is None else weight * r * inv_std  # γ·r·istd per channel
        offset = d if weight is None else weight * d  # γ·d (+ β)
        y = centered.mul_(scale).add_(offset if bias is None else offset + bias)
        return y, mean, var, r, d, shift, shifted_mean, inv_std

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias, _rm, _rv, dims, *_ = inputs
        _y, mean, var, r, d, shift, shifted_mean, inv_std = output
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(mean, var, r, d, shift, shifted_mean, inv_std)
        ctx.save_for_backward(x, shift, shifted_mean, inv_std, weight, r, d)
        ctx.cell = _cell_shape(inv_std, weight, bias)
        ctx.small_cells = math.prod(ctx.cell) < x.numel()
        ctx.cell_dims = _reduced_to(x.shape, ctx.cell)
        ctx.dims = dims
        ctx.bias_shape = None if bias is None else bias.shape

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, *_unused):
        if dy is None:
            return (None,) * 9
        x, shift, shifted_mean, inv_std, weight, r, d = ctx.saved_tensors
        want_x, want_weight, want_bias = ctx.needs_input_grad[:3]
        scaled = r if weight is None else weight * r  # γ' = γ·r
        if torch._C._are_functorch_transforms_active():  # out of place, as backward.py does there
            return *_renorm_backward_out_of_place(ctx, dy, x, shift, shifted_mean, inv_std, weight, r, d), *(None,) * 6
        buf, shifted_mean, sum_dy, sum_dy_xhat = _cell_sums(ctx, dy, x, shift, shifted_mean, inv_std)
        d_bias = sum_dy.sum_to_size(ctx.bias_shape) if want_bias else None  # dβ = Σ dy
        d_weight = (r * sum_dy_xhat + d * sum_dy).sum_to_size(weight.shape) if want_weight else None  # dγ
        d_x = _input_grad(ctx, dy, x, shift, shifted_mean, inv_std, scaled, sum_dy, sum_dy_xhat, buf) if want_x else None
        return d_x, d_weight, d_bias, *(None,) * 6


def _renorm_backward_out_of_place(ctx, dy, x, shift, shifted_mean, inv_std, weight, r, d):
    """dx, dγ, dβ without in-place updates (under torch.func transforms)."""
    want_x, want_weight, want_bias = ctx.needs_input_grad[:3]
    scaled = r if weight is None else weight * r
    d_x = transforms.batch_stats_backward(dy, x, shift, shifted_mean, inv_std, scaled, ctx.dims, None, (want_x, False, False))[0]
    x_hat = ((x - shift) - shifted_mean) * inv_std
    d_weight = (dy * (x_hat * r + d)).sum_to_size(weight.shape) if want_weight else None
    d_bias = dy.sum_to_size(ctx.bias_shape) if want_bias else None
    return d_x, d_weight, d_bias
