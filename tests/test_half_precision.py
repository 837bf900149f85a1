"""float16 and bfloat16 as torch takes them, on torch's own half-precision test samples (issue 26).

op_db (the OpInfo database torch's own test suite iterates, shipped in the torch wheel) holds
float16/bfloat16 sample and reference inputs for batch_norm, layer_norm, group_norm,
instance_norm and rms_norm. Each is run through torch's functional and normcore's on the very
same tensors, and through torch in float64 on the same values upcast (the arbiter), with the
same upstream gradient (drawn in the half dtype, so both see the rounded one). The rule, for
the output, every gradient and every running statistic updated in place:

    max|normcore − f64| ≤ max|torch − f64| + atol + rtol · max|f64|

(atol, rtol: ``torch.testing.assert_close``'s defaults for the dtype); normcore raises where
torch raises, and returns torch's dtype and shape.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from normcore import functional as NF
from tests.half_rule import HALF, TOLERANCE, Figures
from tests.half_rule import assert_within_rule as _assert_within_rule
from tests.half_rule import max_error as _error

op_db = pytest.importorskip("torch.testing._internal.common_methods_invocations").op_db

OPS = {
    "nn.functional.batch_norm": NF.batch_norm,
    "nn.functional.layer_norm": NF.layer_norm,
    "nn.functional.group_norm": NF.group_norm,
    "nn.functional.instance_norm": NF.instance_norm,
    "nn.functional.rms_norm": NF.rms_norm,
}


FIGURES = Figures()


@pytest.fixture(scope="module", autouse=True)
def closing_note_figures():
    """``pytest tests/test_half_precision.py -s`` prints the figures of README's half-precision table."""
    yield
    if FIGURES.rows:
        print("\n" + FIGURES.markdown())


def _samples():
    for op in op_db:
        if op.name in OPS and op.variant_test_name == "":
            for dtype in HALF:
                for i, sample in enumerate(op.reference_inputs("cpu", dtype, requires_grad=True)):
                    yield pytest.param(op, dtype, sample, id=f"{op.name.split('.')[-1]}-{str(dtype)[6:]}-{i}")


SAMPLES = list(_samples())


def _copy(value, dtype=None):
    """A fresh copy of a sample's tensor (as a leaf, requiring grad as the original), cast to ``dtype``."""
    if not isinstance(value, torch.Tensor):
        return value
    t = value.detach().clone()
    t = t if dtype is None or not t.is_floating_point() else t.to(dtype)
    return t.requires_grad_(value.requires_grad)


def _run(fn, sample, dy, dtype=None):
    """(output, {name: gradient or updated buffer}) of fn on copies of the sample, or the exception."""
    x = _copy(sample.input, dtype)
    args = [_copy(a, dtype) for a in sample.args]
    kwargs = {k: _copy(v, dtype) for k, v in sample.kwargs.items()}
    try:
        y = fn(x, *args, **kwargs)
        y.backward(dy.to(y.dtype))
    except Exception as error:  # noqa: BLE001 -- compared with torch's below
        return error
    tensors = [("input", x)] + [(f"arg{i}", a) for i, a in enumerate(args)] + list(kwargs.items())
    out = {"output": y.detach()}
    for name, t in tensors:
        if isinstance(t, torch.Tensor) and t.requires_grad:
            out[f"{name} grad"] = t.grad
        elif isinstance(t, torch.Tensor) and t.is_floating_point() and name != "input":
            out[f"{name} after"] = t  # a running statistic, updated in place
    return out


@pytest.mark.parametrize("op,dtype,sample", SAMPLES)
def test_half_precision_sample_as_accurate_as_torch(op, dtype, sample):
    generator = torch.Generator().manual_seed(0)
    probe = op.op(_copy(sample.input), *[_copy(a) for a in sample.args], **{k: _copy(v) for k, v in sample.kwargs.items()})
    dy = torch.randn(probe.shape, generator=generator).to(dtype)
    theirs, ours = _run(op.op, sample, dy), _run(OPS[op.name], sample, dy)
    if isinstance(theirs, Exception):
        assert isinstance(ours, Exception), f"torch raised {theirs!r}; normcore did not"
        FIGURES.record(op.name.split(".")[-1], dtype, "", None, None, None)
        return
    assert not isinstance(ours, Exception), f"normcore raised {ours!r} where torch did not"
    exact = _run(op.op, sample, dy, torch.float64)
    FIGURES.record(op.name.split(".")[-1], dtype, f"x {tuple(sample.input.shape)}", ours, theirs, exact)
    _assert_within_rule(ours, theirs, exact, dtype)


def test_every_norm_has_half_precision_samples():
    counts = {}
    for param in SAMPLES:
        op, dtype, _ = param.values
        counts[(op.name, dtype)] = counts.get((op.name, dtype), 0) + 1
    assert {name for name, _ in counts} == set(OPS) and all(n >= 6 for n in counts.values()), counts


# -- hypothesis: shapes, momenta (negative, above 1, None), zero-size inputs, affine off ----------


