"""RMSNorm's own questions: torch's eps=None on every dtype, where the half-precision cast
goes, mixed dtypes, large offsets, and what its output looks like (not zero-mean, RMS 1).

The parity, probe-torch, zero-size, float32-gradient, gradcheck, torch.func, signature and
state_dict tests include RMSNorm beside the other layers (tests/test_parity.py and friends).
Oracles here: torch.nn.functional.rms_norm, float64 arithmetic written out in the test, and
literal numbers (torch.finfo's, written as powers of two).
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as TF
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import normcore
import normcore.functional as NF

BACKWARDS = ["closed_form", "autograd"]
HALF = [torch.float16, torch.bfloat16]
# eps=None is finfo(the dtype it computes in).eps; float16 and bfloat16 compute in float32.
EPS_NONE = {torch.float16: 2.0**-23, torch.bfloat16: 2.0**-23, torch.float32: 2.0**-23, torch.float64: 2.0**-52}


def _run(fn, x, weight, dy):
    """Output and the gradients of x and weight (None without a weight)."""
    x = x.clone().requires_grad_()
    weight = None if weight is None else weight.clone().requires_grad_()
    y = fn(x, weight)
    y.backward(dy)
    return y.detach(), x.grad, None if weight is None else weight.grad


@pytest.mark.parametrize("dtype", list(EPS_NONE), ids=str)
def test_eps_none_is_finfo_of_the_compute_dtype(dtype):
    """A constant row c with c² = the expected ε comes out as c / sqrt(c² + ε) = 1/√2; with
    finfo(float16).eps (9.8e-4), 1e-5 or 1e-6 it would be 0.01 to 0.33."""
    eps = EPS_NONE[dtype]
    c = eps**0.5
    x = torch.full((3, 8), c, dtype=torch.float64).to(dtype)
    expected = float(x[0, 0]) / (float(x[0, 0]) ** 2 + eps) ** 0.5  # ≈ 0.7071, in float64
    for y in (NF.rms_norm(x, (8,)), normcore.RMSNorm(8, dtype=dtype)(x), TF.rms_norm(x, (8,))):
        assert y.dtype == dtype
        torch.testing.assert_close(y.double(), torch.full((3, 8), expected, dtype=torch.float64), rtol=1e-2 if dtype in HALF else 1e-6, atol=0)


@pytest.mark.parametrize("backward", BACKWARDS)
@pytest.mark.parametrize("dtype", list(EPS_NONE), ids=str)
def test_outputs_equal_torchs_bit_for_bit_on_every_dtype(dtype, backward):
    """Same ops in the same order: γ multiplies in float32, before the cast back to half."""
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(64, 3, 40, generator=g, dtype=torch.float64) * 3 + 1).to(dtype)
    weight = (torch.rand(3, 40, generator=g, dtype=torch.float64) + 0.5).to(dtype)
    dy = torch.randn(x.shape, generator=g, dtype=torch.float64).to(dtype)
    for w in (None, weight):
        for eps in (None, 1e-5):
            ours = _run(lambda x, w: NF.rms_norm(x, (3, 40), w, eps, backward=backward), x, w, dy)
            theirs = _run(lambda x, w: TF.rms_norm(x, (3, 40), w, eps), x, w, dy)
            assert torch.equal(ours[0], theirs[0]), f"eps={eps}, weight {w is not None}"
            for a, b in zip(ours[1:], theirs[1:]):
                if b is not None:  # gradients: the same sums, in another order (closed form)
                    assert a.dtype == b.dtype
                    torch.testing.assert_close(a, b, rtol=1e-2 if dtype in HALF else None, atol=1e-3 if dtype in HALF else None)


def test_multiplying_by_gamma_after_the_cast_would_differ_from_torch():
    """The bug users report: ``(x̂).to(half) · γ`` rounds twice. torch (and normcore) does not."""
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(200, 64, generator=g) * 3 + 1).half()
    weight = (torch.rand(64, generator=g) + 0.5).half()
    x32 = x.float()
    after = (x32 * torch.rsqrt(x32.square().mean(-1, keepdim=True) + 2.0**-23)).half() * weight
    theirs = TF.rms_norm(x, (64,), weight)
    assert (after != theirs).float().mean() > 0.1  # a quarter of the values differ in the last bit
    assert torch.equal(NF.rms_norm(x, (64,), weight), theirs)


@pytest.mark.parametrize("backward", BACKWARDS)
@pytest.mark.parametrize("x_dtype,w_dtype", [(torch.float16, torch.float32), (torch.bfloat16, torch.float32),
                                             (torch.float32, torch.float64), (torch.float64, torch.float32),
                                             (torch.float32, torch.float16)])
def test_a_weight_of_another_dtype_is_promoted_as_torch_promotes_it(x_dtype, w_dtype, backward):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(16, 24, generator=g, dtype=torch.float64).to(x_dtype)
    weight = (torch.rand(24, generator=g, dtype=torch.float64) + 0.5).to(w_dtype)
    dy = torch.randn(16, 24, generator=g, dtype=torch.float64).to(x_dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch: "Mismatch dtype ... Cannot dispatch to fused implementation"
        theirs = _run(lambda x, w: TF.rms_norm(x, (24,), w), x, weight, dy)
    ours = _run(lambda x, w: NF.rms_norm(x, (24,), w, backward=backward), x, weight, dy)
    assert torch.equal(ours[0], theirs[0])
    for a, b in zip(ours[1:], theirs[1:]):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=1e-2 if x_dtype in HALF else None, atol=1e-3 if x_dtype in HALF else None)


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_complex_inputs_are_taken_as_torch_takes_them(dtype):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 6, generator=g, dtype=dtype)
    weight = torch.randn(6, generator=g, dtype=dtype)
    dy = torch.randn(4, 6, generator=g, dtype=dtype)
    ours, theirs = _run(lambda x, w: NF.rms_norm(x, (6,), w), x, weight, dy), _run(lambda x, w: TF.rms_norm(x, (6,), w), x, weight, dy)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "ComplexHalf support is experimental"
        half = torch.zeros(2, 3, dtype=torch.complex32)
    for fn in (TF.rms_norm, NF.rms_norm):
        with pytest.raises(NotImplementedError):
            fn(half, (3,))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dtype=st.sampled_from(HALF), lead=st.lists(st.integers(0, 4), max_size=2), normalized=st.lists(st.integers(1, 9), min_size=1, max_size=3),
       affine=st.booleans(), eps=st.sampled_from([None, 1e-6, 1e-2]), backward=st.sampled_from(BACKWARDS), seed=st.integers(0, 2**16))
def test_half_precision_matches_torch_on_any_shape(dtype, lead, normalized, affine, eps, backward, seed):
    g = torch.Generator().manual_seed(seed)
    shape = tuple(lead) + tuple(normalized)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 4 - 1).to(dtype)
    weight = (torch.rand(normalized, generator=g, dtype=torch.float64) + 0.5).to(dtype) if affine else None
    dy = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    ours = _run(lambda x, w: NF.rms_norm(x, tuple(normalized), w, eps, backward=backward), x, weight, dy)
    theirs = _run(lambda x, w: TF.rms_norm(x, tuple(normalized), w, eps), x, weight, dy)
    assert torch.equal(ours[0], theirs[0])
    for a, b in zip(ours[1:], theirs[1:]):
        if b is not None:
            torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2)  # a few half-precision ulps of a sum


@pytest.mark.parametrize("backward", BACKWARDS)
def test_large_offset_is_as_accurate_as_torch(backward):
    """No centring, so no cancellation: x = 1e4 + N(0, 1) in float32 is normalized to within
    ~2e-7 (relative) of float64, as torch's; the gradients are as close as torch's."""
    g = torch.Generator().manual_seed(4)
    x = (1e4 + torch.randn(256, 1024, generator=g, dtype=torch.float64)).float()
    weight = (torch.rand(1024, generator=g, dtype=torch.float64) + 0.5).float()
    dy = torch.randn(256, 1024, generator=g, dtype=torch.float64).float()
    exact = _run(lambda x, w: TF.rms_norm(x, (1024,), w, 2.0**-23), x.double(), weight.double(), dy.double())
    ours = _run(lambda x, w: NF.rms_norm(x, (1024,), w, backward=backward), x, weight, dy)
    theirs = _run(lambda x, w: TF.rms_norm(x, (1024,), w), x, weight, dy)
    for what, a, b, ref in zip(("output", "input grad", "weight grad"), ours, theirs, exact):
        err_ours, err_theirs = ((t.double() - ref).abs().max().item() / ref.abs().max().item() for t in (a, b))
        assert err_ours < 1e-6, f"{what}: {err_ours:.1e}"
        assert err_ours <= 1.5 * err_theirs + 1e-7, f"{what}: normcore {err_ours:.1e}, torch {err_theirs:.1e}"


@settings(max_examples=30, deadline=None)
@given(mu=st.floats(-50, 50), sigma=st.floats(0.01, 20), eps=st.sampled_from([1e-5, 1.0]), seed=st.integers(0, 2**16))
def test_output_mean_is_mu_over_root_mu2_sigma2_eps_and_its_rms_is_one(mu, sigma, eps, seed):
    """What the lab shows: unlike LayerNorm's, RMSNorm's output is not zero-mean."""
    g = torch.Generator().manual_seed(seed)
    x = mu + sigma * torch.randn(3, 500, generator=g, dtype=torch.float64)
    m, var = x.mean(-1), x.var(-1, unbiased=False)  # the row's own μ and (biased) σ²
    y = normcore.RMSNorm(500, eps=eps, elementwise_affine=False).double()(x)
    torch.testing.assert_close(y.mean(-1), m / (m**2 + var + eps).sqrt())
    torch.testing.assert_close(y.square().mean(-1), (m**2 + var) / (m**2 + var + eps))  # 1 up to ε


def test_last_stats_hold_the_mean_square_it_divided_by():
    x = torch.randn(2, 5, 4, 3, dtype=torch.float64) * 2 + 1
    layer = normcore.RMSNorm((4, 3), eps=0.5).double()
    y = layer(x)
    mean_square = (x * x).sum((2, 3)) / 12
    stats = layer.last_stats
    assert stats.mean.shape == stats.var.shape == (2, 5) and stats.values_per_stat == 12
    assert torch.equal(stats.mean, torch.zeros(2, 5, dtype=torch.float64))
    torch.testing.assert_close(stats.var, mean_square)
    torch.testing.assert_close(stats.mean_square, mean_square)
    # The shared formula (x − mean) / sqrt(var + ε) is RMSNorm's output (γ = 1 here).
    torch.testing.assert_close(y, (x - stats.mean[..., None, None]) / (stats.var[..., None, None] + 0.5).sqrt())


@pytest.mark.parametrize("backward", BACKWARDS)
def test_non_contiguous_inputs_match_torch(backward):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(6, 7, 5, generator=g, dtype=torch.float64).transpose(0, 2)  # (5, 7, 6), strided
    weight = torch.rand(7, 6, generator=g, dtype=torch.float64) + 0.5
    dy = torch.randn(5, 7, 6, generator=g, dtype=torch.float64).transpose(1, 2).contiguous().transpose(1, 2)
    ours = _run(lambda x, w: NF.rms_norm(x, (7, 6), w, backward=backward), x, weight, dy)
    theirs = _run(lambda x, w: TF.rms_norm(x, (7, 6), w), x, weight, dy)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)


def test_rms_norm_in_a_model_trains_like_torchs():
    """Three SGD steps of a small model with torch's RMSNorm and with normcore's."""
    def model(norm):
        torch.manual_seed(6)
        return nn.Sequential(nn.Linear(8, 16), norm(16), nn.ReLU(), nn.Linear(16, 2)).double()

    g = torch.Generator().manual_seed(7)
    x, target = torch.randn(32, 8, generator=g, dtype=torch.float64), torch.randn(32, 2, generator=g, dtype=torch.float64)
    trained = []
    for norm in (nn.RMSNorm, normcore.RMSNorm):
        net = model(norm)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        for _ in range(3):
            optimizer.zero_grad()
            ((net(x) - target) ** 2).mean().backward()
            optimizer.step()
        trained.append(net.state_dict())
    for key, value in trained[0].items():
        torch.testing.assert_close(trained[1][key], value, msg=key)
