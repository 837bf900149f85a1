"""Exponential moving averages: the two momentum conventions, half-life and sampling noise.

    PyTorch:       running = (1 - m) * running + m * batch        (m = 0.1: weight of the NEW value)
    Keras / d2l:   running = m * running + (1 - m) * batch        (m = 0.99 / 0.9: weight of the OLD value)

The same update therefore has m_keras = 1 - m_torch.
"""

from __future__ import annotations

import math


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
