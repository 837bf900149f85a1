"""The normalizations as the lab names and describes them (labels, group counts, prose).

The library knows the kinds (``normcore.axes.NORM_KINDS``); how they are shown is the lab's.
"""

from __future__ import annotations

from normcore.axes import NORM_KINDS, ReductionAxes

NORMS = ("none",) + NORM_KINDS  # what a model can use: no norm, or one of the library's kinds
NORM_LABELS = {"none": "No norm", "batch": "BatchNorm", "layer": "LayerNorm", "group": "GroupNorm", "instance": "InstanceNorm", "rms": "RMSNorm"}


def divisors(n: int) -> list[int]:
    """The valid group counts for ``n`` channels."""
    return [d for d in range(1, n + 1) if n % d == 0]


# What one statistic of a norm is: a mean and a variance, except RMSNorm's mean square E[x²].
STATISTIC_WORDS = {"rms": "mean square(s) E[x²]"}


def describe_axes(axes: ReductionAxes) -> str:
    """One sentence: how many statistics a norm computes, and over what."""
    over = " × ".join(axes.reduced_dims)
    what = STATISTIC_WORDS.get(axes.kind, "mean/variance pair(s)")
    return f"{NORM_LABELS[axes.kind]} computes {axes.num_stats} {what}, each over {over} = {axes.values_per_stat} values."
