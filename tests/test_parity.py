"""normcore against torch.nn and torch.nn.functional: outputs, running statistics and gradients.

Each property test draws a layer configuration and a short sequence of steps (train or
eval, each with a fresh input and upstream gradient), runs the torch layer and its normcore
twin side by side from the same state, and compares after every step:

* the outputs,
* running_mean, running_var and num_batches_tracked,
* the gradients of the input, the weight and the bias,

for both backward modes ("closed_form" and "autograd") and on every available device.
Where torch raises, normcore must raise an exception of a type that catches alike (every
normcore error is a ValueError and a RuntimeError; see normcore.checks). Sizes include 0
and momenta lie outside [0, 1]; test_probe_torch.py goes further (any rank, eps, None or
wrongly sized parameters).

Tolerances are torch.testing.assert_close's defaults for the dtype: the shapes are small
(at most a few dozen values per statistic), so no sum is long enough to need more. The
one exception is cancellation, not summation: where a statistic holds one or two values,
float32 gradients are mostly rounding noise in both libraries, and torch's own float64
result decides (see _assert_matches).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as TF
from conftest import DEVICES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import normcore
import normcore.functional as NF

BACKWARDS = ["closed_form", "autograd"]
MOMENTA = [0.0, 0.1, 1.0, None, 5.0, -1.2]  # torch takes any momentum (outside [0, 1] it extrapolates)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

BATCH_NORMS = {1: "BatchNorm1d", 2: "BatchNorm2d", 3: "BatchNorm3d"}
INSTANCE_NORMS = {1: "InstanceNorm1d", 2: "InstanceNorm2d", 3: "InstanceNorm3d"}


def _dtypes(device: str) -> list[torch.dtype]:
    return [torch.float32] if device == "mps" else [torch.float32, torch.float64]  # MPS has no float64


def _sizes(draw, count: int, high: int = 3) -> tuple[int, ...]:
    """``count`` dim sizes in 0..high; 0, 1 and 2 come up often (empty, H·W = 1, batch 2 are the edge cases)."""
    choices = [0, 1, 1, 2, 2] + list(range(3, high + 1))
    return tuple(draw(st.sampled_from(choices)) for _ in range(count))


def _randomize(layer: nn.Module, generator: torch.Generator) -> None:
    """Non-trivial parameters and buffers, so every term of every gradient is exercised."""
    with torch.no_grad():
        for name, p in layer.named_parameters():
            values = torch.rand(p.shape, generator=generator, dtype=torch.float64) + 0.5 if name == "weight" else torch.randn(p.shape, generator=generator, dtype=torch.float64)
            p.copy_(values)
        for name, b in layer.named_buffers():
            if name == "running_mean":
                b.copy_(torch.randn(b.shape, generator=generator, dtype=torch.float64))
            elif name == "running_var":
                b.copy_(torch.rand(b.shape, generator=generator, dtype=torch.float64) + 0.5)
            elif name == "num_batches_tracked":
                b.fill_(int(torch.randint(0, 4, (), generator=generator)))


def _make_pair(cls_name: str, args: tuple, kwargs: dict, backward: str, device: str, dtype, seed: int):
    theirs = getattr(nn, cls_name)(*args, **kwargs).to(device=device, dtype=dtype)
    ours = getattr(normcore, cls_name)(*args, **kwargs, backward=backward).to(device=device, dtype=dtype)
    _randomize(theirs, torch.Generator().manual_seed(seed))
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


def _input(shape, device, dtype, generator) -> torch.Tensor:
    scale = float(torch.rand((), generator=generator)) * 2 + 0.5
    offset = float(torch.randn((), generator=generator)) * 3
    return (torch.randn(shape, generator=generator, dtype=torch.float64) * scale + offset).to(device=device, dtype=dtype)


def _assert_matches(ours, theirs, reference, what: str) -> None:
    """assert_close(ours, theirs) at the default tolerances, or ours is closer to the truth.

    ``reference`` is torch's float64 result for a float32 comparison (else None). Where a
    statistic holds one or two values the gradient is almost entirely cancelled: with two,
    x̂ = ±1 up to ε, and dx is what is left of terms ~istd·γ·dy after the paths through μ
    and σ² remove them, a few ε/σ² smaller. float32 rounding of those terms then exceeds
    the default tolerances in both libraries (torch is typically the one further off).
    Such a case passes if normcore's largest error against the float64 result is at most
    twice torch's own plus the default absolute tolerance (normcore's is usually far
    smaller; both are rounding noise of the size of those terms).
    """
    try:
        torch.testing.assert_close(ours, theirs, equal_nan=True, msg=lambda m: f"{what}: {m}")
    except AssertionError:
        if reference is None:
            raise
        err_ours = (ours.double() - reference).abs().max().item()
        err_theirs = (theirs.double() - reference).abs().max().item()
        atol = 1e-5  # assert_close's default for float32
        if not err_ours <= 2 * err_theirs + atol:
            raise


def _compare_modules(theirs: nn.Module, ours: nn.Module, shape, modes: list[bool], seed: int, device, dtype) -> None:
    """Run both layers through ``modes`` (True = train) with the same data; compare everything."""
    # torch in float64 from the same state: the arbiter when the float32 results differ.
    exact = copy.deepcopy(theirs).double() if dtype == torch.float32 and device != "mps" else None
    generator = torch.Generator().manual_seed(seed)
    for training in modes:
        for layer in (theirs, ours, exact):
            if layer is not None:
                layer.train(training)
        x = _input(shape, device, dtype, generator)
        dy = torch.randn(shape, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)
        x_theirs, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
        try:
            y_theirs = theirs(x_theirs)
        except Exception as error:  # noqa: BLE001 - normcore must raise what catches alike
            with pytest.raises(type(error)):
                ours(x_ours)
            return  # torch has already counted the rejected batch in num_batches_tracked; stop here
        y_ours = ours(x_ours)
        y_theirs.backward(dy)
        y_ours.backward(dy)
        x_exact = y_exact = None
        if exact is not None:
            x_exact = x.double().requires_grad_()
            y_exact = exact(x_exact)
            y_exact.backward(dy.double())
        _assert_matches(y_ours, y_theirs, None if exact is None else y_exact.detach(), "output")
        _assert_matches(x_ours.grad, x_theirs.grad, None if exact is None else x_exact.grad, "input grad")
        exact_params = dict(exact.named_parameters()) if exact is not None else {}
        for (name, p_ours), (_, p_theirs) in zip(ours.named_parameters(), theirs.named_parameters()):
            reference = exact_params[name].grad if exact is not None else None
            _assert_matches(p_ours.grad, p_theirs.grad, reference, f"grad of {name}")
        for (name, b_ours), (_, b_theirs) in zip(ours.named_buffers(), theirs.named_buffers()):
            torch.testing.assert_close(b_ours, b_theirs, equal_nan=True, msg=lambda m, name=name: f"buffer {name}: {m}")
    assert ours.state_dict().keys() == theirs.state_dict().keys()


def _draw_and_compare(data, device, cls_name: str, args: tuple, kwargs: dict, shape, max_steps: int) -> None:
    """Draw what every module parity test varies alike (dtype, backward, a sequence of
    train/eval steps, a seed), then run torch's module and ours side by side."""
    dtype = data.draw(st.sampled_from(_dtypes(device)), label="dtype")
    backward = data.draw(st.sampled_from(BACKWARDS), label="backward")
    modes = data.draw(st.lists(st.booleans(), min_size=1, max_size=max_steps), label="train steps")
    seed = data.draw(st.integers(0, 2**16))
    theirs, ours = _make_pair(cls_name, args, kwargs, backward, device, dtype, seed)
    _compare_modules(theirs, ours, shape, modes, seed, device, dtype)


