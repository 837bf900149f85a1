"""The statistics themselves: mean and biased variance on shifted values, and what a layer used.

Kept apart from the formulas in ``functional.py`` so the numerical care (why the shift) is
in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class NormStats:
    """The mean and (biased) variance a layer normalized with in its last forward pass.

    ``source`` is ``"batch"`` when they were computed from the input and ``"running"``
    when they were the stored running estimates (BatchNorm/InstanceNorm in eval mode).
    Shapes are one entry per statistic group: ``(C,)`` for BatchNorm, ``(N, G)`` for
    GroupNorm, ``(N, C)`` for InstanceNorm (``(C,)`` when it used running statistics), and
    the leading dims of the input for LayerNorm and RMSNorm.

    RMSNorm does not centre: its ``mean`` is zeros and its ``var`` is the mean square E[x²]
    it divided by, so that ``(x − mean) / sqrt(var + ε)`` is every layer's formula.
    :attr:`mean_square` names that value for every layer.
    """

    mean: torch.Tensor
    var: torch.Tensor
    source: str
    values_per_stat: int

    @property
    def mean_square(self) -> torch.Tensor:
        """E[x²] = σ² + μ² (biased σ²): for RMSNorm exactly the mean square it divided by."""
        return self.var + self.mean.square()


def shifted_moments(x: torch.Tensor, dims: tuple[int, ...], *, return_shift: bool = False):
    """Mean and biased variance of ``x`` over ``dims``, computed on shifted values.

    Why the shift: in float32 the *mean* of an input offset by 1e4 with a std of 1e-2
    cannot be held finely enough. Neighbouring float32 numbers near 1e4 are 2**-10 ≈ 1e-3
    apart, a tenth of the std, so a rounded μ is off by up to ~5% of σ, and so is every
    ``x - μ``, however carefully the sums are taken (torch's own kernels normalize this
    input 4e-2 to 1.4e-1 off; ``E[x²] - E[x]²`` even returns a variance of 0).
    Subtracting one sample's value per statistic group first is exact here (x and the
    shift are within a factor 2 of each other, Sterbenz's lemma), does not change the
    variance, and leaves small numbers whose mean float32 holds to ~1e-7 relative.
    ``x - μ`` is then computed as ``(x - shift) - mean(x - shift)``, never through the
    large μ itself. The μ returned (``shift + mean(x - shift)``) is rounded like any
    float32 number; it only reports the statistic and feeds the running mean.

    The variance is then a second pass, ``mean((x - μ)²)`` over the centered values.

    Returns ``(centered, mean, var)``: ``centered = x - μ`` (a new tensor) and mean/var
    with ``keepdim=True``. ``return_shift=True`` appends ``(shift, shifted_mean)``, from
    which ``x - μ`` can be recomputed later, exactly as here.
    """
    if all(x.shape[d] > 0 for d in dims):
        shift = x
        for d in dims:  # one value per statistic group: index 0 along every reduced dim
            shift = shift.narrow(d, 0, 1)
    else:  # a statistic over no values: nothing to shift (its mean and variance are NaN)
        shift = x.new_zeros([1 if d in dims else size for d, size in enumerate(x.shape)])
    # An infinite shift would turn the group's mean into inf - inf = NaN; torch's is ±inf.
    shift = shift.nan_to_num(0.0, posinf=0.0, neginf=0.0)
    count = math.prod(x.shape[d] for d in dims)  # M, values per statistic
    centered = x - shift  # exact: the shift is one of the values it is subtracted from
    # mean(x - shift): small, so precise. (Σ / M: torch's sum kernel is ~3x faster than its mean.)
    shifted_mean = centered.sum(dims, keepdim=True) / count
    centered -= shifted_mean  # x - μ, in place on our own buffer (one temporary in all)
    var = sum_of_squares(centered, dims) / count  # σ² = mean((x - μ)²), biased (0/0 = NaN if M = 0)
    mean = shift + shifted_mean
    return (centered, mean, var, shift, shifted_mean) if return_shift else (centered, mean, var)


def sum_of_squares(t: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Σ t² over ``dims``, with ``keepdim=True``.

    Speed, not maths: without autograd this uses ``‖t‖²`` from the fused norm kernel, which
    never materializes ``t²``. That kernel is fast along the contiguous trailing dims and
    slow across others (10x slower than ``t.square().sum()`` there), so it reduces the
    trailing run of ``dims`` first and sums the few partial results; with no trailing dim
    reduced (BatchNorm1d on (N, C)), it is the plain ``t.square().sum()``. So it is under
    autograd: the norm's gradient ``t / ‖t‖`` is 0/0 for a constant group, where Σ t² has
    gradient 2t = 0.
    """
    trailing, rest = _split_trailing(t.dim(), dims)
    small = t.numel() < SMALL_TENSOR  # the norm kernel's own overhead (~8 µs) exceeds its saving
    if not trailing or small or (torch.is_grad_enabled() and t.requires_grad):
        return t.square().sum(dims, keepdim=True)
    partial = torch.linalg.vector_norm(t, dim=trailing, keepdim=True).square()  # (small; square_ has no vmap rule)
    return partial.sum(rest, keepdim=True) if rest else partial


