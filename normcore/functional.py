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

import torch

from . import checks
from .backward import NormalizeWithBatchStats, NormalizeWithFixedStats
from .moments import NormStats, standardize


def _per_channel(t: torch.Tensor | None, ndim: int) -> torch.Tensor | None:
    """Reshape a C-entry tensor to (1, C, 1, ...) so it broadcasts against an ndim input."""
    return None if t is None else t.reshape((1, -1) + (1,) * (ndim - 2))


def _normalize(x, weight, bias, dims, eps, backward, nan_weight_grad_if_empty=False):
    """y = γ x̂ + β with batch statistics over ``dims``; returns (y, mean, var) with keepdim."""
    if checks.check_backward(backward) == "closed_form":
        y, mean, var, *_saved = NormalizeWithBatchStats.apply(x, weight, bias, dims, eps, nan_weight_grad_if_empty)
        return y, mean, var
    x_hat, mean, var, _ = standardize(x, dims, eps)
    y = x_hat if weight is None else x_hat * weight
    if nan_weight_grad_if_empty and x.numel() == 0 and weight is not None:
        # torch's GroupNorm quirk: its dγ = Σ (Σdy − μ·Σdy)·istd is NaN here, as μ is (0 · NaN).
        y = y + (weight * mean).sum()
    return (y if bias is None else y + bias), mean, var


def _normalize_fixed(x, mean, var, weight, bias, eps, backward):
    """y = γ (x − μ) / sqrt(σ² + ε) + β with given constants μ, σ² (eval mode)."""
    if checks.check_backward(backward) == "closed_form":
        return NormalizeWithFixedStats.apply(x, mean, var, weight, bias, eps)[0]
    y = (x - mean) * torch.rsqrt(var + eps)
    y = y if weight is None else y * weight
    return y if bias is None else y + bias


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    # Half-precision statistics are too coarse to be useful; compute them in float32.
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def _update_running(running_mean, running_var, mean, var, momentum, count, unbiased):
    """running = (1 − m) · running + m · batch   (PyTorch's convention; m weights the NEW value).

    The running variance takes the *unbiased* batch variance σ² · n / (n − 1), as torch does,
    unless ``unbiased=False`` (the d2l / textbook choice). Any momentum is taken, as torch
    takes it: outside [0, 1] the update extrapolates, and a NaN one gives NaN statistics.
    """
    mean, var = mean.detach(), var.detach()  # the buffers stay out of the autograd graph
    if running_mean is not None:
        running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
    if running_var is not None:
        if unbiased:  # count > 1 always holds here: training rejects one value per statistic
            var = var * (count / (count - 1))
        running_var.mul_(1 - momentum).add_(var.to(running_var.dtype), alpha=momentum)


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


