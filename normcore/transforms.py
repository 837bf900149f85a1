"""What ``torch.func`` needs from the closed-form Functions in ``backward.py``.

* A vmap rule. A normalization is already batched over every axis its statistics are not
  taken over, so a ``vmap``-ed call is the same call with one more leading axis:
  :func:`batch_first` moves the vmapped dim of every tensor to the front (or broadcasts an
  unbatched one), and the Function runs once with its ``dims`` shifted by one.
* A backward without in-place updates. Under ``jacrev`` (a vmap over the backward) or
  per-sample gradients (``vmap(grad(...))``), an incoming gradient can be batched while a
  saved tensor is not, and an in-place update of the smaller one is impossible. So under a
  torch.func transform, the backward runs the formulas as written, out of place:

      x̂  = (x − μ) · istd                      (x − μ = (x − shift) − mean(x − shift))
      dβ = Σ dy        dγ = Σ dy·x̂        dx̂ = γ·dy
      dx = istd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂·x̂))        (means over the statistic's values)

  and, with fixed (running) statistics, ``dx = γ · istd · dy``; for RMSNorm (``rms_backward.py``),
  with r = rsqrt(mean(x²) + ε) and x̂ = x · r, ``dx = r · (dx̂ − x̂ · mean(dx̂·x̂))``.
* Zero gradients for inputs with no values (torch's own convention; see :func:`empty_grads`).
* :func:`apply`: the Functions are called through it, so that an eager call does not pay for
  what only a transform needs.
"""

from __future__ import annotations

import torch
from torch._functorch.utils import unwrap_dead_wrappers


def is_eager() -> bool:
    """No torch.func transform is active and torch.compile is not tracing: a Python branch on
    a tensor's value is allowed here, and nowhere else."""
    return not (torch._C._are_functorch_transforms_active() or torch.compiler.is_compiling())


def apply(function: type[torch.autograd.Function], *args):
    """``function.apply(*args)``, with every argument of its ``forward`` given.

    A Function that defines ``setup_context`` (as torch.func requires) has ``Function.apply``
    fill in its default arguments through ``inspect.signature`` on every call: ~15 % of a
    small layer's call. Outside torch.func transforms and torch.compile nothing needs that
    binding, so eager calls go straight to the autograd engine's ``apply`` (the same Function,
    forward, ``setup_context`` and backward); under them, ``Function.apply`` runs as usual.
    """
    if not is_eager():
        return function.apply(*args)
    return super(torch.autograd.Function, function).apply(*unwrap_dead_wrappers(args))


def batch_first(batch_size: int, in_dims, x: torch.Tensor, *params):
    """``x`` and ``params`` with the vmapped dim at the front, ready for a call with dims + 1.

    ``x`` always gets the leading dim (expanded when it is not vmapped). A vmapped parameter
    (shaped to broadcast against x) gets it too, padded with size-1 dims up to x's rank so
    that it stays aligned; an unvmapped one broadcasts from the right as it is.
    """
    x = x.movedim(in_dims[0], 0) if in_dims[0] is not None else x.expand(batch_size, *x.shape)
    out = []
    for p, d in zip(params, in_dims[1:]):
        if p is not None and d is not None:
            p = p.movedim(d, 0)
            p = p.reshape((batch_size,) + (1,) * (x.dim() - p.dim()) + tuple(p.shape[1:]))
        out.append(p)
    return (x, *out)


def empty_grads(x, weight, bias_shape, want, nan_weight_grad: bool):
    """Gradients for an input with no values: an empty dx, zero dγ and dβ (sums over nothing).

    ``nan_weight_grad`` reproduces torch's GroupNorm, whose dγ is NaN on a zero spatial size.
    """
    want_x, want_weight, want_bias = want
    d_x = torch.zeros_like(x) if want_x else None
    d_weight = None
    if want_weight:
        d_weight = torch.full_like(weight, float("nan")) if nan_weight_grad else torch.zeros_like(weight)
    d_bias = x.new_zeros(bias_shape) if want_bias else None
    return d_x, d_weight, d_bias


def batch_stats_backward(dy, x, shift, shifted_mean, inv_std, weight, dims, bias_shape, want):
    """dx, dγ, dβ of y = γ·x̂ + β with batch statistics over ``dims``, out of place."""
    want_x, want_weight, want_bias = want
    x_hat = ((x - shift) - shifted_mean) * inv_std  # x̂
    d_bias = dy.sum_to_size(bias_shape) if want_bias else None  # dβ = Σ dy
    d_weight = (dy * x_hat).sum_to_size(weight.shape) if want_weight else None  # dγ = Σ dy·x̂
    if not want_x:
        return None, d_weight, d_bias
    d_xhat = dy if weight is None else dy * weight  # dx̂ = γ·dy
    mean_d_xhat = d_xhat.mean(dims, keepdim=True)  # the path through μ
    mean_d_xhat_xhat = (d_xhat * x_hat).mean(dims, keepdim=True)  # the path through σ²
    return inv_std * (d_xhat - mean_d_xhat - x_hat * mean_d_xhat_xhat), d_weight, d_bias


def fixed_stats_backward(dy, x, mean, inv_std, weight, bias_shape, want):
    """dx, dγ, dβ of y = γ·(x − μ)·istd + β with constant μ and istd, out of place."""
    want_x, want_weight, want_bias = want
    d_bias = dy.sum_to_size(bias_shape) if want_bias else None  # dβ = Σ dy
    d_weight = (dy * (x - mean) * inv_std).sum_to_size(weight.shape) if want_weight else None  # Σ dy·x̂
    d_x = dy * (inv_std if weight is None else weight * inv_std) if want_x else None  # γ·istd·dy
    return d_x, d_weight, d_bias


def rms_backward(dy, x, inv_rms, weight, dims, want):
    """dx, dγ of y = γ·x·r with r = rsqrt(mean(x², dims) + ε), out of place."""
    want_x, want_weight = want
    x_hat = x * inv_rms  # x̂
    d_weight = (dy * x_hat).sum_to_size(weight.shape) if want_weight else None  # dγ = Σ dy·x̂
    if not want_x:
        return None, d_weight
    d_xhat = dy if weight is None else dy * weight  # dx̂ = γ·dy
    mean_d_xhat_xhat = (d_xhat * x_hat).mean(dims, keepdim=True)  # the path through r
    return inv_rms * (d_xhat - x_hat * mean_d_xhat_xhat), d_weight
