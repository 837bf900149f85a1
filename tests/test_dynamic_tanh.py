"""normcore.DynamicTanh and normcore.functional.dynamic_tanh (Zhu et al. 2025).

Oracles: the paper's formula tanh(α·x)·γ + β written out here with torch ops in float64, its
autograd gradients, torch.autograd.gradcheck, and the paper code's parameter layout (α of
shape (1,), γ ones, β zeros; state_dict keys alpha, weight, bias).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import normcore
import normcore.functional as NF


def _formula(x, alpha, weight, bias):
    y = torch.tanh(alpha * x)
    if weight is not None:
        y = y * weight
    return y if bias is None else y + bias


def test_defaults_and_state_dict_keys():
    layer = normcore.DynamicTanh((3, 4))
    assert list(layer.state_dict()) == ["alpha", "weight", "bias"]
    assert layer.alpha.shape == (1,) and float(layer.alpha.detach()) == 0.5
    assert torch.equal(layer.weight, torch.ones(3, 4)) and torch.equal(layer.bias, torch.zeros(3, 4))
    assert list(normcore.DynamicTanh(4, bias=False).state_dict()) == ["alpha", "weight"]
    assert list(normcore.DynamicTanh(4, elementwise_affine=False).state_dict()) == ["alpha"]
    assert float(normcore.DynamicTanh(4, alpha_init_value=0.2).alpha.detach()) == pytest.approx(0.2)
    assert normcore.DynamicTanh(4, dtype=torch.float64).weight.dtype == torch.float64


def test_gradients_match_autograd_of_the_formula_in_float64():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, 8, generator=g, dtype=torch.float64)
    layer = normcore.DynamicTanh(8, alpha_init_value=0.7, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(8, generator=g, dtype=torch.float64))
        layer.bias.copy_(torch.randn(8, generator=g, dtype=torch.float64))
    params = [t.detach().clone().requires_grad_() for t in (x, layer.alpha, layer.weight, layer.bias)]
    dy = torch.randn(5, 3, 8, generator=g, dtype=torch.float64)
    expected = torch.autograd.grad(_formula(*params), params, dy)
    x_in = x.clone().requires_grad_()
    got = torch.autograd.grad(layer(x_in), [x_in, layer.alpha, layer.weight, layer.bias], dy)
    for e, o in zip(expected, got):
        torch.testing.assert_close(o, e, rtol=1e-12, atol=1e-12)


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(1)
    x, alpha, weight, bias = (torch.randn(s, generator=g, dtype=torch.float64, requires_grad=True)
                              for s in ((4, 6), (1,), (6,), (6,)))
    assert torch.autograd.gradcheck(NF.dynamic_tanh, (x, alpha, weight, bias))
    assert torch.autograd.gradgradcheck(NF.dynamic_tanh, (x, alpha, weight, bias))


@settings(max_examples=40, deadline=None)
@given(lead=st.lists(st.integers(0, 3), max_size=2), trail=st.lists(st.integers(0, 4), min_size=1, max_size=2),
       dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16]),
       affine=st.booleans(), bias=st.booleans(), alpha=st.floats(-3, 3), seed=st.integers(0, 2**16))
def test_forward_matches_the_formula(lead, trail, dtype, affine, bias, alpha, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*lead, *trail, generator=g).to(dtype)
    layer = normcore.DynamicTanh(trail, alpha, affine, bias, dtype=dtype)
    if affine:
        with torch.no_grad():
            layer.weight.copy_(torch.randn(trail, generator=g))
            if bias:
                layer.bias.copy_(torch.randn(trail, generator=g))
    y = layer(x)
    assert y.shape == x.shape and y.dtype == dtype
    expected = _formula(x, layer.alpha, layer.weight, layer.bias)  # the same ops in the same dtype
    torch.testing.assert_close(y, expected)


@pytest.mark.parametrize("shape", [(2, 5), (2, 4, 3), (4,)])
def test_a_wrong_trailing_shape_says_what_to_change(shape):
    layer = normcore.DynamicTanh((4, 4))
    with pytest.raises(ValueError, match=r"trailing dims \[4, 4\].*normalized_shape"):
        layer(torch.randn(shape))
    with pytest.raises(normcore.NormcoreError, match="trailing dims"):
        normcore.DynamicTanh(4, elementwise_affine=False)(torch.randn(2, 3))


def test_bad_alpha_and_input_types():
    with pytest.raises(ValueError, match="one element"):
        NF.dynamic_tanh(torch.randn(2, 3), torch.ones(3))
    with pytest.raises(normcore.NormcoreDtypeError, match="floating-point"):
        normcore.DynamicTanh(3)(torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="bias must have shape"):
        NF.dynamic_tanh(torch.randn(2, 3), torch.ones(1), torch.ones(3), torch.ones(2))


def test_convert_ln_to_dyt_swaps_every_layer_norm():
    model = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6, bias=False),
                          nn.Sequential(normcore.LayerNorm(6, elementwise_affine=False), nn.ReLU()),
                          nn.BatchNorm1d(6))
    converted = normcore.convert_ln_to_dyt(model, alpha_init_value=0.3)
    assert converted is model
    first, second = model[1], model[2][0]
    assert isinstance(first, normcore.DynamicTanh) and isinstance(second, normcore.DynamicTanh)
    assert list(first.state_dict()) == ["alpha", "weight"] and list(second.state_dict()) == ["alpha"]
    assert first.normalized_shape == (6,) and float(first.alpha.detach()) == pytest.approx(0.3)
    assert isinstance(model[0], nn.Linear) and isinstance(model[3], nn.BatchNorm1d)
    assert isinstance(normcore.convert_ln_to_dyt(nn.LayerNorm(5).double()), normcore.DynamicTanh)
    assert normcore.convert_ln_to_dyt(nn.LayerNorm(5).double()).weight.dtype == torch.float64
