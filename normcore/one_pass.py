"""The one-pass form of a batch-statistics normalization: what eager calls run while the
statistics are far from cancellation (``moments.moments_from_sums`` decides, per call).

The same formulas as ``backward.py``, arranged around x itself instead of x − μ, so that
nothing full-size is computed just to be summed or subtracted again::

    μ, σ²  from Σx and Σx²                                  (two reads of x, no temporary)
    y      = x·a + b,   a = γ·istd,  b = β − μ·a            (one pass; a, b per cell)
    LayerNorm (γ per element):  y = (x·istd − μ·istd)·γ + β

Backward. Where a cell (the values that share a statistic and a γ/β entry: a channel for
BatchNorm, a (sample, channel) for GroupNorm and InstanceNorm) pools many values, dγ = Σ dy·x̂
is one sum over a whole channel, and the rounding δ of μ enters it as δ·istd·Σ dy: with a
nonzero mean gradient over 10⁵ values that is far more than torch's error. So
:func:`cells_backward` sums dy·(x − μ) and measures δ = mean(x − μ) on the way, as
``backward.py`` does, and takes it back out; dx = k·dy + x·A + B then needs only per-cell
coefficients. LayerNorm's backward (:func:`rows_backward`) forms dy·x̂ once (dγ is its sum over the rows,
Σ dx̂·x̂ a matrix-vector product with γ), then::

    dx     = istd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂))          (backward.py's closed form)
           = istd·(dx̂ + x·A + B),   A = −istd·mean(dx̂·x̂),  B = −mean(dx̂) − A·μ

x·A + B trades a subtraction of two values for one of two larger numbers, exact in exact
arithmetic, which loses float32 digits in proportion to |μ|/σ (as y = x·a + b does): the reason for
the bounds in ``moments.AFFINE_MAX_OFFSET`` and :data:`ROWS_MAX_OFFSET`, beyond which the
exact form runs instead.

``layout`` (from :func:`one_pass_layout`, once per configuration and input shape) says how
the form is arranged: ``("cells", dims)``, a cell's values are those along ``dims``;
``("rows", R, M)``, LayerNorm with a per-element γ: x is R rows of M values, γ one per column.
"""

from __future__ import annotations

import math

import torch

from .moments import AFFINE_MAX_OFFSET, SMALL_TENSOR, sum_trailing_first