# --------------------------------------------------------------------------- modules


@pytest.mark.parametrize("device", DEVICES)
@SETTINGS
@given(data=st.data())
def test_batch_norm_modules_match_torch(device, data):
    spatial_dims = data.draw(st.sampled_from([0, 1, 2, 3]), label="spatial dims")  # 0 and 1: BatchNorm1d
    cls_name = BATCH_NORMS[max(spatial_dims, 1)]
    n, c = _sizes(data.draw, 2, high=4)
    shape = (n, c) + _sizes(data.draw, spatial_dims)
    kwargs = {
        "eps": data.draw(st.sampled_from([1e-5, 1e-3])),
        "momentum": data.draw(st.sampled_from(MOMENTA), label="momentum"),
        "affine": data.draw(st.booleans(), label="affine"),
        "bias": data.draw(st.booleans(), label="bias"),
        "track_running_stats": data.draw(st.booleans(), label="track_running_stats"),
    }
    _draw_and_compare(data, device, cls_name, (c,), kwargs, shape, max_steps=3)


@pytest.mark.parametrize("device", DEVICES)
@SETTINGS
@given(data=st.data())
def test_instance_norm_modules_match_torch(device, data):
    spatial_dims = data.draw(st.sampled_from([1, 2, 3]), label="spatial dims")
    cls_name = INSTANCE_NORMS[spatial_dims]
    n, c = _sizes(data.draw, 2, high=4)
    spatial = _sizes(data.draw, spatial_dims)
    unbatched = data.draw(st.booleans(), label="unbatched")
    shape = ((c,) if unbatched else (n, c)) + spatial
    kwargs = {
        "momentum": data.draw(st.sampled_from(MOMENTA), label="momentum"),
        "affine": data.draw(st.booleans(), label="affine"),
        "bias": data.draw(st.booleans(), label="bias"),
        "track_running_stats": data.draw(st.booleans(), label="track_running_stats"),
    }
    _draw_and_compare(data, device, cls_name, (c,), kwargs, shape, max_steps=3)


