"""Accept exactly what torch accepts, raise where it raises: torch itself is the oracle.

For every drawn call (a layer's constructor arguments, an input of any rank including zero
sizes, train or eval, any eps and momentum, ``None`` or wrongly sized parameters), torch
runs first. If torch raises, normcore must raise an exception that the same ``except``
clause catches (``isinstance`` of torch's type). If torch returns, normcore must return the
same output, the same input and parameter gradients, and leave the same buffers behind
(NaN where torch has NaN). Nothing here lists which inputs are valid: a future torch that
changes its rules changes what this test expects.

float64 throughout, so that "the same result" can be asserted at assert_close's tight
float64 tolerances even where a statistic holds one or two values; float32 is compared in
``test_parity.py`` and ``test_grad_accuracy.py``.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as TF
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from torch import nn

import normcore
import normcore.functional as NF

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EPS = [1e-5, 1e-3, 0.0, -1e-3, -10.0, float("nan"), float("inf")]
MOMENTA = [0.1, 0.0, 1.0, 5.0, -1.2, float("nan")]
SIZES = [0, 1, 2, 2, 3]
MODULE_RANKS = {
    "BatchNorm1d": (2, 3), "BatchNorm2d": (4,), "BatchNorm3d": (5,), "InstanceNorm1d": (2, 3),
    "InstanceNorm2d": (3, 4), "InstanceNorm3d": (4, 5), "GroupNorm": (2, 3, 4), "LayerNorm": (1, 2, 3), "RMSNorm": (1, 2, 3),
}


def _run(fn):
    """(result, None) or (None, the exception fn raised)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. InstanceNorm's channel-count warning
            return fn(), None
    except Exception as error:  # noqa: BLE001 - any exception torch raises is the oracle
        return None, error


def _same(ours, theirs, what: str) -> None:
    if theirs is None or ours is None:
        assert ours is None and theirs is None, f"{what}: normcore {ours is not None}, torch {theirs is not None}"
        return
    torch.testing.assert_close(ours, theirs, equal_nan=True, msg=lambda m: f"{what}: {m}")


def _rounded_zero_times_inf(torch_weight_grad, group_norm: bool, eps):
    """torch's GroupNorm dγ where σ² + ε = 0 (ε = 0, one value per group): (Σ dy·x − μ·Σ dy)·rstd
    is 0 · inf, which torch's fused kernel returns as NaN, or as ±inf when it rounds the zero to
    ±1 ulp (about 1 draw in 6). normcore's is NaN; an infinite entry of torch's counts as NaN there."""
    if not (group_norm and eps == 0 and torch_weight_grad is not None):
        return torch_weight_grad
    return torch_weight_grad.masked_fill(torch_weight_grad.isinf(), float("nan"))


def _expect_same_outcome(theirs, ours, what: str):
    """Both returned (then the results are compared by the caller) or both raised alike."""
    (_, error_t), (_, error_o) = theirs, ours
    if error_t is not None:
        assert error_o is not None, f"{what}: torch raised {error_t!r}, normcore returned"
        assert isinstance(error_o, type(error_t)), f"{what}: torch raised {error_t!r}, normcore {error_o!r}"
        return False
    if error_o is not None:
        raise AssertionError(f"{what}: torch returned, normcore raised {error_o!r}") from error_o
    return True


def _randomize(layer: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(layer.named_parameters()) + list(layer.named_buffers()):
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g, dtype=t.dtype) + 0.5 if "var" in name or "weight" in name else torch.randn(t.shape, generator=g, dtype=t.dtype))


def _forward_backward(layer_or_fn, x, dy_seed: int, params=()):
    """Output and gradients of x and params for a random upstream gradient."""
    y = layer_or_fn(x)
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(dy_seed), dtype=y.dtype)
    tensors = [x, *params]
    leaves = [t for t in tensors if t is not None and t.requires_grad]
    found = iter(torch.autograd.grad(y, leaves, dy, allow_unused=True) if y.requires_grad else [None] * len(leaves))
    return y.detach(), [next(found) if t is not None and t.requires_grad else None for t in tensors]


