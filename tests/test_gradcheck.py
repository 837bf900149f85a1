"""torch.autograd.gradcheck (float64, finite differences) on every closed-form backward.

Every autograd Function (``backward.py``'s two, ``rms_backward.py``'s one) is checked
directly, for the reduction axes and affine shapes of each norm kind, with and without γ/β,
and then once more through the public functional API, which is what the modules call.
"""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

import normcore.functional as NF
from normcore.backward import NormalizeWithBatchStats, NormalizeWithFixedStats
from normcore.rms_backward import NormalizeByRMS

# kind -> (input shape, reduced dims, affine shape); GroupNorm is its (N, G, C/G, *S) view.
KINDS = {
    "batch1d": ((5, 3), (0,), (1, 3)),
    "batch2d": ((3, 2, 2, 3), (0, 2, 3), (1, 2, 1, 1)),
    "batch3d": ((2, 2, 2, 1, 3), (0, 2, 3, 4), (1, 2, 1, 1, 1)),
    "layer": ((3, 2, 4), (1, 2), (2, 4)),
    "layer_last": ((2, 3, 5), (2,), (5,)),
    "group": ((2, 2, 3, 2, 2), (2, 3, 4), (1, 2, 3, 1, 1)),
    "instance": ((2, 3, 2, 3), (2, 3), (1, 3, 1, 1)),
}


def _leaf(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float64).requires_grad_()


def _inputs(shape, affine_shape, affine: bool, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = _leaf(torch.randn(shape, generator=g, dtype=torch.float64) * 1.5 + 0.7)
    weight = _leaf(torch.rand(affine_shape, generator=g, dtype=torch.float64) + 0.5) if affine else None
    bias = _leaf(torch.randn(affine_shape, generator=g, dtype=torch.float64)) if affine else None
    return x, weight, bias


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no_affine"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_batch_stats_backward_passes_gradcheck(kind, affine):
    shape, dims, affine_shape = KINDS[kind]
    x, weight, bias = _inputs(shape, affine_shape, affine, seed=1)
    tensors = (x,) if not affine else (x, weight, bias)

    def normalize(*args):
        w, b = (args[1], args[2]) if affine else (None, None)
        return NormalizeWithBatchStats.apply(args[0], w, b, dims, 1e-5)[0]

    assert gradcheck(normalize, tensors, eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no_affine"])
@pytest.mark.parametrize("kind", ["batch1d", "batch2d", "batch3d", "instance"])
def test_fixed_stats_backward_passes_gradcheck(kind, affine):
    shape, _dims, affine_shape = KINDS[kind]
    x, weight, bias = _inputs(shape, affine_shape, affine, seed=2)
    g = torch.Generator().manual_seed(3)
    mean = torch.randn(affine_shape, generator=g, dtype=torch.float64)
    var = torch.rand(affine_shape, generator=g, dtype=torch.float64) + 0.5
    tensors = (x,) if not affine else (x, weight, bias)

    def normalize(*args):
        w, b = (args[1], args[2]) if affine else (None, None)
        return NormalizeWithFixedStats.apply(args[0], mean, var, w, b, 1e-5)

    assert gradcheck(normalize, tensors, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_gradcheck_with_only_one_of_the_parameters_requiring_grad():
    """needs_input_grad is honoured: a frozen γ or β gets no gradient, the others are right."""
    shape, dims, affine_shape = KINDS["batch2d"]
    x, weight, bias = _inputs(shape, affine_shape, True, seed=4)
    frozen_bias = bias.detach()
    assert gradcheck(lambda x, w: NormalizeWithBatchStats.apply(x, w, frozen_bias, dims, 1e-5)[0], (x, weight))
    frozen_x = x.detach()
    assert gradcheck(lambda w, b: NormalizeWithBatchStats.apply(frozen_x, w, b, dims, 1e-5)[0], (weight, bias))


# RMSNorm: input shape, normalized (trailing) dims, γ's shape
RMS = {
    "last": ((4, 5), (1,), (5,)),
    "two_dims": ((3, 2, 4), (1, 2), (2, 4)),
    "three_dims": ((2, 3, 2, 2), (1, 2, 3), (3, 2, 2)),
    "one_value_per_row": ((4, 1), (1,), (1,)),
    "rank_5": ((2, 1, 2, 2, 3), (3, 4), (2, 3)),
}


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no_affine"])
@pytest.mark.parametrize("kind", list(RMS))
@pytest.mark.parametrize("eps", [1e-5, 0.0, 0.5])
def test_rms_backward_passes_gradcheck(kind, affine, eps):
    shape, dims, weight_shape = RMS[kind]
    x, weight, _ = _inputs(shape, weight_shape, affine, seed=6)
    tensors = (x, weight) if affine else (x,)
    assert gradcheck(lambda x, w=None: NormalizeByRMS.apply(x, w, dims, eps)[0], tensors, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_rms_backward_passes_gradcheck_with_only_one_input_requiring_grad():
    shape, dims, weight_shape = RMS["two_dims"]
    x, weight, _ = _inputs(shape, weight_shape, True, seed=7)
    frozen_x, frozen_weight = x.detach(), weight.detach()
    assert gradcheck(lambda w: NormalizeByRMS.apply(frozen_x, w, dims, 1e-5)[0], (weight,))
    assert gradcheck(lambda x: NormalizeByRMS.apply(x, frozen_weight, dims, 1e-5)[0], (x,))


FUNCTIONAL = {
    "batch_norm_train": lambda x, w, b: NF.batch_norm(x, None, None, w, b, training=True),
    "batch_norm_eval": lambda x, w, b: NF.batch_norm(
        x, torch.linspace(-1, 1, x.shape[1], dtype=x.dtype), torch.linspace(0.5, 2, x.shape[1], dtype=x.dtype), w, b
    ),
    "layer_norm": lambda x, w, b: NF.layer_norm(x, x.shape[1:], None if w is None else w.view(-1, 1, 1).expand(x.shape[1:]), None if b is None else b.view(-1, 1, 1).expand(x.shape[1:])),
    "group_norm": lambda x, w, b: NF.group_norm(x, 2, w, b),
    "instance_norm": lambda x, w, b: NF.instance_norm(x, weight=w, bias=b),
    "rms_norm": lambda x, w, b: NF.rms_norm(x, x.shape[2:], None if w is None else w[:2].view(-1, 1) * b[:3]),  # γ (2, 3)
    "rms_norm_eps_none": lambda x, w, b: NF.rms_norm(x, (3,), None if w is None else w[:3] * b[1:], eps=None),
}


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no_affine"])
@pytest.mark.parametrize("name", list(FUNCTIONAL))
def test_functional_closed_form_passes_gradcheck(name, affine):
    x, weight, bias = _inputs((3, 4, 2, 3), (4,), affine, seed=5)
    fn = FUNCTIONAL[name]
    tensors = (x, weight, bias) if affine else (x,)
    assert gradcheck(lambda *t: fn(*t) if affine else fn(t[0], None, None), tensors, eps=1e-6, atol=1e-5, rtol=1e-4)
