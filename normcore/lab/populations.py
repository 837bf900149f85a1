"""Input distributions for the live views: batches of (N, C, H, W) values with known truth.

Channel ``c`` of the population has

    mean  μ_c = mean_offset + channel_spread · u_c
    std   σ_c = scale · exp(0.3 · channel_spread · u_c)

with ``u_c`` evenly spaced in [−1, 1] (so channels differ in a predictable, readable way).
A fraction ``outlier_fraction`` of the values is replaced by μ_c ± 10 σ_c (random sign),
which leaves the mean alone and multiplies the variance by 1 + 99 · outlier_fraction.

Two optional extras for the live statistics page:

* ``quiet_channel=True`` gives channel 0 the std :data:`QUIET_STD` (variance 1e-4), so that
  eps, which is added to the variance, visibly shrinks that channel's normalized output.
* :func:`drift_offset` moves the population mean over the steps of a stream (a square-wave
  step or a slow sine), so the lag of a running average shows.
"""

from __future__ import annotations

import math

import torch

from normcore.lab.settings import LabSettings

OUTLIER_SIGMAS = 10.0
QUIET_STD = 0.01  # variance 1e-4: comparable to eps values the slider offers
DRIFTS = ("none", "step", "wave")
DRIFT_LABELS = {"none": "No drift", "step": "Step (jumps every half period)", "wave": "Slow wave (sine)"}


def channel_positions(channels: int) -> torch.Tensor:
    """u_c: evenly spaced in [−1, 1] (0 for a single channel)."""
    return torch.linspace(-1.0, 1.0, channels, dtype=torch.float64) if channels > 1 else torch.zeros(1, dtype=torch.float64)


def channel_means(s: LabSettings, offset: float = 0.0) -> torch.Tensor:
    """μ_c, shape (C,), float64. ``offset`` shifts every channel (drift, test-time shift)."""
    return s.mean_offset + offset + s.channel_spread * channel_positions(s.channels)


def channel_stds(s: LabSettings, scale_factor: float = 1.0, *, quiet_channel: bool = False) -> torch.Tensor:
    """σ_c before outliers, shape (C,), float64. ``quiet_channel`` sets σ_0 to QUIET_STD (× scale_factor)."""
    std = s.scale * scale_factor * torch.exp(0.3 * s.channel_spread * channel_positions(s.channels))
    if quiet_channel:
        std[0] = QUIET_STD * scale_factor
    return std


def population_stats(
    s: LabSettings, offset: float = 0.0, scale_factor: float = 1.0, *, quiet_channel: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The true per-channel mean and variance of :func:`draw_batch`'s population (float64)."""
    var = channel_stds(s, scale_factor, quiet_channel=quiet_channel) ** 2 * (1.0 + (OUTLIER_SIGMAS**2 - 1.0) * s.outlier_fraction)
    return channel_means(s, offset), var


def draw_batch(
    s: LabSettings,
    generator: torch.Generator,
    offset: float = 0.0,
    scale_factor: float = 1.0,
    batch_size: int | None = None,
    *,
    quiet_channel: bool = False,
) -> torch.Tensor:
    """One float32 batch of shape (N, C, H, W) from the population described above."""
    n = s.batch_size if batch_size is None else batch_size
    shape = (n, s.channels, s.spatial, s.spatial)
    mu = channel_means(s, offset).view(1, -1, 1, 1)
    sigma = channel_stds(s, scale_factor, quiet_channel=quiet_channel).view(1, -1, 1, 1)
    # The noise is drawn in float32 (the output's dtype): float64 draws cost twice the time
    # at the caps and add nothing, since μ_c and σ_c are exact and the result is float32.
    z = torch.randn(shape, generator=generator, dtype=torch.float32)
    if s.outlier_fraction > 0:
        # One uniform draw decides both: u < p is an outlier, and u < p/2 the negative ones.
        u = torch.rand(shape, generator=generator, dtype=torch.float32)
        sign = torch.where(u < s.outlier_fraction / 2, -OUTLIER_SIGMAS, OUTLIER_SIGMAS)
        z = torch.where(u < s.outlier_fraction, sign, z)
    return torch.addcmul(mu.float(), sigma.float(), z)


def make_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) % (2**63 - 1))


def drift_offset(drift: str, step: int, size: float, period: int) -> float:
    """How far the population mean has moved at ``step`` (0-based), to pass as ``offset``.

    ``"step"`` is a square wave: 0 for the first half of each period, ``size`` for the second,
    so the mean jumps up and back again and the running average's lag shows after each jump.
    ``"wave"`` is ``size · sin(2π · step / period)``. ``"none"`` is always 0.
    """
    if drift not in DRIFTS:
        raise ValueError(f"Unknown drift {drift!r}; choose one of {', '.join(DRIFTS)}.")
    if period < 2:
        raise ValueError(f"The drift period must be at least 2 steps, got {period}.")
    if drift == "step":
        return float(size) if step % period >= period / 2 else 0.0
    if drift == "wave":
        return float(size) * math.sin(2 * math.pi * step / period)
    return 0.0


__all__ = [
    "channel_means", "channel_positions", "channel_stds", "draw_batch", "drift_offset", "make_generator",
    "population_stats", "DRIFTS", "DRIFT_LABELS", "OUTLIER_SIGMAS", "QUIET_STD",
]
