"""Closed-form backward passes, as ``torch.autograd.Function``s.

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

How it is computed
------------------
The same formulas, arranged for speed. These layers do almost no arithmetic per value, so
their cost is the number of passes over full-size tensors and the fresh full-size buffers
(whose memory must be faulted in, which can cost more than the pass that fills it):

* Each direction allocates one full-size tensor, the one it returns (y, then dx), as
  torch's own kernels do; every other full-size step works in place on it.
* Nothing full-size is saved for backward except ``x``, which is alive anyway. The small
  per-statistic ``shift`` and ``mean(x − shift)`` are kept instead, so backward recomputes
  ``x − μ = (x − shift) − mean(x − shift)`` exactly as the forward did (see
  ``moments.shifted_moments`` for why it never goes through the rounded μ).
* Backward needs three sums over full-size tensors, ``Σ dy``, ``Σ dy·(x − μ)`` and the
  rounding check ``Σ (x − μ)`` (see below), taken
  per *cell*: the values that share one statistic and one γ/β entry. A cell is a channel
  for BatchNorm and a (sample, channel) for GroupNorm and InstanceNorm; LayerNorm's γ is
  per element, so there a cell is a single value. Everything else comes from the cell sums::

      dβ            = Σ_cells Σ dy
      dγ            = Σ_cells istd · Σ dy·(x − μ)
      mean(dx̂)      = (1/M) Σ_red γ · Σ dy                    (dx̂ = γ·dy, γ constant in a cell)
      mean(dx̂ · x̂)  = (istd/M) Σ_red γ · Σ dy·(x − μ)

  and dx is §3's bracket, one pass per term.

Accuracy. ``Σ dy·(x − μ)`` is summed as it stands, never as ``Σ dy·(x − shift) − mean(x −
shift)·Σ dy``, a difference of two large sums that loses float32 digits. The rounding of
``mean(x − shift)`` itself would still put ``δ·Σ dy`` into dγ (δ ~ 1e-7·|μ − shift|); the
computed ``mean(x − μ)`` is −δ, and is taken back out. LayerNorm (a cell per value) sums
``dy·x̂`` directly over the rows. In float32 the outputs and every gradient are then as close
to float64 as torch's own kernels' are (``tests/test_grad_accuracy.py``).

torch.func. Each Function has a ``setup_context`` (the statistics backward needs come out of
``forward`` as non-differentiable outputs) and a ``vmap`` rule; under a transform, backward
runs the same formulas out of place (``transforms.py``).
"""

from __future__ import annotations

import math
import string

import torch
from torch.autograd.function import once_differentiable

from . import transforms
from .moments import moments_from_sums, shifted_moments, sum_trailing_first
from .one_pass import affine_forward, cells_backward, max_offset, rows_backward


def _broadcast_shape(*shapes) -> tuple[int, ...]:
    """The shape a product of tensors with these (broadcast-compatible) shapes would have."""
    ndim = max(len(s) for s in shapes)
    padded = [(1,) * (ndim - len(s)) + tuple(s) for s in shapes]
    return tuple(max(sizes) for sizes in zip(*padded))


def _cell_shape(inv_std: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None = None) -> tuple[int, ...]:
    """One entry per cell: per statistic (istd's shape) and per γ and β entry."""
    return _broadcast_shape(*(t.shape for t in (inv_std, weight, bias) if t is not None))


def _sum_of_product(a: torch.Tensor, b: torch.Tensor, shape, large: bool) -> torch.Tensor:
    """``(a · b).sum_to_size(shape)``.

    When ``large`` (LayerNorm: one factor as big as x), an einsum contracts the two without
    building ``a · b``; it becomes a matrix-vector product. Small factors multiply directly.
    """
    if not large:
        return (a * b).sum_to_size(shape)
    ndim = max(a.dim(), b.dim())
    letters = string.ascii_letters[:ndim]
    target = (1,) * (ndim - len(shape)) + tuple(shape)
    kept = "".join(letter for letter, size in zip(letters, target) if size != 1)
    out = torch.einsum(f"{letters[ndim - a.dim():]},{letters[ndim - b.dim():]}->{kept}", a, b)
    return out.reshape(shape)


