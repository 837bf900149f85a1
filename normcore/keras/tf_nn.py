"""``tf.nn.batch_normalization`` in torch: normalize with given statistics, TensorFlow's way.

TensorFlow's function takes the statistics as arguments (it computes none) and folds
γ and the standard deviation into one factor::

    inv = rsqrt(variance + variance_epsilon) · scale        (scale may be None: 1)
    y   = x · inv + (offset − mean · inv)                   (offset may be None: 0)

Every argument broadcasts against ``x`` by the usual rules: one entry per channel for a
channels-last input, or ``keepdim`` statistics of ``x``'s rank for any other layout.
Re-exported as ``normcore.functional.tf_batch_normalization``.
"""

from __future__ import annotations

import torch


def _as_tensor(value, like: torch.Tensor) -> torch.Tensor:
    """A number or array as a tensor in ``like``'s floating dtype and device; tensors as they are."""
    if isinstance(value, torch.Tensor):
        return value
    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


def tf_batch_normalization(x, mean, variance, offset, scale, variance_epsilon, name=None):
    """``tf.nn.batch_normalization(x, mean, variance, offset, scale, variance_epsilon, name=None)``.

    ``offset`` (β) and ``scale`` (γ) may be ``None``. The result has ``x``'s dtype, as in
    TensorFlow (which casts ``inv`` and the shift to it). ``name`` names a TensorFlow graph
    op; it is accepted for a drop-in call and means nothing here. Differentiable in every
    tensor argument by autograd.

    >>> import torch
    >>> x = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    >>> tf_batch_normalization(x, torch.tensor([2.0, 4.0]), torch.tensor([1.0, 4.0]), None, None, 0.0)
    tensor([[-1., -1.],
            [ 1.,  1.]])
    """
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x)
    mean, variance = _as_tensor(mean, x), _as_tensor(variance, x)
    inv = torch.rsqrt(variance + variance_epsilon)
    if scale is not None:
        inv = inv * _as_tensor(scale, x)
    shift = -mean * inv if offset is None else _as_tensor(offset, x) - mean * inv
    return x * inv.to(x.dtype) + shift.to(x.dtype)
