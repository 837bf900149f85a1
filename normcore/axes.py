"""Which values share one mean and variance: the reduction axes of each normalization.

``reduction_axes`` names the axes a statistic is taken over and how many values it pools;
``statistic_ids`` labels every element of an ``(N, C, S)`` block with the statistic it
shares (what the lab's "which values share one mean" diagram colours).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .checks import group_divisibility_message

NORM_KINDS = ("batch", "layer", "group", "instance", "rms")


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


def _axis_names(ndim: int) -> tuple[str, ...]:
    spatial = {0: (), 1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}[ndim - 2]
    return ("N", "C") + spatial


def reduced_dims(kind: str, ndim: int, normalized_ndim: int | None = None) -> tuple[int, ...]:
    """The dims of an input of rank ``ndim`` that one statistic is taken over: what
    ``normcore.functional`` reduces, and what :func:`reduction_axes` names.

    * batch: every dim but C, (0, 2, 3, ...);   instance: the spatial dims, (2, 3, ...);
    * layer and rms: the last ``normalized_ndim`` dims (default: all but N, as for an image);
    * group: of the grouped view ``(N, G, C/G, *spatial)`` (rank ``ndim + 1``), the dims
      from C/G on, (2, 3, ...).
    """
    if kind == "batch":
        return (0,) + tuple(range(2, ndim))
    if kind == "instance":
        return tuple(range(2, ndim))
    if kind == "group":
        return tuple(range(2, ndim + 1))
    k = ndim - 1 if normalized_ndim is None else normalized_ndim
    return tuple(range(ndim - k, ndim))


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
    if kind == "group":
        if num_groups < 1 or c % num_groups:
            raise ValueError(group_divisibility_message(c, num_groups))
        names = ("N", "G", f"C/{num_groups}") + names[2:]  # the grouped view's axes
    reduced = tuple(names[d] for d in reduced_dims(kind, len(shape))) or ("(nothing)",)
    if kind == "batch":
        stats_shape, per_stat = (c,), n * spatial
    elif kind in ("layer", "rms"):  # RMSNorm: the same values as LayerNorm, mean square only
        stats_shape, per_stat = (n,), c * spatial
    elif kind == "instance":
        stats_shape, per_stat = (n, c), spatial
    else:
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
    elif kind in ("layer", "rms"):
        ids = ni
    elif kind == "instance":
        ids = ni * c + ci
    else:
        ids = ni * num_groups + ci // (c // num_groups)
    return ids.contiguous()