@st.composite
def _shapes(draw, ranks, channels=None):
    rank = draw(st.sampled_from(sorted(set(ranks) | {r - 1 for r in ranks if r > 0} | {max(ranks) + 1})))
    shape = [draw(st.sampled_from(SIZES)) for _ in range(rank)]
    if channels is not None and rank >= 2 and draw(st.integers(0, 4)):  # mostly the layer's own C
        shape[1] = channels
    return tuple(shape)


@pytest.mark.parametrize("backward", ["closed_form", "autograd"])
@SETTINGS
@given(data=st.data())
def test_modules_accept_and_reject_like_torch(backward, data):
    name = data.draw(st.sampled_from(sorted(MODULE_RANKS)), label="layer")
    if name in ("LayerNorm", "RMSNorm"):
        normalized = tuple(data.draw(st.sampled_from(SIZES)) for _ in range(data.draw(st.integers(1, 2))))
        args, kwargs = (normalized,), {"elementwise_affine": data.draw(st.booleans())}
        if name == "LayerNorm":
            kwargs["bias"] = data.draw(st.booleans())
        lead = tuple(data.draw(st.sampled_from(SIZES)) for _ in range(data.draw(st.integers(0, 2))))
        shape = lead + (normalized if data.draw(st.integers(0, 4)) else tuple(s + 1 for s in normalized))
    elif name == "GroupNorm":
        groups, channels = data.draw(st.integers(0, 3), label="groups"), data.draw(st.integers(0, 4), label="channels")
        args, kwargs = (groups, channels), {"affine": data.draw(st.booleans()), "bias": data.draw(st.booleans())}
        shape = data.draw(_shapes(MODULE_RANKS[name], channels))
    else:
        channels = data.draw(st.integers(0, 3), label="num_features")
        args = (channels,)
        kwargs = {key: data.draw(st.booleans(), label=key) for key in ("affine", "bias", "track_running_stats")}
        kwargs["momentum"] = data.draw(st.sampled_from(MOMENTA + [None]), label="momentum")
        shape = data.draw(_shapes(MODULE_RANKS[name], channels), label="shape")
    eps_choices = EPS + [None] if name == "RMSNorm" else EPS  # RMSNorm's default: finfo(dtype).eps
    kwargs["eps"], kwargs["dtype"] = data.draw(st.sampled_from(eps_choices), label="eps"), torch.float64
    steps = data.draw(st.lists(st.booleans(), min_size=1, max_size=2), label="train steps")
    _compare_modules(name, args, kwargs, shape, steps, backward, data.draw(st.integers(0, 2**16)))


# The quirks the issue lists, always run (the draws above reach them only now and then).
ZERO_SIZE_MODULES = [
    ("BatchNorm2d", (5,), {"momentum": 0.1}, (0, 5, 2, 2)),  # empty batch: counted, statistics kept
    ("BatchNorm1d", (5,), {"momentum": None}, (3, 5, 0)),
    ("InstanceNorm1d", (3,), {"affine": True, "track_running_stats": True}, (2, 3, 0)),
    ("InstanceNorm1d", (3,), {"track_running_stats": True}, (0, 3, 4)),  # running statistics become NaN
    ("LayerNorm", (5,), {}, (0, 5)),  # dγ, dβ = 0
    ("GroupNorm", (2, 4), {}, (2, 4, 0)),  # dγ = NaN
    ("GroupNorm", (1, 2), {}, (0, 2)),
    ("RMSNorm", (5,), {}, (0, 5)),  # dγ = 0
    ("RMSNorm", ((3, 0),), {}, (2, 3, 0)),  # γ has no values
    ("RMSNorm", ((4,),), {"eps": 1e-6}, (3, 0, 4)),
    ("RMSNorm", (0,), {"elementwise_affine": False}, (2, 0)),
]


