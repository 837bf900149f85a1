"""Input distributions for the live views: batches of (N, C, H, W) values with known truth.

Channel ``c`` of the population has

    mean  μ_c = mean_offset + channel_spread · u_c
    std   σ_c = scale · exp(0.3 · channel_spread · u_c)

with ``u_c`` evenly spaced in [−1, 1] (so channels differ in a predictable, readable way).
A fraction ``outlier_fraction`` of the values is replaced by μ_c ± 10 σ_c (random sign),
which leaves the mean alone and multiplies the variance by 1 + 99 · outlier_fraction.
"""

from __future__ import annotations

import torch

from .settings import LabSettings

OUTLIER_SIGMAS = 10.0


def channel_positions(channels: int) -> torch.Tensor:
    """u_c: evenly spaced in [−1, 1] (0 for a single channel)."""
    return torch.linspace(-1.0, 1.0, channels, dtype=torch.float64) if channels > 1 else torch.zeros(1, dtype=torch.float64)


def channel_means(s: LabSettings, offset: float = 0.0) -> torch.Tensor:
    """μ_c, shape (C,), float64. ``offset`` shifts every channel (drift, test-time shift)."""
    return s.mean_offset + offset + s.channel_spread * channel_positions(s.channels)


def channel_stds(s: LabSettings, scale_factor: float = 1.0) -> torch.Tensor:
    """σ_c before outliers, shape (C,), float64."""
    return s.scale * scale_factor * torch.exp(0.3 * s.channel_spread * channel_positions(s.channels))


def population_stats(s: LabSettings, offset: float = 0.0, scale_factor: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The true per-channel mean and variance of :func:`draw_batch`'s population (float64)."""
    var = channel_stds(s, scale_factor) ** 2 * (1.0 + (OUTLIER_SIGMAS**2 - 1.0) * s.outlier_fraction)
    return channel_means(s, offset), var


def draw_batch(
    s: LabSettings,
    generator: torch.Generator,
    offset: float = 0.0,
    scale_factor: float = 1.0,
    batch_size: int | None = None,
) -> torch.Tensor:
    """One float32 batch of shape (N, C, H, W) from the population described above."""
    n = s.batch_size if batch_size is None else batch_size
    shape = (n, s.channels, s.spatial, s.spatial)
    mu = channel_means(s, offset).view(1, -1, 1, 1)
    sigma = channel_stds(s, scale_factor).view(1, -1, 1, 1)
    z = torch.randn(shape, generator=generator, dtype=torch.float64)
    if s.outlier_fraction > 0:
        is_outlier = torch.rand(shape, generator=generator, dtype=torch.float64) < s.outlier_fraction
        sign = torch.where(torch.rand(shape, generator=generator, dtype=torch.float64) < 0.5, -1.0, 1.0)
        z = torch.where(is_outlier, sign * OUTLIER_SIGMAS, z)
    return (mu + sigma * z).float()


def make_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) % (2**63 - 1))


def population_std_of_batch_mean(s: LabSettings) -> torch.Tensor:
    """Expected spread (std) of a channel's batch mean: σ_c / sqrt(N·H·W), per channel."""
    _, var = population_stats(s)
    return torch.sqrt(var / (s.batch_size * s.spatial**2))


__all__ = [
    "channel_means", "channel_positions", "channel_stds", "draw_batch", "make_generator",
    "population_stats", "population_std_of_batch_mean", "OUTLIER_SIGMAS",
]
