"""RMSNorm's closed-form backward, as a ``torch.autograd.Function``.

Forward, over the normalized (trailing) axes, M values per row::

    ms = mean(x²)                r  = rsqrt(ms + ε)
    x̂  = x · r                   y  = γ · x̂                  (no μ, no β)

Derivation. With dx̂ = γ · dy, the only path besides the direct one runs through r, which
every value of the row shares: ∂r/∂x_i = −½ (ms + ε)^(−3/2) · 2 x_i / M = −r³ x_i / M. So ::

    dx_i = r · dx̂_i + Σ_j dx̂_j x_j · ∂r/∂x_i
         = r · dx̂_i − (r³ x_i / M) · Σ_j dx̂_j x_j
         = r · (dx̂_i − x̂_i · mean(dx̂ · x̂))
    dγ   = Σ dy · x̂              (summed over the leading, un-normalized axes)

LayerNorm's is ``istd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂))`` (``backward.py``). RMSNorm has
no μ, so the path through the mean, ``− mean(dx̂)``, is gone; the path through the
statistic it divides by stays, as the projection ``− x̂ · mean(dx̂ · x̂)`` that removes from
dx̂ its component along x̂ (scaling a row does not change its output). There is no dβ.

How it is computed: ``dy · x̂`` once, into the one full-size buffer backward allocates; from
it a sum over the rows and a matrix-vector product (``einsum``), nothing else full-size::

    dγ              = Σ_rows dy · x̂
    mean(dx̂ · x̂)    = 1/M · Σ_row γ · (dy · x̂)

then the same buffer becomes ``dx = (γ · dy − x · (r · mean(dx̂ · x̂))) · r``. Under a
torch.func transform the formulas run out of place instead (``transforms.rms_backward``),
and the Function has a vmap rule, as the others in ``backward.py``.
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

from . import transforms
from .backward import _sum_of_product


class NormalizeByRMS(torch.autograd.Function):
    """y = γ · x · rsqrt(mean(x², over ``dims``) + ε).

    ``weight`` is ``None`` or shaped to broadcast against ``x``, in x's dtype; ``dims`` are
    non-negative. Returns ``(y, mean_square, inv_rms)``; only y is differentiable, the other
    two (keepdim) are the statistic and what backward needs (returned so that
    ``setup_context`` can save them, as torch.func requires).
    """

    @staticmethod
    def forward(x, weight, dims, eps):
        # torch's own order of operations (its CPU rms_norm is composite): pow(x, 2).mean,
        # + ε, rsqrt, x · r, then · γ. So the output agrees with torch's bit for bit.
        mean_square = x.square().mean(dims, keepdim=True)
        inv_rms = torch.rsqrt(mean_square + eps)
        y = x * inv_rms
        if weight is not None:
            y = y.mul_(weight) if y.shape == torch.broadcast_shapes(y.shape, weight.shape) else y * weight
        return y, mean_square, inv_rms

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, dims, _eps = inputs
        _y, mean_square, inv_rms = output
        ctx.mark_non_differentiable(mean_square, inv_rms)
        ctx.save_for_backward(x, inv_rms, weight)
        ctx.dims = dims

    @staticmethod
    def vmap(info, in_dims, x, weight, dims, eps):
        x, weight = transforms.batch_first(info.batch_size, in_dims[:2], x, weight)
        out = NormalizeByRMS.apply(x, weight, tuple(d + 1 for d in dims), eps)  # vmapped dim 0 is a row index
        return out, (0, 0, 0)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, *_unused):
        x, inv_rms, weight = ctx.saved_tensors
        want = ctx.needs_input_grad[:2]
        if x.numel() == 0:
            grads = transforms.empty_grads(x, weight, None, (*want, False), False)[:2]
        elif torch._C._are_functorch_transforms_active():  # no in-place updates under vmap/grad
            grads = transforms.rms_backward(dy, x, inv_rms, weight, ctx.dims, want)
        else:
            grads = _rms_backward(dy, x, inv_rms, weight, ctx.dims, want)
        return *grads, None, None


def _rms_backward(dy, x, inv_rms, weight, dims, want):
    """dx and dγ, one full-size buffer (see the module docstring). Returns (dx, dγ)."""
    want_x, want_weight = want
    # Closed-form terms (lab Gradients page): dx = (istd/M)·(M·dx̂ − x̂·Σ(dx̂·x̂)), istd = r; no Σdx̂ (no μ).
    count = math.prod(x.shape[d] for d in dims)  # M, values per row
    buf = torch.mul(dy, x).mul_(inv_rms)  # dy · x̂, summed into the term Σ(dx̂·x̂) below
    d_weight = None
    if want_weight:  # dγ = Σ dy·x̂ over the rows (torch's sum: a cascade, accurate in float32)
        d_weight = buf.sum_to_size(weight.shape)
        if d_weight.data_ptr() == buf.data_ptr():
            d_weight = d_weight.clone()  # nothing was summed (a single row) and buf becomes dx below
    if not want_x:
        return None, d_weight
    if weight is None:  # Σ_row dx̂·x̂ with dx̂ = dy
        sum_d_xhat_xhat = buf.sum(dims, keepdim=True)
    else:  # dx̂ = γ · dy: a matrix-vector product
        sum_d_xhat_xhat = _sum_of_product(buf, weight, inv_rms.shape, True)
    mean_d_xhat_xhat = sum_d_xhat_xhat / count  # the path through r: term Σ(dx̂·x̂), times the 1/M of istd/M
    # dx = r · (dx̂ − x̂ · mean(dx̂·x̂)) = (dx̂ − x · (r · mean(dx̂·x̂))) · r, in place on buf
    d_x = torch.mul(x, -(inv_rms * mean_d_xhat_xhat), out=buf)  # every use of dy·x̂ is above
    d_x = d_x.add_(dy) if weight is None else d_x.addcmul_(dy, weight)
    return d_x.mul_(inv_rms), d_weight  # · r: the istd of istd/M
