"""The statistics helpers, against numbers worked out by hand here (never against the code under test)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from normcore import axes
from normcore.lab import norms
from normcore.ema import batch_mean_standard_error, ema_half_life, keras_momentum_from_torch, torch_momentum_from_keras
from normcore.axes import reduction_axes, statistic_ids
from normcore.moments import shifted_moments, standardize, sum_of_squares

# --------------------------------------------------------------------------- EMA half-life


@pytest.mark.parametrize("momentum,steps", [
    (0.5, 1.0),  # 0.5 ** 1 = 0.5
    (0.75, 0.5),  # 0.25 ** 0.5 = 0.5
    (1 - 0.5 ** 0.25, 4.0),  # (1 - m) ** 4 = 0.5
    (0.1, 6.578813478960585),  # 0.9 ** k = 0.5  =>  k = ln 2 / ln(10/9), by hand
    (0.01, 68.96756393652842),  # 0.99 ** k = 0.5
])
def test_half_life_is_the_step_count_at_which_an_old_weight_halves(momentum, steps):
    assert ema_half_life(momentum) == pytest.approx(steps, rel=1e-12)


def test_half_life_by_simulating_the_update():
    """Run running = (1 - m) running + m · 0 from 1 until it falls to 1/2, interpolating in log space."""
    m, running, step = 0.1, 1.0, 0
    while running * (1 - m) > 0.5:
        running *= 1 - m
        step += 1
    fraction = math.log(0.5 / running) / math.log(1 - m)  # the part of one more step to reach 0.5
    assert ema_half_life(m) == pytest.approx(step + fraction, rel=1e-12)
    assert step == 6


def test_half_life_edge_cases():
    assert ema_half_life(None) == math.inf  # cumulative average: no fixed half-life
    assert ema_half_life(0.0) == math.inf  # never moves
    assert ema_half_life(1.0) == 0.0  # forgets at once
    for bad in (-0.1, 1.1, float("nan")):
        with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
            ema_half_life(bad)


# --------------------------------------------------------------------------- momentum conventions


@pytest.mark.parametrize("torch_m,keras_m", [(0.1, 0.9), (0.01, 0.99), (0.0, 1.0), (1.0, 0.0), (0.5, 0.5), (0.001, 0.999)])
def test_momentum_conventions_are_one_minus_each_other(torch_m, keras_m):
    assert torch_momentum_from_keras(keras_m) == pytest.approx(torch_m, abs=1e-12)
    assert keras_momentum_from_torch(torch_m) == pytest.approx(keras_m, abs=1e-12)


def test_converted_momenta_are_clean_decimals():
    assert torch_momentum_from_keras(0.99) == 0.01
    assert torch_momentum_from_keras(0.9) == 0.1
    assert keras_momentum_from_torch(0.1) == 0.9


def test_both_conventions_describe_the_same_update():
    """Keras: m·old + (1 − m)·new; torch: (1 − m')·old + m'·new, with m' = 1 − m."""
    old, new, keras_m = 3.0, 7.0, 0.9
    keras = keras_m * old + (1 - keras_m) * new  # 0.9·3 + 0.1·7 = 3.4
    torch_m = torch_momentum_from_keras(keras_m)
    assert keras == pytest.approx(3.4)
    assert (1 - torch_m) * old + torch_m * new == pytest.approx(3.4)


def test_momentum_conversion_rejects_values_outside_the_unit_interval():
    for fn in (torch_momentum_from_keras, keras_momentum_from_torch):
        with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
            fn(1.5)


def test_torch_running_mean_follows_the_documented_rule():
    """torch.nn.BatchNorm1d itself: running = 0.9·running + 0.1·batch mean, i.e. torch's m = 0.1."""
    bn = torch.nn.BatchNorm1d(1, momentum=0.1)
    bn.running_mean.fill_(2.0)
    bn(torch.tensor([[1.0], [3.0], [8.0]]))  # batch mean 4
    assert bn.running_mean.item() == pytest.approx(0.9 * 2 + 0.1 * 4)


# --------------------------------------------------------------------------- standard error


def test_batch_mean_standard_error_is_sigma_over_root_n():
    assert batch_mean_standard_error(2.0, 16) == 0.5
    assert batch_mean_standard_error(3.0, 1) == 3.0
    assert batch_mean_standard_error(1.0, 100) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="values_per_stat must be at least 1"):
        batch_mean_standard_error(1.0, 0)


