"""Forward formulas, with the ``torch.nn.functional`` signatures.

Every normalization here is the same three lines; they differ only in *which* values share
a statistic (``dims``) and in the shape of the affine parameters:

    μ, σ² = mean and biased variance over dims      (moments.shifted_moments)
    x̂     = (x − μ) / sqrt(σ² + ε)
    y     = γ · x̂ + β

rms_norm (in ``rms_norm.py``) drops the centring and β: x̂ = x / sqrt(mean(x²) + ε), y = γ · x̂;
its NormStats report μ = 0 and σ² = the mean square, so the lines above still read true.

=============  =====================================  ===================  =================
norm           statistic taken over                   stats shape          affine per
=============  =====================================  ===================  =================
batch_norm     N and spatial dims (all but C)         (C,)                 channel
layer_norm     the last len(normalized_shape) dims    leading dims         element
group_norm     C/G channels of a group and spatial    (N, G)               channel
instance_norm  spatial dims                           (N, C)               channel
rms_norm       the last len(normalized_shape) dims    leading dims         element (γ only)
=============  =====================================  ===================  =================

Each takes torch 2.13's signature, accepts exactly the inputs torch accepts (any rank from 2
up, zero-size dims, any eps torch allows, any momentum) and raises where torch raises (see
``checks.py``). Keyword-only extras: ``backward="closed_form"`` (default) runs the
hand-derived gradient in ``backward.py`` (``rms_backward.py``), ``backward="autograd"``
lets torch differentiate these formulas itself; ``return_stats=True`` also returns the
:class:`~normcore.moments.NormStats` used; ``unbiased_running_var`` (batch/instance norm).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from . import checks, transforms
from .axes import reduced_dims
from .backward import NormalizeWithBatchStats, NormalizeWithFixedStats
from .moments import NormStats, compute_dtype, standardize
from .one_pass import one_pass_layout
from .dynamic_tanh import dynamic_tanh  # DyT: no statistics, plain autograd; its own file
from .rms_norm import rms_norm  # its own file: no centring, no β

__all__ = ["batch_norm", "dynamic_tanh", "group_norm", "instance_norm", "layer_norm", "rms_norm", "tf_batch_normalization"]


def __getattr__(name: str):
    """``tf_batch_normalization`` (TensorFlow's formula) lives in ``normcore.keras``, which
    is loaded only when it is asked for."""
    if name == "tf_batch_normalization":
        from .keras.tf_nn import tf_batch_normalization

        return tf_batch_normalization
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Plan(NamedTuple):
    """What a call's checks establish, kept per configuration and input shape and dtype."""

    dims: tuple[int, ...]  # the axes one statistic is taken over (axes.reduced_dims)
    count: int  # values per statistic
    stats_shape: tuple[int, ...]  # one entry per statistic
    affine_shape: tuple[int, ...] | None  # γ and β viewed to broadcast against x
    one_pass: tuple | None  # how the one-pass form sums (one_pass.one_pass_layout), or None
    dtype: torch.dtype  # the dtype statistics are computed in


def _plan(x_shape, dims, stats_shape, affine_shape, weight, bias, dtype) -> Plan:
    count = math.prod(x_shape[d] for d in dims)
    shapes = [None if t is None else affine_shape or t.shape for t in (weight, bias)]
    return Plan(dims, count, tuple(stats_shape), affine_shape, one_pass_layout(x_shape, dims, *shapes), dtype)


def _view(t: torch.Tensor | None, shape, dtype=None) -> torch.Tensor | None:
    """γ, β or a running statistic viewed to ``shape``; a half-precision one cast to the compute
    ``dtype``, as torch's kernels compute (so the closed-form backward never mixes dtypes)."""
    if t is None:
        return t
    if dtype is not None and t.dtype in (torch.float16, torch.bfloat16) and t.dtype != dtype:
        t = t.to(dtype)
    return t if shape is None else t.reshape(shape)


def _normalize(x, weight, bias, plan: Plan, eps, backward, nan_weight_grad_if_empty=False):
    """y = γ x̂ + β with batch statistics over ``plan.dims``; returns (y, mean, var) with keepdim."""
    if backward == "closed_form":
        one_pass = plan.one_pass if transforms.is_eager() else None  # data-dependent: eager calls only
        out = transforms.apply(NormalizeWithBatchStats, x, weight, bias, plan.dims, eps, nan_weight_grad_if_empty, one_pass)
        return out[0], out[1], out[2]
    x_hat, mean, var, _ = standardize(x, plan.dims, eps)
    y = x_hat if weight is None else x_hat * weight
    if nan_weight_grad_if_empty and x.numel() == 0 and weight is not None:
        # torch's GroupNorm quirk: its dγ = Σ (Σdy − μ·Σdy)·istd is NaN here, as μ is (0 · NaN).
        y = y + (weight * mean).sum()
    return (y if bias is None else y + bias), mean, var


def _normalize_fixed(x, mean, var, weight, bias, eps, backward):
    """y = γ (x − μ) / sqrt(σ² + ε) + β with given constants μ, σ² (eval mode)."""
    if backward == "closed_form":
        return transforms.apply(NormalizeWithFixedStats, x, mean, var, weight, bias, eps)[0]
    y = (x - mean) * torch.rsqrt(var + eps)
    y = y if weight is None else y * weight
    return y if bias is None else y + bias


def _update_running(running_mean, running_var, mean, var, momentum, count, unbiased):
    """running = (1 − m) · running + m · batch   (PyTorch's convention; m weights the NEW value).

    The running variance takes the *unbiased* batch variance σ² · n / (n − 1), as torch does,
    unless ``unbiased=False`` (the d2l / textbook choice). Any momentum is taken, as torch
    takes it: outside [0, 1] the update extrapolates, and a NaN one gives NaN statistics.
    Per-instance statistics (N, C) enter as their batch average, as torch's instance_norm.
    """
    mean, var = _detached(mean), _detached(var)  # the buffers stay out of the autograd graph
    factor = count / (count - 1) if unbiased else 1.0  # count > 1 here: training rejects one value per statistic
    if mean.dim() == 2:  # instance norm: the batch average of per-instance statistics
        mean, var = mean.mean(0), (var * factor).mean(0)
        factor = 1.0
    for running, batch, weight in ((running_mean, mean, momentum), (running_var, var, momentum * factor)):
        if running is None:
            continue
        if running.dtype in (torch.float16, torch.bfloat16):  # computed in float32, rounded once (as torch)
            running.copy_(running.float().mul_(1 - momentum).add_(batch.float(), alpha=weight))
        else:
            running.mul_(1 - momentum).add_(batch if batch.dtype == running.dtype else batch.to(running.dtype), alpha=weight)


def _detached(t: torch.Tensor) -> torch.Tensor:
    """``t.detach()``: the closed form's statistics are never part of the graph already."""
    return t.detach() if t.requires_grad else t


def _no_values(input, weight, bias, stats: NormStats, return_stats: bool):
    """An input with no values: torch returns it (empty) without running its kernel.

    γ and β still get gradients, zeros (sums over nothing), whatever their sizes.
    """
    y = input.clone()
    for p in (weight, bias):
        if p is not None:
            y = y + 0 * p.sum()  # d/dp = 0 · Σ dy = 0
    return (y, stats) if return_stats else y


def _stats_of_nothing(input, shape, running_mean, running_var) -> NormStats:
    """The statistics an empty input was (not) normalized with: NaN, or the running ones."""
    if running_mean is None or running_var is None:
        nan = input.new_full(shape, float("nan"))
        return NormStats(nan, nan.clone(), "batch", 0)
    return NormStats(running_mean.detach().clone(), running_var.detach().clone(), "running", 0)


def _per_channel(t: torch.Tensor | None, ndim: int) -> torch.Tensor | None:
    """Reshape a C-entry tensor to (1, C, 1, ...) so it broadcasts against an ndim input."""
    return None if t is None else t.reshape((1, -1) + (1,) * (ndim - 2))


def _channel_plan(input, kind, weight, bias) -> Plan:
    """Batch or instance norm: statistics over ``axes.reduced_dims(kind)``, affine per channel."""
    ndim, n, channels = input.dim(), input.shape[0], input.shape[1]
    stats_shape = (channels,) if kind == "batch" else (n, channels)
    affine = (1, channels) + (1,) * (ndim - 2)
    if ndim == 2 and all(t is None or t.dim() == 1 for t in (weight, bias)):
        affine = None  # (C,) already broadcasts against (N, C)
    return _plan(input.shape, reduced_dims(kind, ndim), stats_shape, affine, weight, bias, compute_dtype(input))


def _per_channel_tail(input, running_mean, running_var, weight, bias, use_input_stats, momentum, eps, unbiased,
                      backward, return_stats, plan: Plan):
    """What batch_norm and instance_norm share once their checks have passed: normalize with the
    batch's statistics and update the running ones, or normalize with the running ones."""
    x = input if input.dtype == plan.dtype else input.to(plan.dtype)
    w, b = _view(weight, plan.affine_shape, plan.dtype), _view(bias, plan.affine_shape, plan.dtype)
    if use_input_stats:
        y, mean, var = _normalize(x, w, b, plan, eps, backward)
        mean, var = mean.reshape(plan.stats_shape), var.reshape(plan.stats_shape)
        if running_mean is not None:  # (x is empty here only for instance norm's N = 0: NaN, as torch)
            _update_running(running_mean, running_var, mean, var, momentum, plan.count, unbiased)
        stats = NormStats(_detached(mean), _detached(var), "batch", plan.count)
    else:
        rm, rv = (_view(t, plan.affine_shape).to(x.dtype) for t in (running_mean, running_var))
        y = _normalize_fixed(x, rm, rv, w, b, eps, backward)
        stats = NormStats(running_mean.detach().clone(), running_var.detach().clone(), "running", plan.count)
    y = y if y.dtype == input.dtype else y.to(input.dtype)
    return (y, stats) if return_stats else y


def batch_norm(
    input: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    *,
    unbiased_running_var: bool = True,
    backward: str = "closed_form",
    return_stats: bool = False,
):
    """Batch normalization: one statistic per channel, over the batch and spatial dims.

    In training the batch statistics normalize the input and update the running ones in
    place (left as they are for an input with no values, as torch); otherwise the running
    statistics are used (they must then be given). ε must be > 0 in training, ≥ 0 otherwise.
    """
    key = ("batch_norm", checks.spec(input), *map(checks.spec, (running_mean, running_var, weight, bias)), training, eps, backward)

    def check():
        checks.check_backward(backward)
        checks.check_batch_norm_call(input, running_mean, running_var, weight, bias, training, eps)
        return None if input.numel() == 0 else _channel_plan(input, "batch", weight, bias)

    plan = checks.validated(key, check)
    if plan is None:  # nothing to normalize; the running statistics stay as they are
        channels = input.shape[1] if input.dim() > 1 else 0
        stats = _stats_of_nothing(input, (channels,), *((None, None) if training else (running_mean, running_var)))
        return _no_values(input, weight, bias, stats, return_stats)
    return _per_channel_tail(input, running_mean, running_var, weight, bias, training, momentum, eps,
                             unbiased_running_var, backward, return_stats, plan)


def instance_norm(
    input: torch.Tensor,
    running_mean: torch.Tensor | None = None,
    running_var: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    use_input_stats: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
    *,
    unbiased_running_var: bool = True,
    backward: str = "closed_form",
    return_stats: bool = False,
):
    """Instance normalization: one statistic per (sample, channel), over the spatial dims.

    With running statistics given, each update uses the batch average of the per-instance
    means and (unbiased) variances, exactly as torch does (so a batch of 0 samples makes them
    NaN, an average over nothing, while 0 spatial positions leave them as they are).
    """
    key = ("instance_norm", checks.spec(input), *map(checks.spec, (running_mean, running_var, weight, bias)), use_input_stats, backward)

    def check():
        checks.check_backward(backward)
        checks.check_instance_norm_call(input, running_mean, running_var, weight, bias, use_input_stats)
        n = input.shape[0]
        if input.numel() == 0 and not (use_input_stats and n == 0 and running_mean is not None):
            return None
        return _channel_plan(input, "instance", weight, bias)

    plan = checks.validated(key, check)
    if plan is None:
        stats_shape = tuple(input.shape[:2])
        stats = _stats_of_nothing(input, stats_shape, *((None, None) if use_input_stats else (running_mean, running_var)))
        return _no_values(input, weight, bias, stats, return_stats)
    return _per_channel_tail(input, running_mean, running_var, weight, bias, use_input_stats, momentum, eps,
                             unbiased_running_var, backward, return_stats, plan)


def layer_norm(
    input: torch.Tensor,
    normalized_shape,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
    *,
    backward: str = "closed_form",
    return_stats: bool = False,
):
    """Layer normalization: one statistic per sample, over the last ``len(normalized_shape)`` dims.

    The affine is per *element* (γ and β have shape ``normalized_shape``), not per channel.
    No batch statistics are involved, so training and eval behave identically. Any ε is
    taken, as torch takes it (σ² + ε < 0 gives NaN).
    """
    shape_key = checks.shape_key(normalized_shape)
    key = ("layer_norm", checks.spec(input), shape_key, checks.spec(weight), checks.spec(bias), backward)

    def check():
        checks.check_backward(backward)
        checks.check_floating(input, "layer_norm")
        shape = checks.check_normalized_shape(normalized_shape, "layer_norm")  # an int is refused, as torch refuses it
        checks.check_trailing_shape(input, shape, "layer_norm")
        for name, t in (("weight", weight), ("bias", bias)):
            checks.check_affine_shape(t, shape, name, "layer_norm")
        dims = reduced_dims("layer", input.dim(), len(shape))
        return _plan(input.shape, dims, input.shape[: input.dim() - len(shape)], None, weight, bias, compute_dtype(input))

    plan = checks.validated(key, check)
    x = input if input.dtype == plan.dtype else input.to(plan.dtype)
    w, b = _view(weight, None, plan.dtype), _view(bias, None, plan.dtype)
    y, mean, var = _normalize(x, w, b, plan, eps, backward)
    y = y if y.dtype == input.dtype else y.to(input.dtype)
    if not return_stats:
        return y
    return y, NormStats(_detached(mean).reshape(plan.stats_shape), _detached(var).reshape(plan.stats_shape), "batch", plan.count)


def group_norm(
    input: torch.Tensor,
    num_groups: int,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
    *,
    backward: str = "closed_form",
    return_stats: bool = False,
):
    """Group normalization: one statistic per (sample, group of C/G channels), over the group's
    channels and all spatial positions. The affine is per channel. Any ε is taken, as torch.

    ``num_groups=1`` is LayerNorm over (C, *spatial) with a per-channel affine;
    ``num_groups=C`` is InstanceNorm.
    """
    key = ("group_norm", checks.spec(input), type(num_groups), num_groups, checks.spec(weight), checks.spec(bias), backward)

    def check():
        checks.check_backward(backward)
        checks.check_floating(input, "group_norm")
        checks.check_has_channels(input, "group_norm", error=checks.NormcoreError)
        checks.check_group_sizes(input, num_groups)  # as torch, even in eval: not one value per group
        n, channels = input.shape[:2]
        checks.check_groups(channels, num_groups, in_forward=True)
        for name, t in (("weight", weight), ("bias", bias)):
            checks.check_affine_shape(t, (channels,), name, "group_norm")
        # (N, C, *S) -> (N, G, C/G, *S): a statistic per (n, g), over C/G and S.
        grouped = (n, num_groups, channels // num_groups) + tuple(input.shape[2:])
        affine = (1, num_groups, channels // num_groups) + (1,) * (input.dim() - 2)
        plan = _plan(grouped, reduced_dims("group", input.dim()), (n, num_groups), affine, weight, bias, compute_dtype(input))
        return plan, grouped

    plan, grouped = checks.validated(key, check)
    x = input if input.dtype == plan.dtype else input.to(plan.dtype)
    w, b = _view(weight, plan.affine_shape, plan.dtype), _view(bias, plan.affine_shape, plan.dtype)
    # torch's dγ is NaN on a zero spatial size (0 · NaN mean); normcore's too.
    y, mean, var = _normalize(x.reshape(grouped), w, b, plan, eps, backward, nan_weight_grad_if_empty=True)
    y = y.reshape(input.shape)
    y = y if y.dtype == input.dtype else y.to(input.dtype)
    if not return_stats:
        return y
    return y, NormStats(_detached(mean).reshape(plan.stats_shape), _detached(var).reshape(plan.stats_shape), "batch", plan.count)