@pytest.mark.parametrize("device", DEVICES)
@SETTINGS
@given(data=st.data())
def test_layer_norm_module_matches_torch(device, data):
    lead = _sizes(data.draw, data.draw(st.integers(1, 2)), high=3)
    normalized = _sizes(data.draw, data.draw(st.integers(1, 3)), high=4)
    affine = data.draw(st.booleans(), label="elementwise_affine")
    kwargs = {"eps": data.draw(st.sampled_from([1e-5, 1e-3])), "elementwise_affine": affine, "bias": data.draw(st.booleans(), label="bias")}
    _draw_and_compare(data, device, "LayerNorm", (normalized,), kwargs, lead + normalized, max_steps=2)


@pytest.mark.parametrize("device", DEVICES)
@SETTINGS
@given(data=st.data())
def test_rms_norm_module_matches_torch(device, data):
    """Every input rank 1..5: 0-2 leading dims, 1-3 normalized ones; eps None or a number."""
    lead = _sizes(data.draw, data.draw(st.integers(0, 2)), high=3)
    normalized = _sizes(data.draw, data.draw(st.integers(1, 3)), high=4)
    kwargs = {"eps": data.draw(st.sampled_from([None, 1e-6, 1e-3]), label="eps"),
              "elementwise_affine": data.draw(st.booleans(), label="elementwise_affine")}
    _draw_and_compare(data, device, "RMSNorm", (normalized,), kwargs, lead + normalized, max_steps=2)


@pytest.mark.parametrize("device", DEVICES)
@SETTINGS
@given(data=st.data())
def test_group_norm_module_matches_torch(device, data):
    num_groups = data.draw(st.integers(1, 3), label="num_groups")
    channels = num_groups * data.draw(st.integers(1, 3), label="channels per group")
    n = data.draw(st.sampled_from([1, 2, 3]))
    shape = (n, channels) + _sizes(data.draw, data.draw(st.integers(0, 3)))
    kwargs = {"eps": data.draw(st.sampled_from([1e-5, 1e-3])), "affine": data.draw(st.booleans(), label="affine"), "bias": data.draw(st.booleans(), label="bias")}
    _draw_and_compare(data, device, "GroupNorm", (num_groups, channels), kwargs, shape, max_steps=2)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backward", BACKWARDS)
