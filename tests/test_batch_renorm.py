"""Batch Renormalization (normcore.BatchRenorm*d) against independent oracles.

* r_max = 1, d_max = 0: torch.nn.BatchNorm*d (outputs, gradients, running statistics);
* unclipped: torch.nn.BatchNorm*d's eval output with the pre-update running statistics;
* the input gradient: autograd through a plain float64 formula with r, d detached, and gradcheck;
* state_dict: loads strictly into torch.nn.BatchNorm*d; the documented signature.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

import normcore

PAIRS = {2: (normcore.BatchRenorm1d, nn.BatchNorm1d), 3: (normcore.BatchRenorm1d, nn.BatchNorm1d),
         4: (normcore.BatchRenorm2d, nn.BatchNorm2d), 5: (normcore.BatchRenorm3d, nn.BatchNorm3d)}


@st.composite
def shapes(draw, allow_empty=False):
    rank = draw(st.sampled_from(sorted(PAIRS)))
    n = draw(st.sampled_from([0, 2, 3, 5] if allow_empty else [2, 3, 5]))
    return (n, draw(st.integers(1, 4))) + tuple(draw(st.integers(1, 3)) for _ in range(rank - 2))


def _twins(shape, dtype, **renorm):
    """Ours in ``dtype``; torch's in float64 (at 2 values per channel torch's float32 dx is itself
    ~7e-5 off the float64 one: a near-cancellation, which normcore's closed form holds to ~4e-6)."""
    ours_cls, theirs_cls = PAIRS[len(shape)]
    ours, theirs = ours_cls(shape[1], dtype=dtype, **renorm), theirs_cls(shape[1], dtype=torch.float64)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5), ours.bias.uniform_(-1, 1)
        ours.running_mean.uniform_(-1, 1), ours.running_var.uniform_(0.5, 2)
    theirs.load_state_dict({k: v.double() if v.is_floating_point() else v for k, v in ours.state_dict().items()})  # strict
    return ours, theirs


def _input(shape, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * 1.5 + 0.5).to(dtype)


def _close(got, float64_oracle):
    """assert_close at ``got``'s dtype's default tolerances."""
    torch.testing.assert_close(got, float64_oracle.detach().to(got.dtype))


@settings(max_examples=25, deadline=None)
@given(shape=shapes(allow_empty=True), dtype=st.sampled_from([torch.float32, torch.float64]), seed=st.integers(0, 99))
def test_without_clipping_room_it_is_batchnorm(shape, dtype, seed):
    ours, theirs = _twins(shape, dtype, r_max=1.0, d_max=0.0)
    x = _input(shape, dtype, seed)
    dy = _input(shape, dtype, seed + 1)
    for _ in range(2):  # two steps: the running statistics feed r and d of the second
        xo, xt = x.clone().requires_grad_(), x.to(torch.float64, copy=True).requires_grad_()
        yo, yt = ours(xo), theirs(xt)
        _close(yo, yt)
        yo.backward(dy), yt.backward(dy.double())
        _close(xo.grad, xt.grad)
        _close(ours.weight.grad, theirs.weight.grad)
        _close(ours.bias.grad, theirs.bias.grad)
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            _close(getattr(ours, name), getattr(theirs, name))
        ours.zero_grad(), theirs.zero_grad()


@settings(max_examples=25, deadline=None)
@given(shape=shapes(), dtype=st.sampled_from([torch.float32, torch.float64]), seed=st.integers(0, 99))
def test_unclipped_training_is_eval_with_the_running_statistics(shape, dtype, seed):
    ours, theirs = _twins(shape, dtype, r_max=float("inf"), d_max=float("inf"))
    x = _input(shape, dtype, seed)
    theirs.eval()
    _close(ours(x), theirs(x.double()))  # theirs: the running statistics before our update


def _float64_formula(x, weight, bias, running_mean, running_var, eps, r_max, d_max):
    """Ioffe 2017's training forward, written plainly in float64; r and d detached."""
    dims = [0] + list(range(2, x.dim()))
    view = (1, -1) + (1,) * (x.dim() - 2)
    mean = x.mean(dims, keepdim=True)
    sigma_b = torch.sqrt(x.var(dims, unbiased=False, keepdim=True) + eps)
    sigma = torch.sqrt(running_var.view(view) + eps)
    r = (sigma_b / sigma).clamp(1 / r_max, r_max).detach()
    d = ((mean - running_mean.view(view)) / sigma).clamp(-d_max, d_max).detach()
    return weight.view(view) * ((x - mean) / sigma_b * r + d) + bias.view(view)


@settings(max_examples=25, deadline=None)
@given(shape=shapes(), dtype=st.sampled_from([torch.float32, torch.float64]), seed=st.integers(0, 99),
       r_max=st.sampled_from([1.0, 1.2, 3.0]), d_max=st.sampled_from([0.0, 0.3, 5.0]))