def _fixed(x, running_mean, running_var, w, b, eps, backward):
    """Normalize with the running statistics, broadcast per channel."""
    rm, rv = _per_channel(running_mean, x.dim()), _per_channel(running_var, x.dim())
    return _normalize_fixed(x, rm.to(x.dtype), rv.to(x.dtype), w, b, eps, backward)


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
    checks.check_batch_norm_call(input, running_mean, running_var, weight, bias, training, eps)
    channels = input.shape[1] if input.dim() > 1 else 0
    if input.numel() == 0:  # nothing to normalize; the running statistics stay as they are
        stats = _stats_of_nothing(input, (channels,), *((None, None) if training else (running_mean, running_var)))
        return _no_values(input, weight, bias, stats, return_stats)
    x = input.to(_compute_dtype(input))
    w, b = _per_channel(weight, x.dim()), _per_channel(bias, x.dim())
    dims = (0,) + tuple(range(2, x.dim()))  # every axis but C
    count = math.prod(x.shape[d] for d in dims)  # values per statistic

    if training:
        y, mean, var = _normalize(x, w, b, dims, eps, backward)
        mean, var = mean.reshape(channels), var.reshape(channels)
        _update_running(running_mean, running_var, mean, var, momentum, count, unbiased_running_var)
        stats = NormStats(mean.detach(), var.detach(), "batch", count)
    else:
        y = _fixed(x, running_mean, running_var, w, b, eps, backward)
        stats = NormStats(running_mean.detach().clone(), running_var.detach().clone(), "running", count)
    y = y.to(input.dtype)
    return (y, stats) if return_stats else y


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
    checks.check_instance_norm_call(input, running_mean, running_var, weight, bias, use_input_stats)
    n, channels = input.shape[:2]
    if input.numel() == 0 and not (use_input_stats and n == 0 and running_mean is not None):
        stats = _stats_of_nothing(input, (n, channels), *((None, None) if use_input_stats else (running_mean, running_var)))
        return _no_values(input, weight, bias, stats, return_stats)
    x = input.to(_compute_dtype(input))
    w, b = _per_channel(weight, x.dim()), _per_channel(bias, x.dim())
    count = math.prod(x.shape[2:])  # values per statistic

    if use_input_stats:
        y, mean, var = _normalize(x, w, b, tuple(range(2, x.dim())), eps, backward)
        mean, var = mean.reshape(n, channels), var.reshape(n, channels)
        if running_mean is not None:  # (x is empty here only for N = 0: NaN, as torch)
            unbiased = var * (count / (count - 1)) if unbiased_running_var else var
            # The batch average of per-instance statistics is what enters the EMA.
            _update_running(running_mean, running_var, mean.mean(0), unbiased.mean(0), momentum, count, False)
        stats = NormStats(mean.detach(), var.detach(), "batch", count)
    else:
        y = _fixed(x, running_mean, running_var, w, b, eps, backward)
        stats = NormStats(running_mean.detach().clone(), running_var.detach().clone(), "running", count)
    y = y.to(input.dtype)
    return (y, stats) if return_stats else y


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
    checks.check_floating(input, "layer_norm")
    shape = checks.check_normalized_shape(normalized_shape, "layer_norm")  # an int is refused, as torch refuses it
    k = len(shape)
    checks.check_trailing_shape(input, shape, "layer_norm")
    for name, t in (("weight", weight), ("bias", bias)):
        checks.check_affine_shape(t, shape, name, "layer_norm")
    x = input.to(_compute_dtype(input))
    dims = tuple(range(x.dim() - k, x.dim()))
    y, mean, var = _normalize(x, weight, bias, dims, eps, backward)
    lead = tuple(input.shape[: input.dim() - k])
    stats = NormStats(mean.detach().reshape(lead), var.detach().reshape(lead), "batch", math.prod(shape))
    y = y.to(input.dtype)
    return (y, stats) if return_stats else y


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
    checks.check_floating(input, "group_norm")
    checks.check_has_channels(input, "group_norm", error=checks.NormcoreError)
    checks.check_group_sizes(input, num_groups)  # as torch, even in eval: not one value per group
    n, channels = input.shape[:2]
    checks.check_groups(channels, num_groups, in_forward=True)
    for name, t in (("weight", weight), ("bias", bias)):
        checks.check_affine_shape(t, (channels,), name, "group_norm")
    x = input.to(_compute_dtype(input))
    spatial = tuple(x.shape[2:])
    # (N, C, *S) -> (N, G, C/G, *S): a statistic per (n, g), over C/G and S.
    xg = x.reshape((n, num_groups, channels // num_groups) + spatial)
    affine_shape = (1, num_groups, channels // num_groups) + (1,) * len(spatial)
    w = None if weight is None else weight.view(affine_shape)
    b = None if bias is None else bias.view(affine_shape)
    # torch's dγ is NaN on a zero spatial size (0 · NaN mean); normcore's too.
    y, mean, var = _normalize(xg, w, b, tuple(range(2, xg.dim())), eps, backward, nan_weight_grad_if_empty=True)
    stats = NormStats(
        mean.detach().reshape(n, num_groups), var.detach().reshape(n, num_groups), "batch",
        (channels // num_groups) * math.prod(spatial),
    )
    y = y.reshape(input.shape).to(input.dtype)
    return (y, stats) if return_stats else y


from .rms_norm import rms_norm  # noqa: E402  (its own file: no centring, no β)
from .keras.tf_nn import tf_batch_normalization  # noqa: E402  (TensorFlow's formula, with normcore.keras)
from .dynamic_tanh import dynamic_tanh  # noqa: E402  (DyT: no statistics, plain autograd; its own file)