@pytest.mark.parametrize("cls_name,shape", [
    ("BatchNorm1d", (2, 3)),  # batch 2, no spatial dims: two values per channel
    ("BatchNorm2d", (2, 3, 1, 1)),  # H·W = 1 and batch 2
    ("BatchNorm3d", (2, 3, 1, 1, 1)),
    ("BatchNorm2d", (1, 3, 2, 1)),  # batch 1, two positions
])
def test_batch_norm_edge_shapes_match_torch(device, backward, cls_name, shape):
    for momentum in MOMENTA:
        theirs, ours = _make_pair(cls_name, (shape[1],), {"momentum": momentum}, backward, device, torch.float32, seed=3)
        _compare_modules(theirs, ours, shape, [True, True, False, True], 5, device, torch.float32)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cls_name,shape", [("BatchNorm1d", (1, 3)), ("BatchNorm2d", (1, 3, 1, 1)), ("BatchNorm3d", (1, 2, 1, 1, 1))])
def test_one_value_per_channel_in_training_raises_like_torch(device, cls_name, shape):
    theirs, ours = _make_pair(cls_name, (shape[1],), {}, "closed_form", device, torch.float32, seed=0)
    x = torch.randn(shape, device=device)
    with pytest.raises(ValueError):
        theirs(x)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        ours(x)
    assert int(ours.num_batches_tracked) == 0  # a rejected batch is not counted
    # In eval the running statistics are used, and one sample is fine for both.
    theirs.eval()
    ours.eval()
    torch.testing.assert_close(ours(x), theirs(x))


# --------------------------------------------------------------------------- functional


def _grads(fn, tensors: list[torch.Tensor | None], dy: torch.Tensor, dtype=None):
    """fn's output and the gradients of its tensor arguments, optionally all cast to ``dtype``."""
    leaves = [None if t is None else t.detach().clone().to(dtype or t.dtype).requires_grad_() for t in tensors]
    y = fn(*leaves)
    y.backward(dy.to(dtype or dy.dtype))
    return y.detach(), [None if t is None else t.grad for t in leaves]


def _compare_functional(ours_fn, theirs_fn, tensors, dy) -> None:
    """Outputs and input/weight/bias gradients, with torch's float64 run as the arbiter (float32)."""
    (y_ours, g_ours), (y_theirs, g_theirs) = _grads(ours_fn, tensors, dy), _grads(theirs_fn, tensors, dy)
    exact = None
    if dy.dtype == torch.float32 and dy.device.type != "mps":
        exact = _grads(theirs_fn, tensors, dy, torch.float64)
    _assert_matches(y_ours, y_theirs, None if exact is None else exact[0], "output")
    for i, (a, b) in enumerate(zip(g_ours, g_theirs)):
        if b is None:
            assert a is None
        else:
            _assert_matches(a, b, None if exact is None else exact[1][i], ("input", "weight", "bias")[i] + " grad")


