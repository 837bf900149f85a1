"""BatchNorm's statistics and gradients summed across the workers of a process group.

The closed form of ``backward.py``, with every per-channel sum taken over all workers' slices
of the batch instead of one. Each worker holds ``n_r`` samples; N = Σ n_r · (spatial size)
values share one statistic per channel. Per channel:

Forward, two all-reduces (the two-pass form)::

    1. all-reduce (count, Σx)                 → N, and a first mean μ₁ = Σx / N
    2. all-reduce (Σ(x − μ₁), Σ(x − μ₁)²)     → δ = Σ(x − μ₁) / N, the correction to μ₁
       μ = μ₁ + δ          σ² = Σ(x − μ₁)² / N − δ²          (biased)
       x̂ = ((x − μ₁) − δ) · istd,   istd = 1 / sqrt(σ² + ε)

Why the second pass also sums ``x − μ₁``: μ₁ is a rounded number (at an offset of 1e4 in
float32 it is ~1e-3 off), and ``x − μ₁`` is exact (x and μ₁ are close: Sterbenz's lemma). δ is
a small sum, exact to float32's last bits, so ``(x − μ₁) − δ`` is ``x − μ`` without ever
going through a rounded μ, and every worker agrees on the shift μ₁ without a third
collective. (This is what ``moments.shifted_moments`` does within one process, with one
sample's value as the shift.) ``E[x²] − E[x]²`` is never used.

Backward, one all-reduce: ``(Σ dy, Σ dy·(x − μ))`` per channel, so that with dx̂ = γ·dy::

    dx = istd · (dx̂ − γ·Σdy / N − x̂ · γ·istd·Σ dy·(x − μ) / N)

is, on every worker, exactly the single-process gradient of its slice. dγ = istd·Σ dy·(x − μ)
and dβ = Σ dy are this worker's *own* sums: DistributedDataParallel then averages them across
workers like every other parameter gradient (so scale the loss to the global batch, see
``SyncBatchNorm``).

A worker with no samples joins every collective with zero sums (its count is 0). The count
travels in the input's dtype: exact up to 2**24 values per channel in float32 (beyond, it is
off by ~1e-7 relative, below float32's own rounding of the sums).

:func:`time_collectives` is an opt-in timer for these all-reduces (the lab's distributed run
reports it). It counts the wall time inside ``all_reduce``, which includes waiting for the
slowest worker to arrive; on CUDA it synchronizes the device around each call while active.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.autograd.function import once_differentiable

from . import checks
from .moments import sum_of_squares


@dataclass
class CollectiveTimer:
    """Seconds spent inside SyncBatchNorm's all-reduces, and how many there were."""

    seconds: float = 0.0
    calls: int = 0


_ACTIVE: list[CollectiveTimer] = []


@contextmanager
def time_collectives():
    """``with time_collectives() as timer: ...`` adds up the all-reduces of every
    SyncBatchNorm in this process into ``timer`` (forward and backward). Off by default."""
    timer = CollectiveTimer()
    _ACTIVE.append(timer)
    try:
        yield timer
    finally:
        _ACTIVE.remove(timer)


def all_reduce_sum(t: torch.Tensor, group) -> torch.Tensor:
    """Sum ``t`` in place over the workers of ``group``; timed while a timer is active."""
    if not _ACTIVE:
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
        return t
    if t.is_cuda:
        torch.cuda.synchronize(t.device)
    start = time.perf_counter()
    dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
    if t.is_cuda:
        torch.cuda.synchronize(t.device)
    elapsed = time.perf_counter() - start
    for timer in _ACTIVE:
        timer.seconds += elapsed
        timer.calls += 1
    return t


