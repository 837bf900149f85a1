"""The live views' input distribution: its draws agree with the truth it reports."""


import pytest
import torch

from normcore.lab import populations
from normcore.lab.settings import LabSettings


def test_channel_positions_are_evenly_spaced_in_minus_one_one():
    assert populations.channel_positions(5).tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert populations.channel_positions(1).tolist() == [0.0]


def test_population_stats_closed_form():
    s = LabSettings(channels=3, mean_offset=2.0, scale=0.5, channel_spread=1.0, outlier_fraction=0.1)
    mean, var = populations.population_stats(s, offset=1.0)
    u = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(mean, 3.0 + u)
    sigma = 0.5 * torch.exp(0.3 * u)
    torch.testing.assert_close(var, sigma**2 * (0.9 + 0.1 * 100.0))  # outliers at ±10σ


@pytest.mark.parametrize("outliers", [0.0, 0.2])
def test_large_draw_matches_reported_truth(outliers):
    s = LabSettings(batch_size=512, channels=3, spatial=16, mean_offset=-4.0, scale=2.0, channel_spread=2.0, outlier_fraction=outliers)
    x = populations.draw_batch(s, populations.make_generator(1)).double()
    assert x.shape == (512, 3, 16, 16) and populations.draw_batch(s, populations.make_generator(1)).dtype == torch.float32
    mean, var = populations.population_stats(s)
    n = x.numel() / 3
    # Within 5 standard errors of the mean, and 5% on the variance (n = 131,072 per channel).
    assert ((x.mean((0, 2, 3)) - mean).abs() <= 5 * torch.sqrt(var / n)).all()
    torch.testing.assert_close(x.var((0, 2, 3)), var, rtol=0.05, atol=0)


def test_outlier_share_and_signs():
    s = LabSettings(batch_size=256, channels=1, spatial=16, outlier_fraction=0.3)
    x = populations.draw_batch(s, populations.make_generator(2))
    is_outlier = x.abs() == populations.OUTLIER_SIGMAS
    assert abs(is_outlier.double().mean().item() - 0.3) < 0.01
    assert abs((x[is_outlier] > 0).double().mean().item() - 0.5) < 0.02


def test_same_seed_same_batch():
    s = LabSettings()
    assert torch.equal(populations.draw_batch(s, populations.make_generator(7)), populations.draw_batch(s, populations.make_generator(7)))