@pytest.mark.parametrize("device", DEVICES)
@SETTINGS
@given(data=st.data())
def test_functional_batch_norm_matches_torch(device, data):
    shape = _sizes(data.draw, 2, high=4) + _sizes(data.draw, data.draw(st.integers(0, 3)))
    c = shape[1]
    dtype = data.draw(st.sampled_from(_dtypes(device)), label="dtype")
    backward = data.draw(st.sampled_from(BACKWARDS), label="backward")
    training = data.draw(st.booleans(), label="training")
    with_running = data.draw(st.booleans(), label="running stats given") or not training
    affine = data.draw(st.booleans(), label="affine")
    momentum = data.draw(st.sampled_from([0.0, 0.1, 1.0, 5.0, -1.2]))
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**16)))
    x = _input(shape, device, dtype, g)
    dy = torch.randn(shape, generator=g, dtype=torch.float64).to(device, dtype)
    w = (torch.rand(c, generator=g, dtype=torch.float64) + 0.5).to(device, dtype) if affine else None
    b = torch.randn(c, generator=g, dtype=torch.float64).to(device, dtype) if affine else None
    rm = torch.randn(c, generator=g, dtype=torch.float64).to(device, dtype) if with_running else None
    rv = (torch.rand(c, generator=g, dtype=torch.float64) + 0.5).to(device, dtype) if with_running else None

    def call(fn, **extra):
        """fn with its own copies of the running statistics (updated in place), kept in `used`."""
        r_mean, r_var = (None if t is None else t.clone() for t in (rm, rv))
        used.append((r_mean, r_var))
        return lambda x, w, b: fn(x, None if r_mean is None else r_mean.to(x.dtype), None if r_var is None else r_var.to(x.dtype),
                                  w, b, training, momentum, 1e-5, **extra)

    used = []
    try:
        TF.batch_norm(x, None if rm is None else rm.clone(), None if rv is None else rv.clone(), w, b, training, momentum, 1e-5)
    except Exception as error:  # noqa: BLE001
        with pytest.raises(type(error)):
            NF.batch_norm(x, rm, rv, w, b, training, momentum, 1e-5, backward=backward)
        return
    _compare_functional(call(NF.batch_norm, backward=backward), call(TF.batch_norm), [x, w, b], dy)
    # Running statistics, updated in place by each library's own call.
    ours, theirs = used[0], used[1]
    for mine, torchs in zip(ours, theirs):
        if torchs is not None:
            torch.testing.assert_close(mine, torchs, equal_nan=True)


@pytest.mark.parametrize("device", DEVICES)
@SETTINGS
@given(data=st.data())
def test_functional_layer_group_instance_rms_norm_match_torch(device, data):
    kind = data.draw(st.sampled_from(["layer", "group", "instance", "rms"]), label="kind")
    dtype = data.draw(st.sampled_from(_dtypes(device)), label="dtype")
    backward = data.draw(st.sampled_from(BACKWARDS), label="backward")
    affine = data.draw(st.booleans(), label="affine")
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**16)))
    if kind == "group":
        groups = data.draw(st.integers(1, 3))
        shape = (data.draw(st.integers(1, 3)), groups * data.draw(st.integers(1, 3))) + _sizes(data.draw, data.draw(st.integers(0, 2)))
        param_shape = (shape[1],)
        fns = (lambda x, w, b: TF.group_norm(x, groups, w, b, 1e-5),
               lambda x, w, b: NF.group_norm(x, groups, w, b, 1e-5, backward=backward))
    elif kind == "layer":
        shape = _sizes(data.draw, data.draw(st.integers(1, 2))) + _sizes(data.draw, data.draw(st.integers(1, 3)), high=4)
        k = data.draw(st.integers(1, len(shape)))
        param_shape = shape[len(shape) - k :]
        fns = (lambda x, w, b: TF.layer_norm(x, param_shape, w, b, 1e-5),
               lambda x, w, b: NF.layer_norm(x, param_shape, w, b, 1e-5, backward=backward))
    elif kind == "rms":  # ranks 1..5; b is not RMSNorm's (it has no β): added after, as a check on dy
        shape = _sizes(data.draw, data.draw(st.integers(0, 2))) + _sizes(data.draw, data.draw(st.integers(1, 3)), high=4)
        k = data.draw(st.integers(1, len(shape)))
        param_shape, eps = shape[len(shape) - k :], data.draw(st.sampled_from([None, 1e-5, 0.1]), label="eps")
        fns = (lambda x, w, b: TF.rms_norm(x, param_shape, w, eps) + (0 if b is None else b),
               lambda x, w, b: NF.rms_norm(x, param_shape, w, eps, backward=backward) + (0 if b is None else b))
    else:
        shape = _sizes(data.draw, 2) + _sizes(data.draw, data.draw(st.integers(1, 3)))
        param_shape = (shape[1],)
        fns = (lambda x, w, b: TF.instance_norm(x, weight=w, bias=b),
               lambda x, w, b: NF.instance_norm(x, weight=w, bias=b, backward=backward))
    x = _input(shape, device, dtype, g)
    dy = torch.randn(shape, generator=g, dtype=torch.float64).to(device, dtype)
    w = (torch.rand(param_shape, generator=g, dtype=torch.float64) + 0.5).to(device, dtype) if affine else None
    b = torch.randn(param_shape, generator=g, dtype=torch.float64).to(device, dtype) if affine else None
    try:
        fns[0](x, w, b)
    except Exception as error:  # noqa: BLE001
        with pytest.raises(type(error)):
            fns[1](x, w, b)
        return
    _compare_functional(fns[1], fns[0], [x, w, b], dy)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backward", BACKWARDS)
