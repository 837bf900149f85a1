"""RMSNorm: LayerNorm without the mean (Zhang & Sennrich, 2019), with torch's signature.

    ms = mean(x², over the last len(normalized_shape) dims)
    y  = x · rsqrt(ms + ε) · γ              (no centring, no β)

``eps=None`` is torch's default: ``torch.finfo(x.dtype).eps`` of the dtype it computes in.
"""

from __future__ import annotations

import math

import torch

from . import checks
from .moments import NormStats


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def rms_norm(
    input: torch.Tensor,
    normalized_shape,
    weight: torch.Tensor | None = None,
    eps: float | None = None,
    *,
    backward: str = "closed_form",
    return_stats: bool = False,
):
    """Root-mean-square normalization over the last ``len(normalized_shape)`` dims."""
    checks.check_floating(input, "rms_norm")
    checks.check_backward(backward)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(shape)
    if k == 0 or input.dim() < k or tuple(input.shape[input.dim() - k :]) != shape:
        raise checks.NormcoreError(
            f"rms_norm normalizes over the trailing dims {list(shape)}, so the input must have shape "
            f"[*, {', '.join(map(str, shape)) or '...'}]; got {list(input.shape)}. Set normalized_shape to the "
            "input's last dims (at least one), e.g. input.shape[1:]."
        )
    checks.check_affine_shape(weight, shape, "weight", "rms_norm")
    x = input.to(_compute_dtype(input))
    eps = torch.finfo(x.dtype).eps if eps is None else eps
    dims = tuple(range(x.dim() - k, x.dim()))
    ms = x.square().mean(dims, keepdim=True)
    y = x * torch.rsqrt(ms + eps)
    y = y if weight is None else y * weight
    lead = tuple(input.shape[: input.dim() - k])
    ms = ms.detach().reshape(lead)
    stats = NormStats(torch.zeros_like(ms), ms, "batch", math.prod(shape))
    y = y.to(input.dtype)
    return (y, stats) if return_stats else y
