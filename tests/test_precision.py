"""Large offsets: normcore's shifted statistics stay exact in float32 where torch's do not.

The input is 1e4 plus noise with a std of 1e-2, rounded to float32. The reference is the
same normalization in float64 *of those float32 values*, so that it measures only the
arithmetic, not the rounding of the input. See ``stats.shifted_moments`` for the reason.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import normcore

OFFSET, STD = 1e4, 1e-2

SHAPE = (8, 4, 6, 6)
# layer -> (constructor args, axes each statistic is taken over; None: GroupNorm's 2 groups)
CASES = {
    "BatchNorm2d": ((4,), (0, 2, 3)),
    "GroupNorm": ((2, 4), None),
    "LayerNorm": (((4, 6, 6),), (1, 2, 3)),
    "InstanceNorm2d": ((4,), (2, 3)),
}


def _offset_input(shape) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (OFFSET + STD * torch.randn(shape, generator=g, dtype=torch.float64)).float()


def _reference(x32: torch.Tensor, name: str, eps: float = 1e-5) -> torch.Tensor:
    """(x − μ) / sqrt(σ² + ε) in float64, on the float32 values themselves."""
    x = x32.double()
    if name == "GroupNorm":
        n, c = x.shape[:2]
        grouped = x.reshape(n, 2, -1)
        mean = grouped.mean(2, keepdim=True)
        var = ((grouped - mean) ** 2).mean(2, keepdim=True)
        return ((grouped - mean) / torch.sqrt(var + eps)).reshape(x.shape)
    dims = CASES[name][1]
    mean = x.mean(dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dims, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


@pytest.mark.parametrize("backward", ["closed_form", "autograd"])
@pytest.mark.parametrize("name", list(CASES))
def test_offset_inputs_normalize_to_within_1e3_of_float64(name, backward):
    x = _offset_input(SHAPE)
    y = getattr(normcore, name)(*CASES[name][0], backward=backward)(x)
    error = (y.double() - _reference(x, name)).abs().max().item()
    assert y.dtype == torch.float32
    assert error < 1e-3, f"{name}: max error {error:.2e}"
    assert error < 1e-5  # in fact it is a few 1e-7: the float32 rounding of the output itself


@pytest.mark.parametrize("name", list(CASES))
def test_torch_itself_is_off_by_percents_on_the_same_input(name):
    """Why the shift matters: torch's float32 kernels round the mean of these values."""
    x = _offset_input(SHAPE)
    error = (getattr(nn, name)(*CASES[name][0])(x).double() - _reference(x, name)).abs().max().item()
    assert error > 1e-3, f"torch {name} got {error:.1e}; if torch became exact, update stats.shifted_moments' docstring"


def test_offset_gradients_are_accurate_too():
    """The closed-form backward recomputes x − μ through the same shift, so dx stays accurate."""
    x = _offset_input(SHAPE)
    dy = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    x32 = x.clone().requires_grad_()
    normcore.BatchNorm2d(4)(x32).backward(dy)
    x64 = x.double().requires_grad_()
    _reference(x64, "BatchNorm2d").backward(dy.double())
    scale = x64.grad.abs().max().item()
    # normcore: ~1e-7 of the largest entry; torch.nn.BatchNorm2d on the same input: ~2e-3.
    assert (x32.grad.double() - x64.grad).abs().max().item() < 1e-5 * scale


def test_running_mean_keeps_the_offset():
    """The reported μ is shift + mean(x − shift): right to float32's resolution at 1e4."""
    x = _offset_input(SHAPE)
    bn = normcore.BatchNorm2d(4, momentum=1.0)
    bn(x)
    torch.testing.assert_close(bn.running_mean.double(), x.double().mean((0, 2, 3)), rtol=1e-7, atol=0)