def test_functional_instance_norm_running_stats_match_torch(device, backward):
    g = torch.Generator().manual_seed(0)
    x = _input((3, 4, 5, 2), device, torch.float64, g)
    for use_input_stats in (True, False):
        rm, rv = torch.randn(4, dtype=torch.float64, device=device), torch.rand(4, dtype=torch.float64, device=device) + 0.5
        rm2, rv2 = rm.clone(), rv.clone()
        theirs = TF.instance_norm(x, rm, rv, use_input_stats=use_input_stats, momentum=0.3)
        ours = NF.instance_norm(x, rm2, rv2, use_input_stats=use_input_stats, momentum=0.3, backward=backward)
        torch.testing.assert_close(ours, theirs)
        torch.testing.assert_close(rm2, rm)
        torch.testing.assert_close(rv2, rv)


@pytest.mark.parametrize("kind", ["batch", "layer", "group", "instance", "rms"])
def test_return_stats_are_the_statistics_normalized_with(kind):
    """NormStats against a float64 mean/variance computed here, over the documented axes."""
    x = torch.randn(4, 6, 3, 2, dtype=torch.float64) * 2 + 1
    if kind == "batch":
        y, stats = NF.batch_norm(x, None, None, training=True, return_stats=True)
        dims, shape = (0, 2, 3), (6,)
    elif kind == "layer":
        y, stats = NF.layer_norm(x, (6, 3, 2), return_stats=True)
        dims, shape = (1, 2, 3), (4,)
    elif kind == "group":
        y, stats = NF.group_norm(x, 3, return_stats=True)
        x = x.reshape(4, 3, 2, 3, 2)
        dims, shape = (2, 3, 4), (4, 3)
    elif kind == "instance":
        y, stats = NF.instance_norm(x, return_stats=True)
        dims, shape = (2, 3), (4, 6)
    else:  # RMSNorm: mean = 0, var = the mean square E[x²] it divided by
        y, stats = NF.rms_norm(x, (3, 2), return_stats=True)
        mean_square = (x**2).sum((2, 3)) / 6
        assert stats.values_per_stat == 6
        torch.testing.assert_close(stats.mean, torch.zeros(4, 6, dtype=torch.float64), rtol=0, atol=0)
        torch.testing.assert_close(stats.var, mean_square)
        torch.testing.assert_close(stats.mean_square, mean_square)
        torch.testing.assert_close(y, x / (mean_square[..., None, None] + torch.finfo(torch.float64).eps).sqrt())
        return
    mean = x.sum(dims) / math.prod(x.shape[d] for d in dims)
    var = ((x - mean.reshape(mean.shape + (1,) * len(dims)).movedim(tuple(range(mean.dim(), x.dim())), dims)) ** 2).sum(dims) / math.prod(x.shape[d] for d in dims)
    assert stats.source == "batch"
    assert stats.values_per_stat == math.prod(x.shape[d] for d in dims)
    torch.testing.assert_close(stats.mean, mean.reshape(shape))
    torch.testing.assert_close(stats.var, var.reshape(shape))
    torch.testing.assert_close(stats.mean_square, (x**2).sum(dims).reshape(shape) / math.prod(x.shape[d] for d in dims))


def test_eval_stats_report_the_running_estimates():
    bn = normcore.BatchNorm2d(3).eval()
    bn.running_mean.fill_(2.0)
    bn(torch.randn(2, 3, 4, 4))
    assert bn.last_stats.source == "running"
    torch.testing.assert_close(bn.last_stats.mean, torch.full((3,), 2.0))