class NormalizeWithBatchStats(torch.autograd.Function):
    """y = γ · (x − μ_batch) / sqrt(σ²_batch + ε) + β, with μ and σ² taken over ``dims``.

    ``weight`` and ``bias`` are ``None`` or already shaped to broadcast against ``x``;
    ``dims`` are non-negative. Returns ``(y, mean, var, shift, shifted_mean, inv_std)``: only
    y is differentiable; mean and var (keepdim) are the statistics, the last three are what
    backward needs (returned so that ``setup_context`` can save them, as torch.func requires).
    ``nan_weight_grad_if_empty``: torch's GroupNorm quirk, dγ = NaN when every statistic has
    no values but some exist (a zero spatial size); every other norm gives zeros there.
    """

    @staticmethod
    def forward(x, weight, bias, dims, eps, nan_weight_grad_if_empty=False, one_pass=None):
        stats = None if one_pass is None else moments_from_sums(x, dims, max_offset(one_pass))  # μ, σ² from Σx, Σx²
        if stats is not None:
            mean, var = stats
            inv_std = torch.rsqrt(var + eps)
            y = affine_forward(x, mean, inv_std, weight, bias, one_pass)
            return y, mean, var, None, None, inv_std  # backward: one_pass.cells_backward or rows_backward
        centered, mean, var, shift, shifted_mean = shifted_moments(x, dims, return_shift=True)  # x − μ, μ, σ²
        inv_std = torch.rsqrt(var + eps)  # istd = 1 / sqrt(σ² + ε)
        # y = γ·x̂ + β = (x − μ)·istd·γ + β, in place on the buffer that holds x − μ.
        # With fewer cells than values, γ·istd is formed once and applied in one pass.
        y = centered
        if weight is None:
            y.mul_(inv_std)
        elif math.prod(_cell_shape(inv_std, weight, bias)) < x.numel():
            y.mul_(weight * inv_std)
        else:
            y.mul_(inv_std).mul_(weight)
        if bias is not None:
            y.add_(bias)
        return y, mean, var, shift, shifted_mean, inv_std

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias, dims, _eps, *flags = inputs
        _y, mean, var, shift, shifted_mean, inv_std = output
        ctx.set_materialize_grads(False)  # no zero gradients built for the statistics' outputs
        ctx.one_pass = flags[1] if shift is None else None  # the forward took the one-pass form
        if ctx.one_pass is not None:
            ctx.mark_non_differentiable(mean, var, inv_std)
            ctx.save_for_backward(x, mean, inv_std, weight)
            ctx.count = math.prod(x.shape[d] for d in dims)
        else:
            ctx.mark_non_differentiable(mean, var, shift, shifted_mean, inv_std)
            ctx.save_for_backward(x, shift, shifted_mean, inv_std, weight)
            ctx.cell = _cell_shape(inv_std, weight, bias)
            ctx.small_cells = math.prod(ctx.cell) < x.numel()  # False for LayerNorm (and empty x)
            ctx.cell_dims = _reduced_to(x.shape, ctx.cell)  # the dims a cell's values lie along
        ctx.dims = dims
        ctx.bias_shape = None if bias is None else bias.shape
        ctx.nan_weight_grad_if_empty = bool(flags and flags[0])

    @staticmethod
    def vmap(info, in_dims, x, weight, bias, dims, eps, nan_weight_grad_if_empty=False, one_pass=None):
        x, weight, bias = transforms.batch_first(info.batch_size, in_dims[:3], x, weight, bias)
        dims = tuple(d + 1 for d in dims)  # the vmapped dim is now dim 0, outside every statistic
        out = NormalizeWithBatchStats.apply(x, weight, bias, dims, eps, nan_weight_grad_if_empty)
        return out, (0,) * len(out)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, *_unused):
        if dy is None:  # no gradient reached y (grads are not materialized: see setup_context)
            return (None,) * 7
        want = ctx.needs_input_grad[:3]
        if ctx.one_pass is not None:
            x, mean, inv_std, weight = ctx.saved_tensors
            one_pass_backward = rows_backward if ctx.one_pass[0] == "rows" else cells_backward
            return *one_pass_backward(ctx, dy, x, mean, inv_std, weight, want), None, None, None, None
        x, shift, shifted_mean, inv_std, weight = ctx.saved_tensors
        if x.numel() == 0:
            nan = ctx.nan_weight_grad_if_empty and inv_std.numel() > 0
            grads = transforms.empty_grads(x, weight, ctx.bias_shape, want, nan)
        elif torch._C._are_functorch_transforms_active():  # no in-place updates under vmap/grad
            grads = transforms.batch_stats_backward(dy, x, shift, shifted_mean, inv_std, weight, ctx.dims, ctx.bias_shape, want)
        else:
            grads = _batch_stats_backward(ctx, dy, x, shift, shifted_mean, inv_std, weight, want)
        return *grads, None, None, None, None


