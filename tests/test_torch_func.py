"""torch.func on every layer and functional: vmap, grad, jacrev and per-sample gradients.

Each transform is applied to a normcore layer (through ``torch.func.functional_call``) and to
its torch.nn twin with the same parameters, and the results must agree. BatchNorm runs with
``track_running_stats=False``: a layer that updates its buffers in place fails under vmap,
torch's own included. ``torch.autograd.functional.jacobian`` (no vmap at all) is the second
oracle for the Jacobians. float64, so that agreement is checked tightly.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as TF
from torch import nn
from torch.func import functional_call, grad, jacrev, vmap

import normcore
import normcore.functional as NF

# name, constructor args and kwargs, one sample's shape (vmap adds the batch dim in front)
LAYERS = [
    ("BatchNorm1d", (3,), {"track_running_stats": False}, (4, 3)),
    ("BatchNorm2d", (3,), {"track_running_stats": False}, (2, 3, 2, 2)),
    ("BatchNorm3d", (2,), {"track_running_stats": False}, (2, 2, 2, 1, 2)),
    ("InstanceNorm1d", (3,), {"affine": True}, (2, 3, 4)),
    ("InstanceNorm2d", (3,), {"affine": True}, (2, 3, 2, 2)),
    ("InstanceNorm3d", (2,), {"affine": True}, (1, 2, 2, 2, 2)),
    ("LayerNorm", ((3, 2),), {}, (4, 3, 2)),
    ("GroupNorm", (2, 4), {}, (2, 4, 3)),
    ("RMSNorm", ((3, 2),), {}, (4, 3, 2)),
    ("RMSNorm", (2,), {"eps": 1e-3}, (4, 3, 2)),
]
IDS = [f"{name}{args}" if name == "RMSNorm" else name for name, args, *_ in LAYERS]
BACKWARDS = ["closed_form", "autograd"]


def _pair(name, args, kwargs, backward):
    theirs = getattr(nn, name)(*args, **kwargs).double()
    ours = getattr(normcore, name)(*args, **kwargs, backward=backward).double()
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        for p in theirs.parameters():
            p.copy_(torch.rand(p.shape, generator=g, dtype=torch.float64) + 0.5)
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


def _inputs(shape, batch=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((batch,) + shape, generator=g, dtype=torch.float64) * 2 + 1


def _loss(layer, params, x, target):
    """A scalar that weighs every output differently, so that every gradient term shows."""
    return (functional_call(layer, params, (x,)) * target).sum()


@pytest.mark.parametrize("backward", BACKWARDS)
@pytest.mark.parametrize("name,args,kwargs,shape", LAYERS, ids=IDS)
def test_vmap_over_a_batch_of_inputs_matches_torch(name, args, kwargs, shape, backward):
    theirs, ours = _pair(name, args, kwargs, backward)
    xs = _inputs(shape)
    torch.testing.assert_close(vmap(ours)(xs), vmap(theirs)(xs))
    torch.testing.assert_close(vmap(ours, in_dims=1, out_dims=1)(xs.movedim(0, 1)), vmap(theirs)(xs).movedim(0, 1))


@pytest.mark.parametrize("backward", BACKWARDS)
@pytest.mark.parametrize("name,args,kwargs,shape", LAYERS, ids=IDS)
def test_per_sample_gradients_match_torch(name, args, kwargs, shape, backward):
    """vmap(grad(loss)) over samples: one gradient of every parameter per sample."""
    theirs, ours = _pair(name, args, kwargs, backward)
    xs, targets = _inputs(shape), _inputs(shape, seed=2)
    results = []
    for layer in (ours, theirs):
        params = {k: v.detach() for k, v in layer.named_parameters()}
        per_sample = vmap(grad(lambda p, x, t, layer=layer: _loss(layer, p, x, t), argnums=(0, 1)), in_dims=(None, 0, 0))
        results.append(per_sample(params, xs, targets))
    (params_ours, x_ours), (params_theirs, x_theirs) = results
    torch.testing.assert_close(x_ours, x_theirs)
    for key in params_theirs:
        torch.testing.assert_close(params_ours[key], params_theirs[key], msg=lambda m, key=key: f"{key}: {m}")


@pytest.mark.parametrize("backward", BACKWARDS)
@pytest.mark.parametrize("name,args,kwargs,shape", LAYERS, ids=IDS)
def test_jacrev_matches_torch_and_the_unvectorized_jacobian(name, args, kwargs, shape, backward):
    theirs, ours = _pair(name, args, kwargs, backward)
    x = _inputs(shape, batch=1)[0]
    params = {k: v.detach() for k, v in ours.named_parameters()}

    def f(layer):
        return lambda x, p: functional_call(layer, p, (x,))

    jac_ours = jacrev(f(ours), argnums=(0, 1))(x, params)
    jac_theirs = jacrev(f(theirs), argnums=(0, 1))(x, params)
    torch.testing.assert_close(jac_ours, jac_theirs)
    # Without vmap: autograd.functional.jacobian runs one backward per output element.
    plain = torch.autograd.functional.jacobian(lambda x: ours(x), x)
    torch.testing.assert_close(jac_ours[0], plain)


@pytest.mark.parametrize("backward", BACKWARDS)
def test_functionals_under_vmap_over_inputs_and_parameters(backward):
    """vmap over the input and over γ, β at once (an ensemble of affine parameters)."""
    g = torch.Generator().manual_seed(3)
    xs = torch.randn(3, 2, 4, 5, generator=g, dtype=torch.float64)
    ws, bs = torch.rand(3, 4, generator=g, dtype=torch.float64) + 0.5, torch.randn(3, 4, generator=g, dtype=torch.float64)
    rm, rv = torch.randn(4, generator=g, dtype=torch.float64), torch.rand(4, generator=g, dtype=torch.float64) + 0.5
    calls = [
        (lambda M, **e: lambda x, w, b: M.batch_norm(x, None, None, w, b, True, **e)),
        (lambda M, **e: lambda x, w, b: M.batch_norm(x, rm, rv, w, b, False, **e)),  # running statistics
        (lambda M, **e: lambda x, w, b: M.instance_norm(x, weight=w, bias=b, **e)),
        (lambda M, **e: lambda x, w, b: M.group_norm(x, 2, w, b, **e)),
        (lambda M, **e: lambda x, w, b: M.layer_norm(x.transpose(1, 2), (4,), w, b, **e)),
        (lambda M, **e: lambda x, w, b: M.rms_norm(x.transpose(1, 2), (4,), w, **e) + b),  # γ from the ensemble
    ]
    for make in calls:
        ours, theirs = make(NF, backward=backward), make(TF)
        for in_dims in ((0, 0, 0), (None, 0, 0), (0, None, None)):
            args = [t if d == 0 else t[0] for t, d in zip((xs, ws, bs), in_dims)]
            torch.testing.assert_close(vmap(ours, in_dims=in_dims)(*args), vmap(theirs, in_dims=in_dims)(*args))
            # and the gradient of each member of the ensemble, through vmap(grad)
            g_ours = vmap(grad(_weighted_sum(ours), argnums=(0, 1, 2)), in_dims=in_dims)(*args)
            g_theirs = vmap(grad(_weighted_sum(theirs), argnums=(0, 1, 2)), in_dims=in_dims)(*args)
            torch.testing.assert_close(g_ours, g_theirs)


def _weighted_sum(fn):
    """fn's output weighed 0, 1, 2, ... element by element, summed: a scalar loss."""
    def loss(x, w, b):
        y = fn(x, w, b)
        return (y * torch.arange(y.numel(), dtype=y.dtype).reshape(y.shape)).sum()
    return loss


def test_torch_compile_matches_torch():
    # Under torch.compile the exact form runs (no Python branch on data: transforms.is_eager).
    # One layer: the compiler's first use costs ~8 s of the test run.
    name, args, shape = "BatchNorm2d", (3,), (4, 3, 5, 5)
    ours, theirs = getattr(normcore, name)(*args), getattr(torch.nn, name)(*args)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)) + 5.0
    xs = [x.clone().requires_grad_() for _ in range(2)]
    y = torch.compile(ours, backend="aot_eager")(xs[0])
    y.sum().backward()
    z = theirs(xs[1])
    z.sum().backward()
    torch.testing.assert_close(y, z)
    torch.testing.assert_close(xs[0].grad, xs[1].grad)