def test_batch_mean_standard_error_matches_a_simulation():
    g = torch.Generator().manual_seed(0)
    means = (torch.randn(20000, 25, generator=g, dtype=torch.float64) * 3.0).mean(1)
    assert means.std().item() == pytest.approx(batch_mean_standard_error(3.0, 25), rel=0.02)  # 0.6


# --------------------------------------------------------------------------- reduction axes


@pytest.mark.parametrize("kind,shape,groups,reduced,stats_shape,per_stat", [
    ("batch", (8, 3, 4, 5), 1, ("N", "H", "W"), (3,), 8 * 4 * 5),
    ("batch", (8, 3), 1, ("N",), (3,), 8),
    ("batch", (2, 3, 7), 1, ("N", "L"), (3,), 14),
    ("batch", (2, 3, 2, 4, 5), 1, ("N", "D", "H", "W"), (3,), 80),
    ("layer", (8, 3, 4, 5), 1, ("C", "H", "W"), (8,), 60),
    ("rms", (8, 3, 4, 5), 1, ("C", "H", "W"), (8,), 60),  # RMSNorm: LayerNorm's sets, mean square only
    ("rms", (8, 3), 1, ("C",), (8,), 3),
    ("instance", (8, 3, 4, 5), 1, ("H", "W"), (8, 3), 20),
    ("instance", (8, 3), 1, ("(nothing)",), (8, 3), 1),
    ("group", (8, 6, 4, 5), 3, ("C/3", "H", "W"), (8, 3), 2 * 20),
    ("group", (8, 6, 4, 5), 1, ("C/1", "H", "W"), (8, 1), 120),  # 1 group: LayerNorm's sets
    ("group", (8, 6, 4, 5), 6, ("C/6", "H", "W"), (8, 6), 20),  # C groups: InstanceNorm's sets
])
def test_reduction_axes_by_hand(kind, shape, groups, reduced, stats_shape, per_stat):
    axes = reduction_axes(kind, shape, groups)
    assert axes.reduced_dims == reduced
    assert axes.stats_shape == stats_shape
    assert axes.values_per_stat == per_stat
    assert axes.num_stats == math.prod(stats_shape)
    assert axes.num_stats * axes.values_per_stat == math.prod(shape)  # every value in exactly one set


def test_reduction_axes_summary_reads_well():
    summary = norms.describe_axes(reduction_axes("batch", (8, 3, 4, 5)))
    assert summary == "BatchNorm computes 3 mean/variance pair(s), each over N × H × W = 160 values."


def test_reduction_axes_rejects_bad_arguments():
    with pytest.raises(ValueError, match="Unknown normalization 'weight'"):
        reduction_axes("weight", (2, 3))
    with pytest.raises(ValueError, match="0 to 3 spatial dims"):
        reduction_axes("batch", (2,))
    with pytest.raises(ValueError, match=r"^num_channels \(7\) must be divisible by num_groups \(3\)"):
        reduction_axes("group", (2, 7, 4), 3)


# --------------------------------------------------------------------------- statistic ids


def test_statistic_ids_by_hand():
    # (N, C, S) = (2, 4, 2)
    batch = [[[0, 0], [1, 1], [2, 2], [3, 3]], [[0, 0], [1, 1], [2, 2], [3, 3]]]
    layer = [[[0, 0], [0, 0], [0, 0], [0, 0]], [[1, 1], [1, 1], [1, 1], [1, 1]]]
    instance = [[[0, 0], [1, 1], [2, 2], [3, 3]], [[4, 4], [5, 5], [6, 6], [7, 7]]]
    group2 = [[[0, 0], [0, 0], [1, 1], [1, 1]], [[2, 2], [2, 2], [3, 3], [3, 3]]]
    assert statistic_ids("batch", (2, 4, 2)).tolist() == batch
    assert statistic_ids("layer", (2, 4, 2)).tolist() == layer
    assert statistic_ids("rms", (2, 4, 2)).tolist() == layer
    assert statistic_ids("instance", (2, 4, 2)).tolist() == instance
    assert statistic_ids("group", (2, 4, 2), 2).tolist() == group2
    assert statistic_ids("group", (2, 4, 2), 1).tolist() == layer
    assert statistic_ids("group", (2, 4, 2), 4).tolist() == instance


def test_statistic_ids_flatten_spatial_dims_and_count_values_per_statistic():
    ids = statistic_ids("batch", (3, 2, 4, 5))
    assert ids.shape == (3, 2, 20)
    assert torch.bincount(ids.flatten()).tolist() == [60, 60]
    ids = statistic_ids("group", (3, 6, 2, 2), 3)
    assert torch.bincount(ids.flatten()).tolist() == [8] * 9