SMALL_TENSOR = 1 << 16  # elements: below this a call's cost is its ops' fixed overhead, not memory


# The one-pass form is taken while every statistic's |μ| ≤ 8σ: y = x·a + b then rounds to within
# ~2·8 ulp of x̂'s scale (1e-6 in float32; torch's kernels use this same form at any offset).
AFFINE_MAX_OFFSET = 8.0
# Summed in float32 (large inputs), σ² = E[x²] − μ² also cancels a factor 1 + (μ/σ)² of E[x²]:
# within 3σ it keeps all but the last few bits of float32's digits.
FLOAT32_SUMS_MAX_OFFSET = 3.0


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype statistics are computed in: torch's opmath type (float16/bfloat16 in float32)."""
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def moments_from_sums(x: torch.Tensor, dims: tuple[int, ...], max_offset: float = AFFINE_MAX_OFFSET):
    """Mean and biased variance from Σx and Σx² (two reads of x, no full-size temporary), or
    ``None`` where that would lose precision.

    σ² = E[x²] − μ² is exact in exact arithmetic and fast (no ``x − μ`` to store), but it loses
    digits as (μ/σ)² grows: at an offset of 1e4 and a std of 1e-2 it loses all of them. So it is
    used only when every statistic has |μ| ≤ ``AFFINE_MAX_OFFSET``·σ (``FLOAT32_SUMS_MAX_OFFSET``
    where the sums are float32; ``max_offset`` if smaller), checked on the computed
    values (one number read back: a Python branch on data, so only outside torch.func
    transforms and torch.compile; ``shifted_moments`` is the exact form taken otherwise). NaN
    or infinite statistics, and empty groups, fail the check too. Returns ``(mean, var)``, keepdim.
    """
    count = math.prod(x.shape[d] for d in dims)
    if x.numel() == 0:
        return None
    # A small float32 input is summed in float64 (a few µs): its σ² is then rounded once, as
    # torch's CPU kernels' (they accumulate in double); a large one in float32, ~1e-7 off.
    wide = x.dtype == torch.float32 and x.numel() < SMALL_TENSOR
    values = x.double() if wide else x
    mean = sum_trailing_first(values, dims).div_(count)
    mean_square = sum_of_squares(values, dims).div_(count)
    limit = min(max_offset, AFFINE_MAX_OFFSET if values.dtype == torch.float64 else FLOAT32_SUMS_MAX_OFFSET) ** 2
    # E[x²] − (1 + 1/T)·μ² ≥ 0  ⟺  μ² ≤ T·(E[x²] − μ²) = T·σ²   (T = limit)
    if not torch.addcmul(mean_square, mean, mean, value=-(1 + 1 / limit)).amin().item() >= 0:
        return None
    var = torch.addcmul(mean_square, mean, mean, value=-1)
    return (mean.float(), var.float()) if wide else (mean, var)


def sum_trailing_first(t: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Σ t over ``dims`` (keepdim), the contiguous trailing run of them first: torch's sum over
    (0, 2, 3) of an (N, C, H, W) tensor is ~4x slower than over (2, 3), then over 0."""
    trailing, rest = _split_trailing(t.dim(), dims)
    if not trailing or not rest or t.numel() < SMALL_TENSOR:
        return t.sum(dims, keepdim=True)
    return t.sum(trailing, keepdim=True).sum(rest, keepdim=True)


_SPLITS: dict = {}  # (ndim, dims) -> _split_trailing's answer (a plain dict: torch.compile traces it)


def _split_trailing(ndim: int, dims: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``dims`` of a rank-``ndim`` tensor as (the run that ends at the last dim, the others)."""
    split = _SPLITS.get((ndim, dims))
    if split is None:
        split = _SPLITS[(ndim, dims)] = _split(ndim, dims)
    return split


def _split(ndim: int, dims: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    dims = tuple(sorted(d % ndim for d in dims))
    trailing = []
    for d in range(ndim - 1, -1, -1):
        if d not in dims:
            break
        trailing.insert(0, d)
    return tuple(trailing), tuple(d for d in dims if d not in trailing)


def standardize(x: torch.Tensor, dims: tuple[int, ...], eps: float):
    """x̂ = (x - μ) / sqrt(σ² + ε) over ``dims``. Returns ``(x_hat, mean, var, inv_std)``."""
    centered, mean, var = shifted_moments(x, dims)
    inv_std = torch.rsqrt(var + eps)  # 1 / sqrt(σ² + ε): eps sits inside the square root
    return centered * inv_std, mean, var, inv_std