def _batch_stats_backward(ctx, dy, x, shift, shifted_mean, inv_std, weight, want):
    """The closed form, arranged for speed (see the module docstring). Returns (dx, dγ, dβ).

    Closed-form terms (lab Gradients page): dx = (istd/M)·(M·dx̂ − Σdx̂ − x̂·Σ(dx̂·x̂)), dx̂ = γ·dy.
    """
    want_x, want_weight, want_bias = want
    buf, shifted_mean, sum_dy, sum_dy_xhat = _cell_sums(ctx, dy, x, shift, shifted_mean, inv_std)
    d_bias = sum_dy.sum_to_size(ctx.bias_shape) if want_bias else None  # dβ = Σ dy
    d_weight = sum_dy_xhat.sum_to_size(weight.shape) if want_weight else None  # dγ = Σ dy·x̂
    if d_weight is not None and d_weight.data_ptr() == buf.data_ptr():
        d_weight = d_weight.clone()  # nothing was summed (a batch of one) and buf becomes dx below
    if not want_x:
        return None, d_weight, d_bias
    return _input_grad(ctx, dy, x, shift, shifted_mean, inv_std, weight, sum_dy, sum_dy_xhat, buf), d_weight, d_bias


def _cell_sums(ctx, dy, x, shift, shifted_mean, inv_std):
    """Σdy and Σ(dy·x̂) per cell (they give dβ and dγ, and Σdx̂ = γ·Σdy, Σ(dx̂·x̂) = γ·Σ(dy·x̂)).

    Returns ``(buf, shifted_mean, Σdy, Σdy·x̂)``: ``buf`` is the one full-size buffer, which
    the input gradient reuses, and ``shifted_mean`` is corrected for its rounding (below)."""
    large = not ctx.small_cells
    count = math.prod(x.shape[d] for d in ctx.dims)  # M, values per statistic
    sum_dy = _cell_sum(dy, ctx)  # Σ dy per cell (dy itself when a cell is one value)
    # buf: x − μ = (x − shift) − shifted_mean (never through the rounded μ), then dy·(x − μ),
    # or dy·x̂ where cells are single values; it holds dx later.
    buf = torch.sub(x, shift).sub_(shifted_mean)
    if large:  # per-row istd cannot be applied after the sums over rows: take x̂ itself
        buf.mul_(inv_std)
    else:
        # shifted_mean is rounded to float32, by δ ~ 1e-7·|μ − shift|, and Σ dy·(x − μ) would be
        # off by δ·Σ dy: for BatchNorm's few statistics of many values, more than torch's dγ
        # is. mean(buf) = −δ (a sum that float32 holds well: buf's values have mean ≈ 0), and
        # it is taken back out of the sums below. (LayerNorm's rows each have their own δ, so
        # their errors do not add up the same way.)
        residual = sum_trailing_first(buf, ctx.dims).div_(count)  # mean(x − μ) as computed: −δ
        shifted_mean = shifted_mean + residual  # shift + shifted_mean = μ, now to within float32's last bit
    sum_dy_xhat = _cell_sum(buf.mul_(dy), ctx)  # Σ dy·(x − μ) per cell (Σ dy·x̂ if large)
    if not large:
        # Σ dy·x̂ per cell: (Σ dy·buf − residual·Σ dy)·istd, istd being constant in a cell
        sum_dy_xhat = (sum_dy_xhat - residual * sum_dy) * inv_std
    return buf, shifted_mean, sum_dy, sum_dy_xhat


def _reduced_to(shape, cell) -> tuple[int, ...]:
    """The dims along which a tensor of ``shape`` is summed to the (broadcastable) ``cell`` shape."""
    padded = (1,) * (len(shape) - len(cell)) + tuple(cell)
    return tuple(d for d, (size, kept) in enumerate(zip(shape, padded)) if kept == 1 and size != 1)


def _cell_sum(t: torch.Tensor, ctx) -> torch.Tensor:
    """Σ t per cell: ``t.sum_to_size(ctx.cell)``, with the contiguous trailing dims summed first."""
    return sum_trailing_first(t, ctx.cell_dims).reshape(ctx.cell) if ctx.cell_dims else t