# --------------------------------------------------------------------------- the moments themselves


def test_shifted_moments_by_hand():
    # One statistic over [2, 4, 4, 4, 5, 5, 7, 9]: mean 5, biased variance 4 (the classic example).
    x = torch.tensor([[2.0, 4, 4, 4, 5, 5, 7, 9]])
    centered, mean, var = shifted_moments(x, (1,))
    assert mean.tolist() == [[5.0]]
    assert var.item() == pytest.approx(4.0, rel=1e-6)  # float32 (σ² comes from a norm, squared)
    assert centered.tolist() == [[-3.0, -1, -1, -1, 0, 0, 2, 4]]


def test_shifted_moments_return_the_shift_they_used():
    x = torch.tensor([[10.0, 11.0, 13.0], [1.0, 1.0, 4.0]])
    centered, mean, var, shift, shifted_mean = shifted_moments(x, (1,), return_shift=True)
    assert shift.tolist() == [[10.0], [1.0]]  # the first value of each row
    torch.testing.assert_close(shifted_mean, torch.tensor([[4 / 3], [1.0]]))
    assert torch.equal(centered, (x - shift) - shifted_mean)
    torch.testing.assert_close(mean, torch.tensor([[34 / 3], [2.0]]))
    torch.testing.assert_close(var, torch.tensor([[14 / 9], [2.0]]))  # ((-4/3)²+(-1/3)²+(5/3)²)/3, (1+1+4)/3


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 4), min_size=2, max_size=4),
    offset=st.floats(-1e3, 1e3),
    scale=st.floats(1e-2, 1e2),
    data=st.data(),
)
def test_shifted_moments_match_a_float64_two_pass_computation(shape, offset, scale, data):
    dims = tuple(sorted(data.draw(st.sets(st.integers(0, len(shape) - 1), min_size=1))))
    x = (torch.randn(shape, generator=torch.Generator().manual_seed(len(shape)), dtype=torch.float64) * scale + offset)
    centered, mean, var = shifted_moments(x, dims)
    count = math.prod(shape[d] for d in dims)
    by_hand_mean = x.sum(dims, keepdim=True) / count
    by_hand_var = ((x - by_hand_mean) ** 2).sum(dims, keepdim=True) / count
    torch.testing.assert_close(mean, by_hand_mean)
    torch.testing.assert_close(var, by_hand_var, atol=1e-9 * scale**2, rtol=1e-7)
    torch.testing.assert_close(centered, x - by_hand_mean, atol=1e-9 * (scale + abs(offset)), rtol=1e-7)


def test_sum_of_squares_along_any_dims_and_under_autograd():
    x = torch.arange(24, dtype=torch.float64).reshape(2, 3, 4)
    for dims in [(0,), (1,), (2,), (0, 2), (1, 2), (0, 1, 2), (0, 1)]:
        torch.testing.assert_close(sum_of_squares(x, dims), (x * x).sum(dims, keepdim=True))
    # Under autograd it must stay differentiable at a constant (all-zero) group: gradient 2x = 0.
    z = torch.zeros(2, 3, requires_grad=True)
    sum_of_squares(z, (1,)).sum().backward()
    assert torch.equal(z.grad, torch.zeros(2, 3))


def test_standardize_by_hand():
    x = torch.tensor([[1.0, 3.0]], dtype=torch.float64)  # mean 2, variance 1
    x_hat, mean, var, inv_std = standardize(x, (1,), eps=0.0 + 1e-12)
    torch.testing.assert_close(x_hat, torch.tensor([[-1.0, 1.0]], dtype=torch.float64))
    assert mean.item() == 2.0
    assert var.item() == pytest.approx(1.0, rel=1e-15)
    torch.testing.assert_close(inv_std, torch.tensor([[1 / math.sqrt(1 + 1e-12)]], dtype=torch.float64))


def test_infinite_first_value_gives_torchs_infinite_mean():
    x = torch.tensor([[math.inf, 1.0, 2.0]])
    _, mean, _ = shifted_moments(x, (1,))
    assert mean.item() == math.inf


def test_divisors_and_norm_labels():
    assert norms.divisors(12) == [1, 2, 3, 4, 6, 12]
    assert set(norms.NORM_LABELS) == {'none', *axes.NORM_KINDS}