@pytest.mark.parametrize("backward", ["closed_form", "autograd"])
@pytest.mark.parametrize("name,args,kwargs,shape", ZERO_SIZE_MODULES)
def test_zero_size_quirks_match_torch(name, args, kwargs, shape, backward):
    _compare_modules(name, args, {**kwargs, "dtype": torch.float64}, shape, [True, True, False], backward, seed=0)


def _compare_modules(name, args, kwargs, shape, steps, backward, seed) -> None:
    """Build torch's layer and normcore's, run both through ``steps`` (True: train), compare."""
    built = _run(lambda: getattr(nn, name)(*args, **kwargs)), _run(lambda: getattr(normcore, name)(*args, **kwargs, backward=backward))
    if not _expect_same_outcome(*built, f"{name}{args} {kwargs}"):
        return
    theirs, ours = built[0][0], built[1][0]
    _randomize(theirs, seed)
    ours.load_state_dict(theirs.state_dict())
    for step, training in enumerate(steps):
        theirs.train(training), ours.train(training)
        x = torch.randn(shape, generator=torch.Generator().manual_seed(seed + step), dtype=torch.float64)
        x_t, x_o = x.clone().requires_grad_(), x.clone().requires_grad_()
        run_t = _run(lambda: _forward_backward(theirs, x_t, seed, list(theirs.parameters())))
        run_o = _run(lambda: _forward_backward(ours, x_o, seed, list(ours.parameters())))
        if not _expect_same_outcome(run_t, run_o, f"{name}{args} {kwargs} on {shape}, training={training}"):
            return
        (y_t, grads_t), (y_o, grads_o) = run_t[0], run_o[0]
        _same(y_o, y_t, "output")
        if len(grads_t) > 1:  # the layer has a γ
            grads_t[1] = _rounded_zero_times_inf(grads_t[1], name == "GroupNorm", kwargs.get("eps"))
        for what, g_o, g_t in zip(["input", "weight", "bias"], grads_o, grads_t):
            _same(g_o, g_t, f"{what} grad")
        for (key, b_o), (_, b_t) in zip(ours.named_buffers(), theirs.named_buffers()):
            _same(b_o, b_t, f"buffer {key}")


def _tensor(shape, seed, requires_grad=False):
    t = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return t.requires_grad_(requires_grad)


@st.composite
def _functional_call(draw):
    """(name, input shape, a function of (x, weight, bias) -> y for either library, params)."""
    kind = draw(st.sampled_from(["batch_norm", "instance_norm", "layer_norm", "group_norm", "rms_norm"]), label="functional")
    shape = tuple(draw(st.sampled_from(SIZES)) for _ in range(draw(st.integers(0, 5), label="rank")))
    channels = shape[1] if len(shape) >= 2 else 1
    eps = draw(st.sampled_from(EPS + [None] if kind == "rms_norm" else EPS), label="eps")
    if kind in ("layer_norm", "rms_norm"):
        k = draw(st.integers(0, len(shape)), label="normalized dims")
        normalized = shape[len(shape) - k :] if draw(st.integers(0, 4)) else tuple(s + 1 for s in shape[len(shape) - k :])
        param_shape, extra = normalized, {"normalized_shape": normalized}
    elif kind == "group_norm":
        param_shape, extra = (channels,), {"num_groups": draw(st.sampled_from([1, 1, 2, 3, 0, -1]), label="num_groups")}
    else:
        param_shape = (channels,)
        flag = "training" if kind == "batch_norm" else "use_input_stats"
        extra = {flag: draw(st.booleans(), label=flag), "momentum": draw(st.sampled_from(MOMENTA), label="momentum")}
    wrong = tuple(s + 1 for s in param_shape)
    weight_shape, bias_shape = (draw(st.sampled_from([None, param_shape, param_shape, wrong]), label=p) for p in ("weight", "bias"))
    bias_shape = None if kind == "rms_norm" else bias_shape  # RMSNorm has no β
    with_running = kind in ("batch_norm", "instance_norm") and draw(st.booleans(), label="running stats")
    return kind, shape, eps, extra, weight_shape, bias_shape, with_running