def _module_results(layer, batches, dys):
    out = {}
    for step, (x, dy) in enumerate(zip(batches, dys)):
        x = x.clone().requires_grad_()
        y = layer(x)
        y.backward(dy.to(y.dtype))
        out[f"output {step}"], out[f"input grad {step}"] = y.detach(), x.grad
    for name, p in layer.named_parameters():
        out[f"{name} grad"] = p.grad
    for name in ("running_mean", "running_var"):
        if getattr(layer, name, None) is not None:
            out[name] = getattr(layer, name)
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dtype=st.sampled_from(HALF),
    kind=st.sampled_from(["BatchNorm1d", "BatchNorm2d", "InstanceNorm1d", "LayerNorm", "GroupNorm"]),
    n=st.sampled_from([0, 2, 3, 8]),
    c=st.sampled_from([1, 2, 4]),
    length=st.sampled_from([2, 5]),
    momentum=st.sampled_from([0.1, 1 / 3, -1.2, 1.5, None]),
    affine=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_half_precision_modules_within_the_rule(dtype, kind, n, c, length, momentum, affine, seed):
    from torch import nn

    import normcore

    shape = (n, c, length, length) if kind == "BatchNorm2d" else (n, c, length)
    g = torch.Generator().manual_seed(seed)
    batches = [(torch.randn(shape, generator=g) * 3 + 1).to(dtype) for _ in range(2)]
    dys = [torch.randn(shape, generator=g).to(dtype) for _ in range(2)]
    if kind == "LayerNorm":
        args, kwargs = ([length],), {"elementwise_affine": affine}
    elif kind == "GroupNorm":
        args, kwargs = (1 if c == 1 else 2, c), {"affine": affine}
    else:
        args = (c,)
        kwargs = {"affine": affine, "momentum": momentum if kind.startswith("Batch") else (momentum or 0.1)}
        if kind.startswith("Instance"):
            kwargs["track_running_stats"] = True
    layers = [getattr(nn, kind)(*args, **kwargs), getattr(normcore, kind)(*args, **kwargs), getattr(nn, kind)(*args, **kwargs)]
    for layer, to in zip(layers, (dtype, dtype, torch.float64)):
        layer.to(to).train()
    try:
        theirs = _module_results(layers[0], batches, dys)
    except Exception:  # noqa: BLE001 -- torch refuses (e.g. one value per channel): normcore must too
        with pytest.raises(Exception):
            _module_results(layers[1], batches, dys)
        return
    ours = _module_results(layers[1], batches, dys)
    exact = _module_results(layers[2], [b.double() for b in batches], [d.double() for d in dys])
    _assert_within_rule(ours, theirs, exact, dtype, f"{kind} ")


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("momentum", [1 / 3, -1.2])
def test_half_running_statistics_round_once(dtype, momentum):
    """Random running statistics, one training batch each: the update computed in float32 and
    rounded once stays within torch's error plus one tolerance (rounding at each step of it
    does not: torch's own kernel computes in float32)."""
    g = torch.Generator().manual_seed(0)
    atol, rtol = TOLERANCE[dtype]
    for _ in range(100):
        x = (torch.randn(8, 4, generator=g) * 2 + 1).to(dtype)
        start = [(torch.randn(4, generator=g)).to(dtype), (torch.rand(4, generator=g) + 0.5).to(dtype)]
        results = {}
        for name, fn, to in (("torch", torch.nn.functional.batch_norm, None), ("ours", NF.batch_norm, None),
                             ("f64", torch.nn.functional.batch_norm, torch.float64)):
            rm, rv = (t.clone() if to is None else t.to(to) for t in start)
            fn(x if to is None else x.to(to), rm, rv, training=True, momentum=momentum)
            results[name] = (rm, rv)
        for i in range(2):
            f64 = results["f64"][i]
            bound = _error(results["torch"][i], f64) + atol + rtol * f64.abs().max().item()
            assert _error(results["ours"][i], f64) <= bound, (i, results["ours"][i], results["torch"][i], f64)


def _module_samples():
    module_db = pytest.importorskip("torch.testing._internal.common_modules").module_db
    for info in module_db:
        if info.module_cls.__name__ == "GroupNorm":
            for dtype in HALF:
                if dtype in info.dtypes:
                    inputs = info.module_inputs_func(info, device="cpu", dtype=dtype, requires_grad=True, training=True)
                    for i, sample in enumerate(inputs):
                        yield pytest.param(dtype, sample, id=f"GroupNorm-{str(dtype)[6:]}-{i}")


@pytest.mark.parametrize("dtype,sample", list(_module_samples()))
def test_module_db_group_norm_half_samples(dtype, sample):
    from torch import nn

    import normcore

    ctor, fwd = sample.constructor_input, sample.forward_input
    if fwd is None or not fwd.args:
        pytest.skip("no forward input")
    layers = [nn.GroupNorm(*ctor.args, **ctor.kwargs), normcore.GroupNorm(*ctor.args, **ctor.kwargs),
              nn.GroupNorm(*ctor.args, **ctor.kwargs)]
    for layer, to in zip(layers, (dtype, dtype, torch.float64)):
        layer.load_state_dict(layers[0].state_dict())
        layer.to(to)
    x = fwd.args[0].detach().to(dtype)
    dy = torch.randn(x.shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    results = []
    for layer, to in zip(layers, (dtype, dtype, torch.float64)):
        xi = x.detach().clone().to(to).requires_grad_()
        y = layer(xi)
        y.backward(dy.to(to))
        results.append({"output": y.detach(), "input grad": xi.grad,
                        **{f"{n} grad": p.grad for n, p in layer.named_parameters()}})
    theirs, ours, exact = results
    FIGURES.record(f"module_db GroupNorm{tuple(ctor.args)} x {tuple(x.shape)}", dtype, "", ours, theirs, exact)
    _assert_within_rule(ours, theirs, exact, dtype)