def _input_grad(ctx, dy, x, shift, shifted_mean, inv_std, weight, sum_dy, sum_dy_xhat, buf):
    """dx = istd · (dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)), formed in ``buf``."""
    large = not ctx.small_cells
    count = math.prod(x.shape[d] for d in ctx.dims)
    if weight is None:  # dx̂ = dy
        sum_d_xhat = sum_dy.sum_to_size(inv_std.shape)
        sum_d_xhat_xhat = sum_dy_xhat.sum_to_size(inv_std.shape)
    else:  # dx̂ = γ·dy, with γ constant within a cell
        sum_d_xhat = _sum_of_product(weight, sum_dy, inv_std.shape, large)
        sum_d_xhat_xhat = _sum_of_product(weight, sum_dy_xhat, inv_std.shape, large)
    # The 1/M of the factor istd/M, applied to both sums; istd multiplies them when dx is formed below.
    mean_d_xhat = sum_d_xhat / count  # mean(dx̂): the path through μ
    mean_d_xhat_xhat = sum_d_xhat_xhat / count  # mean(dx̂·x̂): the path through σ²
    # With x̂ = istd·((x − shift) − shifted_mean), the last two terms of dx are a·(x − shift) + b,
    # with one coefficient pair per statistic:
    a = -inv_std * mean_d_xhat_xhat
    b = -a * shifted_mean - mean_d_xhat
    # (dx̂ is added before b, so that where a statistic holds a single value, dx̂ − mean(dx̂)
    # cancels exactly to the true gradient, 0.)
    d_x = torch.sub(x, shift, out=buf)  # every use of buf's old contents is above this line
    # The istd of the factor istd/M:
    if ctx.small_cells:  # the outer istd folded into the coefficients (small tensors)
        d_x.mul_(a * inv_std)
        d_x.addcmul_(dy, inv_std if weight is None else weight * inv_std)  # + istd·dx̂
        d_x.add_(b * inv_std)
    else:
        d_x.mul_(a)  # − x̂·mean(dx̂·x̂), up to the constant in b
        d_x = d_x.add_(dy) if weight is None else d_x.addcmul_(dy, weight)  # + dx̂
        d_x.add_(b).mul_(inv_std)  # − mean(dx̂), then · istd
    return d_x


class NormalizeWithFixedStats(torch.autograd.Function):
    """y = γ · (x − μ) / sqrt(σ² + ε) + β with constant μ, σ² (running statistics, eval mode).

    ``mean``/``var``/``weight``/``bias`` are ``None`` or shaped to broadcast against ``x``.
    Returns ``(y, inv_std)``; only y is differentiable, and only in x, γ and β (as torch's).
    """

    @staticmethod
    def forward(x, mean, var, weight, bias, eps):
        inv_std = torch.rsqrt(var + eps)  # istd = 1 / sqrt(σ² + ε)
        scale = inv_std if weight is None else weight * inv_std  # γ · istd, one per channel
        y = (x - mean).mul_(scale)  # γ · x̂, in place on the one new tensor
        if bias is not None:
            y.add_(bias)  # + β
        return y, inv_std

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, mean, _var, weight, bias, _eps = inputs
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(x, mean, output[1], weight)
        ctx.bias_shape = None if bias is None else bias.shape

    @staticmethod
    def vmap(info, in_dims, x, mean, var, weight, bias, eps):
        x, mean, var, weight, bias = transforms.batch_first(info.batch_size, in_dims[:5], x, mean, var, weight, bias)
        out = NormalizeWithFixedStats.apply(x, mean, var, weight, bias, eps)
        return out, (0, 0)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, _d_inv_std):
        x, mean, inv_std, weight = ctx.saved_tensors
        want_x, _, _, want_weight, want_bias = ctx.needs_input_grad[:5]
        if torch._C._are_functorch_transforms_active() or x.numel() == 0:
            d_x, d_weight, d_bias = transforms.fixed_stats_backward(
                dy, x, mean, inv_std, weight, ctx.bias_shape, (want_x, want_weight, want_bias)
            )
            return d_x, None, None, d_weight, d_bias, None
        d_bias = dy.sum_to_size(ctx.bias_shape) if want_bias else None  # dβ = Σ dy
        d_weight = d_x = buf = None
        if want_weight:  # dγ = Σ dy·x̂ = Σ_cells istd · Σ dy·(x − μ)
            buf = torch.sub(x, mean).mul_(dy)
            d_weight = (buf.sum_to_size(_cell_shape(inv_std, weight)) * inv_std).sum_to_size(weight.shape)
        if want_x:  # dx = dy · γ · istd: the statistics are constants, no paths through them
            scale = inv_std if weight is None else weight * inv_std
            d_x = torch.mul(dy, scale) if buf is None else torch.mul(dy, scale, out=buf)
        return d_x, None, None, d_weight, d_bias, None
