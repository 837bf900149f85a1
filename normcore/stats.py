"""Statistics bookkeeping: which values share one mean/variance, what a layer used, EMA maths.

Everything a chart or an explanation needs to *describe* a normalization lives here,
kept apart from the arithmetic in ``functional.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

NORM_KINDS = ("batch", "layer", "group", "instance")
NORM_LABELS = {"batch": "BatchNorm", "layer": "LayerNorm", "group": "GroupNorm", "instance": "InstanceNorm"}


@dataclass(frozen=True)
class NormStats:
    """The mean and (biased) variance a layer normalized with in its last forward pass.

    ``source`` is ``"batch"`` when they were computed from the input and ``"running"``
    when they were the stored running estimates (BatchNorm/InstanceNorm in eval mode).
    Shapes are one entry per statistic group: ``(C,)`` for BatchNorm, ``(N, G)`` for
    GroupNorm, ``(N, C)`` for InstanceNorm (``(C,)`` when it used running statistics), and
    the leading dims of the input for LayerNorm.
    """

    mean: torch.Tensor
    var: torch.Tensor
    source: str
    values_per_stat: int


@dataclass(frozen=True)
class ReductionAxes:
    """Which elements of an ``(N, C, *spatial)`` input share one mean and variance."""

    kind: str
    input_shape: tuple[int, ...]
    num_groups: int
    reduced_dims: tuple[str, ...]  # axis names the statistic is taken over, e.g. ("N", "H", "W")
    stats_shape: tuple[int, ...]  # one statistic per entry
    values_per_stat: int

    @property
    def num_stats(self) -> int:
        return math.prod(self.stats_shape)

    @property
    def summary(self) -> str:
        label = NORM_LABELS[self.kind]
        over = " × ".join(self.reduced_dims)
        return (
            f"{label} computes {self.num_stats} mean/variance pair(s), each over {over} "
            f"= {self.values_per_stat} values."
        )


def _axis_names(ndim: int) -> tuple[str, ...]:
    spatial = {0: (), 1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}[ndim - 2]
    return ("N", "C") + spatial


def reduction_axes(kind: str, input_shape, num_groups: int = 1) -> ReductionAxes:
    """Describe what ``kind`` of normalization reduces over for an ``(N, C, *spatial)`` input.

    LayerNorm is taken over ``(C, *spatial)``, the usual choice for images; GroupNorm
    with ``num_groups=1`` gives the same groups, and with ``num_groups=C`` the same as
    InstanceNorm.
    """
    shape = tuple(int(s) for s in input_shape)
    if kind not in NORM_KINDS:
        raise ValueError(f"Unknown normalization {kind!r}; choose one of {', '.join(NORM_KINDS)}.")
    if len(shape) < 2 or len(shape) > 5:
        raise ValueError(f"Expected an input shape (N, C, *spatial) with 0 to 3 spatial dims, got {shape}.")
    n, c, spatial = shape[0], shape[1], math.prod(shape[2:])
    names = _axis_names(len(shape))
    if kind == "batch":
        reduced, stats_shape, per_stat = ("N",) + names[2:], (c,), n * spatial
    elif kind == "layer":
        reduced, stats_shape, per_stat = names[1:], (n,), c * spatial
    elif kind == "instance":
        reduced, stats_shape, per_stat = names[2:] or ("(nothing)",), (n, c), spatial
    else:
        if num_groups < 1 or c % num_groups:
            raise ValueError(group_divisibility_message(c, num_groups))
        reduced = (f"C/{num_groups}",) + names[2:]
        stats_shape, per_stat = (n, num_groups), (c // num_groups) * spatial
    return ReductionAxes(kind, shape, num_groups if kind == "group" else 1, reduced, stats_shape, per_stat)


def statistic_ids(kind: str, input_shape, num_groups: int = 1) -> torch.Tensor:
    """For every element of an ``(N, C, S)`` block, the index of the statistic it shares.

    ``S`` is the product of the spatial dims. Elements with the same id are averaged
    together; this is what the "which values share one mean" diagram colours.
    """
    axes = reduction_axes(kind, input_shape, num_groups)
    n, c = axes.input_shape[:2]
    s = math.prod(axes.input_shape[2:])
    ni = torch.arange(n).view(n, 1, 1).expand(n, c, s)
    ci = torch.arange(c).view(1, c, 1).expand(n, c, s)
    if kind == "batch":
        ids = ci
    elif kind == "layer":
        ids = ni
    elif kind == "instance":
        ids = ni * c + ci
    else:
        ids = ni * num_groups + ci // (c // num_groups)
    return ids.contiguous()


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def group_divisibility_message(num_channels: int, num_groups: int) -> str:
    return (
        f"num_channels ({num_channels}) must be divisible by num_groups ({num_groups}). "
        f"Valid group counts for {num_channels} channels: {', '.join(map(str, divisors(num_channels)))}."
    )


# ---------------------------------------------------------------------------------------
# Exponential moving averages and the two momentum conventions
#
#   PyTorch:       running = (1 - m) * running + m * batch        (m = 0.1: weight of the NEW value)
#   Keras / d2l:   running = m * running + (1 - m) * batch        (m = 0.99 / 0.9: weight of the OLD value)
#
# The same update therefore has m_keras = 1 - m_torch.
# ---------------------------------------------------------------------------------------


def _check_unit_interval(value: float, name: str) -> float:
    value = float(value)
    if not (0.0 <= value <= 1.0) or math.isnan(value):
        raise ValueError(f"{name} must be in [0, 1], got {value}.")
    return value


def torch_momentum_from_keras(keras_momentum: float) -> float:
    """Convert a Keras/TF/d2l momentum (weight on the old value) to PyTorch's (weight on the new).

    >>> round(torch_momentum_from_keras(0.9), 6)
    0.1
    """
    # Rounded so that 0.99 converts to 0.01, not 0.010000000000000009.
    return round(1.0 - _check_unit_interval(keras_momentum, "keras_momentum"), 12)


def keras_momentum_from_torch(torch_momentum: float) -> float:
    """Convert a PyTorch momentum (weight on the new value) to Keras/TF/d2l's (weight on the old).

    >>> round(keras_momentum_from_torch(0.1), 6)
    0.9
    """
    return round(1.0 - _check_unit_interval(torch_momentum, "torch_momentum"), 12)


def ema_half_life(torch_momentum: float | None) -> float:
    """Steps until an old value's weight in the running estimate halves: ln 0.5 / ln(1 - m).

    ``momentum=None`` (a cumulative average) has no fixed half-life; it returns ``inf``,
    as does ``m = 0`` (the estimate never moves). ``m = 1`` forgets at once (0 steps).
    """
    if torch_momentum is None:
        return math.inf
    m = _check_unit_interval(torch_momentum, "momentum")
    if m == 0.0:
        return math.inf
    if m == 1.0:
        return 0.0
    return math.log(0.5) / math.log1p(-m)


def batch_mean_standard_error(population_std: float, values_per_stat: int) -> float:
    """Expected standard deviation of a batch mean over ``values_per_stat`` i.i.d. values."""
    if values_per_stat < 1:
        raise ValueError(f"values_per_stat must be at least 1, got {values_per_stat}.")
    return float(population_std) / math.sqrt(values_per_stat)


# ---------------------------------------------------------------------------------------
# The statistics themselves
# ---------------------------------------------------------------------------------------


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
    shift = x
    for d in dims:  # one value per statistic group: index 0 along every reduced dim
        shift = shift.narrow(d, 0, 1)
    # An infinite shift would turn the group's mean into inf - inf = NaN; torch's is ±inf.
    shift = shift.nan_to_num(0.0, posinf=0.0, neginf=0.0)
    centered = x - shift  # exact: the shift is one of the values it is subtracted from
    shifted_mean = centered.mean(dims, keepdim=True)  # mean(x - shift): small, so precise
    centered -= shifted_mean  # x - μ, in place on our own buffer (one temporary in all)
    count = x.numel() // max(shifted_mean.numel(), 1)
    var = sum_of_squares(centered, dims) / count  # σ² = mean((x - μ)²), biased
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
    dims = tuple(sorted(d % t.dim() for d in dims))
    trailing = []
    for d in range(t.dim() - 1, -1, -1):  # the run of reduced dims that ends at the last dim
        if d not in dims:
            break
        trailing.insert(0, d)
    if not trailing or (torch.is_grad_enabled() and t.requires_grad):
        return t.square().sum(dims, keepdim=True)
    partial = torch.linalg.vector_norm(t, dim=trailing, keepdim=True).square_()
    rest = tuple(d for d in dims if d not in trailing)
    return partial.sum(rest, keepdim=True) if rest else partial


def standardize(x: torch.Tensor, dims: tuple[int, ...], eps: float):
    """x̂ = (x - μ) / sqrt(σ² + ε) over ``dims``. Returns ``(x_hat, mean, var, inv_std)``."""
    centered, mean, var = shifted_moments(x, dims)
    inv_std = torch.rsqrt(var + eps)  # 1 / sqrt(σ² + ε): eps sits inside the square root
    return centered * inv_std, mean, var, inv_std