@pytest.mark.parametrize("backward", ["closed_form", "autograd"])
@SETTINGS
@given(call=_functional_call(), seed=st.integers(0, 2**16))
@example(call=("batch_norm", (0, 5, 2, 2), 1e-5, {"training": True, "momentum": 0.1}, (5,), (5,), True), seed=0)
@example(call=("layer_norm", (0, 5), 1e-5, {"normalized_shape": (5,)}, (5,), (5,), False), seed=0)
@example(call=("group_norm", (0, 2), 1e-5, {"num_groups": 1}, (2,), (2,), False), seed=0)
@example(call=("rms_norm", (0, 5), None, {"normalized_shape": (5,)}, (5,), None, False), seed=0)
@example(call=("rms_norm", (2, 3, 0), None, {"normalized_shape": (3, 0)}, (3, 0), None, False), seed=0)
@example(call=("group_norm", (2, 4, 0), 1e-5, {"num_groups": 2}, (4,), (4,), False), seed=0)
@example(call=("instance_norm", (0, 3, 4), 1e-5, {"use_input_stats": True, "momentum": 0.1}, None, None, True), seed=0)
def test_functionals_accept_and_reject_like_torch(backward, call, seed):
    kind, shape, eps, extra, weight_shape, bias_shape, with_running = call
    x = _tensor(shape, seed)
    weight = None if weight_shape is None else _tensor(weight_shape, seed + 1).abs() + 0.5
    bias = None if bias_shape is None else _tensor(bias_shape, seed + 2)
    channels = shape[1] if len(shape) >= 2 else 1
    running = (_tensor(channels, seed + 3), _tensor(channels, seed + 4).abs() + 0.5) if with_running else (None, None)

    def call_with(module, extras, weight=weight):
        own = tuple(None if t is None else t.clone() for t in running)  # each library updates its own copy
        x_, w_, b_ = (None if t is None else t.clone().requires_grad_() for t in (x, weight, bias))

        def fn(x_in):
            if kind in ("batch_norm", "instance_norm"):
                return getattr(module, kind)(x_in, *own, w_, b_, eps=eps, **extra, **extras)
            if kind == "rms_norm":
                return module.rms_norm(x_in, weight=w_, eps=eps, **extra, **extras)
            return getattr(module, kind)(x_in, weight=w_, bias=b_, eps=eps, **extra, **extras)

        result, error = _run(lambda: _forward_backward(fn, x_, seed, [w_, b_]))
        return (None if error else (result, own)), error

    theirs, ours = call_with(TF, {}), call_with(NF, {"backward": backward})
    if kind == "group_norm" and weight is None and "does not have a device" in str(theirs[1]):
        # Deliberate difference: torch's GroupNorm *backward* raises RuntimeError("tensor does
        # not have a device") when given a bias but no weight; normcore returns the gradients,
        # those of torch's with γ = 1 (the same function).
        with_ones = call_with(TF, {}, weight=torch.ones(channels, dtype=torch.float64))
        theirs = ((with_ones[0][0][0], with_ones[0][0][1][:1] + [None] + with_ones[0][0][1][2:]), with_ones[0][1]), None
    if not _expect_same_outcome(theirs, ours, f"{kind} on {shape}, eps={eps}, {extra}, weight {weight_shape}, bias {bias_shape}"):
        return
    ((y_t, grads_t), running_t), ((y_o, grads_o), running_o) = theirs[0], ours[0]
    _same(y_o, y_t, "output")
    grads_t[1] = _rounded_zero_times_inf(grads_t[1], kind == "group_norm", eps)
    for what, g_o, g_t in zip(["input", "weight", "bias"], grads_o, grads_t):
        _same(g_o, g_t, f"{what} grad")
    for what, r_o, r_t in zip(["running_mean", "running_var"], running_o, running_t):
        _same(r_o, r_t, what)