def one_pass_layout(shape, dims, weight_shape, bias_shape):
    """How the one-pass form sums per cell for an input of ``shape`` normalized over ``dims``
    (with γ, β of these broadcastable shapes, or None); None where it has no arrangement
    (a GroupNorm without spatial dims and with γ, say: it runs the exact form)."""
    ndim = len(shape)
    params = [s for s in (weight_shape, bias_shape) if s is not None]
    padded = [(1,) * (ndim - len(s)) + tuple(s) for s in params]
    cell_dims = tuple(d for d in dims if all(p[d] == 1 for p in padded) and shape[d] != 1)
    if cell_dims:
        return ("cells", cell_dims)
    trailing = tuple(range(ndim - len(dims), ndim))
    if tuple(dims) == trailing and all(all(size == 1 for size in p[: ndim - len(dims)]) for p in padded):
        m = math.prod(shape[d] for d in dims)
        return ("rows", math.prod(shape) // m if m else 0, m)
    return None


FEW_VALUES = 256  # values per statistic up to which cells_backward need not measure μ's rounding
ROWS_MAX_OFFSET = 3.0  # rows_backward's x·A + B loses digits in proportion to |μ|/σ


def max_offset(layout) -> float:
    """The largest |μ|/σ at which this layout's one-pass form is taken (see ``moments_from_sums``)."""
    return ROWS_MAX_OFFSET if layout[0] == "rows" else AFFINE_MAX_OFFSET


def affine_forward(x, mean, inv_std, weight, bias, layout):
    """y = γ·(x − μ)·istd + β as x·a + b (per cell), or (x·istd − μ·istd)·γ + β (rows)."""
    if layout[0] == "cells":
        a = inv_std if weight is None else weight * inv_std  # γ·istd
        b = (mean * a).neg_() if bias is None else torch.addcmul(bias, mean, a, value=-1)  # β − μ·γ·istd
        # (one op for a small x; a large one is faster in two, as torch's addcmul broadcasts slowly)
        return torch.addcmul(b, x, a) if x.numel() < SMALL_TENSOR else x.mul(a).add_(b)
    y = x.mul(inv_std).sub_(mean * inv_std)  # x̂ = x·istd − μ·istd
    if weight is None:
        return y if bias is None else y.add_(bias)
    return y.mul_(weight) if bias is None else torch.addcmul(bias, y, weight, out=y)


def cells_backward(ctx, dy, x, mean, inv_std, weight, want):
    """(dx, dγ, dβ) where cells pool many values (BatchNorm, GroupNorm, InstanceNorm)."""
    want_x, want_weight, want_bias = want
    cell_dims, count = ctx.one_pass[1], ctx.count
    sum_dy = sum_trailing_first(dy, cell_dims)  # Σ dy per cell
    buf = torch.sub(x, mean)  # x − μ as rounded: the one full-size buffer, then dy·(x − μ), then dx
    # μ summed in float64 (a small x, or a float64 one) is rounded once, by δ ≤ 2⁻²⁴|μ|: over at
    # most FEW_VALUES values per statistic δ·Σ dy stays below float32's resolution of dγ
    rounded_once = x.dtype == torch.float64 or (x.numel() < SMALL_TENSOR and count <= FEW_VALUES)
    delta = None if rounded_once else sum_trailing_first(buf, ctx.dims).div_(count)  # mean(x − μ) = μ's rounding
    sum_dy_xhat = sum_trailing_first(buf.mul_(dy), cell_dims)  # Σ dy·(x − μ), then Σ dy·x̂:
    if delta is not None:
        sum_dy_xhat = torch.addcmul(sum_dy_xhat, delta, sum_dy, value=-1)  # Σ dy·(x − μ) − δ·Σ dy
        mean = mean + delta
    sum_dy_xhat = sum_dy_xhat.mul_(inv_std)
    d_bias = _summed_to(sum_dy, ctx.bias_shape) if want_bias else None  # dβ = Σ dy
    d_weight = _summed_to(sum_dy_xhat, weight.shape) if want_weight else None  # dγ = Σ dy·x̂
    if not want_x:
        return None, d_weight, d_bias
    # Σ dx̂ and Σ dx̂·x̂ per statistic, dx̂ = γ·dy with γ constant in a cell
    sum_d_xhat = _summed_to(sum_dy if weight is None else weight * sum_dy, inv_std.shape)
    sum_d_xhat_xhat = _summed_to(sum_dy_xhat if weight is None else weight * sum_dy_xhat, inv_std.shape)
    a = torch.mul(inv_std, inv_std).mul_(sum_d_xhat_xhat).mul_(-1 / count)  # A = −istd²·mean(dx̂·x̂)
    b = torch.mul(inv_std, sum_d_xhat).mul_(-1 / count).addcmul_(a, mean, value=-1)  # B = −istd·mean(dx̂) − A·μ
    d_x = torch.addcmul(b, x, a, out=buf) if x.numel() < SMALL_TENSOR else torch.mul(x, a, out=buf).add_(b)
    return d_x.addcmul_(dy, inv_std if weight is None else weight * inv_std), d_weight, d_bias  # + γ·istd·dy


def _summed_to(t: torch.Tensor, shape) -> torch.Tensor:
    return t if t.shape == shape else t.sum_to_size(shape)


def rows_backward(ctx, dy, x, mean, inv_std, weight, want):
    """LayerNorm's arrangement: R rows of M values, γ and β one per column."""
    want_x, want_weight, want_bias = want
    _, rows, count = ctx.one_pass
    shape = x.shape
    x, dy = x.reshape(rows, count), dy.reshape(rows, count)
    mean, inv_std = mean.reshape(rows, 1), inv_std.reshape(rows, 1)
    buf = torch.mul(x, inv_std).sub_(mean * inv_std).mul_(dy)  # dy·x̂, then dx
    d_bias = dy.sum(0).reshape(ctx.bias_shape) if want_bias else None  # dβ = Σ_rows dy
    d_weight = buf.sum(0).reshape(weight.shape) if want_weight else None  # dγ = Σ_rows dy·x̂
    if not want_x:
        return None, d_weight, d_bias
    gamma = None if weight is None else weight.reshape(count)
    sum_d_xhat = dy.sum(1, keepdim=True) if gamma is None else torch.mv(dy, gamma).unsqueeze(1)  # Σ dx̂ per row
    sum_d_xhat_xhat = buf.sum(1, keepdim=True) if gamma is None else torch.mv(buf, gamma).unsqueeze(1)  # Σ dx̂·x̂
    # dx = istd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)) = istd·(dx̂ + x·A' + B'), A' = −istd·mean(dx̂·x̂), B' = −mean(dx̂) − A'·μ
    a = torch.mul(inv_std, sum_d_xhat_xhat).mul_(-1 / count)
    b = torch.addcmul(sum_d_xhat.mul_(-1 / count), a, mean, value=-1)
    d_x = torch.mul(x, a, out=buf).add_(b)  # every use of dy·x̂ is above
    d_x = d_x.add_(dy) if gamma is None else d_x.addcmul_(dy, gamma)  # + dx̂
    return d_x.mul_(inv_std).reshape(shape), d_weight, d_bias