def _sums(t: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Σ over ``dims`` with keepdim (zeros for a slice with no samples)."""
    return t.sum(dims, keepdim=True)


def _check_total(total: int, shape) -> None:
    """The batch as a whole needs more than one value per channel (as BatchNorm's check)."""
    if total == 1:
        raise checks.NormcoreError(
            f"Expected more than 1 value per channel when training, got 1 over all workers (this worker's "
            f"input size is {tuple(shape)}). A mean over one value is that value and every output would be "
            "0 (then the bias). Use a larger global batch, or call .eval() to use the running statistics."
        )


class NormalizeAcrossWorkers(torch.autograd.Function):
    """y = γ·x̂ + β with μ and σ² over every worker's slice; see the module docstring.

    ``x`` is (N, C, *spatial) in the compute dtype; ``weight``/``bias`` are ``None`` or
    shaped (1, C, 1, ...). Returns ``(y, mean, var, total)``: mean and biased var are (C,),
    ``total`` the values per channel over all workers (a Python int). Only y is differentiable.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps, group):
        dims = (0,) + tuple(range(2, x.dim()))
        channels = x.shape[1]
        local_count = math.prod(x.shape[d] for d in dims)
        first = torch.cat([x.new_full((1,), local_count), _sums(x, dims).reshape(channels)])
        all_reduce_sum(first, group)  # collective 1: (count, Σx)
        total = int(round(first[0].item()))
        _check_total(total, x.shape)
        stat_shape = (1, channels) + (1,) * (x.dim() - 2)
        mu1 = (first[1:] / max(total, 1)).reshape(stat_shape)  # μ₁, the agreed shift
        centered = x - mu1  # exact where x and μ₁ are within a factor 2 of each other
        second = torch.cat([_sums(centered, dims).reshape(channels), sum_of_squares(centered, dims).reshape(channels)])
        all_reduce_sum(second, group)  # collective 2: (Σ(x − μ₁), Σ(x − μ₁)²)
        delta = (second[:channels] / total).reshape(stat_shape)  # 0/0 = NaN when no worker has values
        var = (second[channels:] / total).reshape(stat_shape) - delta.square()
        var = var.clamp_min(0)
        inv_std = torch.rsqrt(var + eps)
        y = centered.sub_(delta).mul_(inv_std if weight is None else weight * inv_std)  # γ·x̂, in place
        if bias is not None:
            y.add_(bias)
        ctx.save_for_backward(x, mu1, delta, inv_std, weight)
        ctx.dims, ctx.group, ctx.total = dims, group, total
        ctx.bias_shape = None if bias is None else bias.shape
        mean, var = (mu1 + delta).reshape(channels), var.reshape(channels)
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var, total

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, _d_mean, _d_var, _d_total):
        x, mu1, delta, inv_std, weight = ctx.saved_tensors
        want_x, want_weight, want_bias = ctx.needs_input_grad[:3]
        dims, channels = ctx.dims, x.shape[1]
        centered = (x - mu1).sub_(delta)  # x − μ, recomputed exactly as in forward
        sum_dy = _sums(dy, dims)  # this worker's Σ dy per channel
        sum_dy_centered = _sums(dy * centered, dims)  # this worker's Σ dy·(x − μ)
        d_weight = None
        if want_weight:  # dγ = Σ dy·x̂ (local); 0 when no worker had values (istd is NaN then)
            d_weight = sum_dy_centered * inv_std if ctx.total else torch.zeros_like(sum_dy_centered)
        d_bias = sum_dy.sum_to_size(ctx.bias_shape) if want_bias else None  # dβ = Σ dy (local)
        d_x = None
        if want_x:
            both = torch.cat([sum_dy.reshape(channels), sum_dy_centered.reshape(channels)])
            all_reduce_sum(both, ctx.group)  # the one backward collective: global Σdy, Σ dy·(x − μ)
            gamma = 1.0 if weight is None else weight
            total = max(ctx.total, 1)
            mean_d_xhat = gamma * both[:channels].reshape(inv_std.shape) / total  # the path through μ
            mean_d_xhat_xhat = gamma * inv_std * both[channels:].reshape(inv_std.shape) / total  # through σ²
            d_x = centered.mul_(-inv_std * mean_d_xhat_xhat)  # − x̂·mean(dx̂·x̂), in place
            d_x = d_x.add_(dy * gamma).sub_(mean_d_xhat).mul_(inv_std)
        return d_x, d_weight, d_bias, None, None