def test_gradients_are_the_closed_form_with_r_and_d_constant(shape, dtype, seed, r_max, d_max):
    ours, _ = _twins(shape, dtype, r_max=r_max, d_max=d_max)
    x, dy = _input(shape, dtype, seed), _input(shape, dtype, seed + 1)
    state = {k: v.double() for k, v in ours.state_dict().items()}
    x64 = x.to(torch.float64, copy=True).requires_grad_()
    w64, b64 = (state[k].clone().requires_grad_() for k in ("weight", "bias"))
    expected = _float64_formula(x64, w64, b64, state["running_mean"], state["running_var"], ours.eps, r_max, d_max)
    expected.backward(dy.double())
    xo = x.clone().requires_grad_()
    y = ours(xo)
    y.backward(dy)
    torch.testing.assert_close(y, expected.to(dtype).detach())
    for got, want in ((xo.grad, x64.grad), (ours.weight.grad, w64.grad), (ours.bias.grad, b64.grad)):
        torch.testing.assert_close(got, want.to(dtype))


def test_gradcheck_where_r_and_d_are_clipped_constants():
    """Where every r and d sits at its bound they are true constants of x (the clip's derivative is
    0 there), so finite differences see exactly the closed form's r- and d-constant gradient."""
    torch.manual_seed(0)
    x = (torch.randn(6, 3, 2, dtype=torch.float64) * 2 + 1).requires_grad_()
    w, b = torch.rand(3, dtype=torch.float64, requires_grad=True), torch.randn(3, dtype=torch.float64, requires_grad=True)
    rm, rv = torch.full((3,), -5.0, dtype=torch.float64), torch.full((3,), 0.01, dtype=torch.float64)

    def f(x, w, b):  # fresh copies of the running statistics: each evaluation starts from the same ones
        return normcore.batch_renorm.batch_renorm(x, rm.clone(), rv.clone(), w, b, 0.1, 1e-5, 1.5, 0.5)

    _, _, r, d = normcore.batch_renorm.batch_renorm(x, rm.clone(), rv.clone(), w, b, return_stats=True, r_max=1.5, d_max=0.5)
    assert (r == 1.5).all() and (d == 0.5).all()  # every channel clipped
    assert torch.autograd.gradcheck(f, (x, w, b))


@pytest.mark.parametrize("cls, torch_cls", [(normcore.BatchRenorm1d, nn.BatchNorm1d), (normcore.BatchRenorm2d, nn.BatchNorm2d),
                                            (normcore.BatchRenorm3d, nn.BatchNorm3d)])
def test_state_dict_loads_strictly_into_torch_batchnorm(cls, torch_cls):
    ours = cls(5)
    ours(torch.randn((4, 5) + (2,) * (cls._input_ranks[-1] - 2)))
    theirs = torch_cls(5)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    torch.testing.assert_close(theirs.running_var, ours.running_var)


def test_signature_is_the_documented_one():
    """(num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, *, r_max=3.0,
    d_max=5.0, device=None, dtype=None): names, kinds and defaults."""
    P = inspect.Parameter
    documented = [("num_features", P.POSITIONAL_OR_KEYWORD, P.empty), ("eps", P.POSITIONAL_OR_KEYWORD, 1e-5),
                  ("momentum", P.POSITIONAL_OR_KEYWORD, 0.1), ("affine", P.POSITIONAL_OR_KEYWORD, True),
                  ("track_running_stats", P.POSITIONAL_OR_KEYWORD, True), ("r_max", P.KEYWORD_ONLY, 3.0),
                  ("d_max", P.KEYWORD_ONLY, 5.0), ("device", P.KEYWORD_ONLY, None), ("dtype", P.KEYWORD_ONLY, None)]
    for cls in (normcore.BatchRenorm1d, normcore.BatchRenorm2d, normcore.BatchRenorm3d):
        params = list(inspect.signature(cls).parameters.values())
        assert [(p.name, p.kind, p.default) for p in params] == documented


def test_schedule_starts_as_batchnorm_and_ends_at_the_papers_values():
    total = 800  # paper's 40k at 400: warm-up until 50, d_max 5 at 250, r_max 3 at 400
    assert normcore.renorm_schedule(0, total) == (1.0, 0.0)
    assert normcore.renorm_schedule(50, total) == (1.0, 0.0)
    assert normcore.renorm_schedule(250, total)[1] == 5.0 and normcore.renorm_schedule(249, total)[1] < 5.0
    assert normcore.renorm_schedule(400, total) == (3.0, 5.0) and normcore.renorm_schedule(799, total) == (3.0, 5.0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_as_accurate_as_torchs_batchnorm(dtype):
    """r_max = 1, d_max = 0 in half precision: output and running statistics within torch's own
    half-precision error (against float64) plus one assert_close tolerance of the dtype."""
    rtol = {torch.float16: 1e-3, torch.bfloat16: 1.6e-2}[dtype]
    x = (torch.randn(8, 3, 2, 2, generator=torch.Generator().manual_seed(0)) * 2 + 1).to(dtype)
    layers = [normcore.BatchRenorm2d(3, r_max=1.0, d_max=0.0, dtype=dtype), nn.BatchNorm2d(3, dtype=dtype),
              nn.BatchNorm2d(3, dtype=torch.float64)]
    outs = [[m(x.to(m.running_var.dtype)), m.running_mean, m.running_var] for m in layers]
    for ours, theirs, exact in zip(*outs):
        assert ours.dtype == dtype
        bound = (theirs.double() - exact).abs().max() + 1e-5 + rtol * exact.abs().max()
        assert (ours.double() - exact).abs().max() <= bound
