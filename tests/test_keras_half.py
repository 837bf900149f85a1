"""normcore.keras.BatchNormalization in float16 and bfloat16 under the half-precision rule (issue 26).

The layers hold their weights in the half dtype (``dtype="float16"``) and take half inputs.
"theirs" is the real Keras 3 (torch backend) in the same dtype, the arbiter the real Keras in
float64 on the same values; the rule of ``half_rule.py`` holds for every training output, input
and γ/β gradient, the moving statistics after each step and the inference output.
"""

from __future__ import annotations

import pytest
import torch

import normcore.keras as nk
from tests.half_rule import HALF, assert_within_rule

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

SHAPE, AXIS, FEATURES = (6, 3, 5), 1, 3


def _steps(layer, weights, batches, dys, dtype, gamma, beta) -> dict:
    """Three training steps (output, gradients, moving statistics), then one inference output."""
    layer.build(SHAPE)
    layer.set_weights([w.to(dtype).float().numpy() if dtype is torch.bfloat16 else w.to(dtype).numpy() for w in weights])
    out = {}
    for step, (x, dy) in enumerate(zip(batches, dys)):
        x = x.to(dtype).requires_grad_()
        y = layer(x, training=True)
        y.backward(dy.to(dtype))
        out |= {f"output {step}": y.detach(), f"input grad {step}": x.grad,
                f"gamma grad {step}": gamma(layer).grad.clone(), f"beta grad {step}": beta(layer).grad.clone(),
                f"moving_mean {step}": _value(layer.moving_mean).clone(),
                f"moving_variance {step}": _value(layer.moving_variance).clone()}
        gamma(layer).grad = beta(layer).grad = None
    out["inference output"] = layer(batches[0].to(dtype), training=False).detach()
    return out


def _value(v):
    return getattr(v, "value", v).detach()


@pytest.mark.parametrize("dtype", HALF, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("backward", ["closed_form", "autograd"])
def test_keras_batch_normalization_in_half_precision_within_the_rule(keras, dtype, backward):
    g = torch.Generator().manual_seed(3)
    weights = [torch.rand(FEATURES, generator=g) * 1.5 + 0.5, torch.randn(FEATURES, generator=g) * 2,
               torch.randn(FEATURES, generator=g) * 3, torch.rand(FEATURES, generator=g) * 4 + 0.5]
    batches = [(torch.randn(SHAPE, generator=g) * 3 + 2).to(dtype).double() for _ in range(3)]
    dys = [torch.randn(SHAPE, generator=g).to(dtype).double() for _ in range(3)]
    config = {"axis": AXIS, "momentum": 2.2}  # the old value weighted 2.2, the batch −1.2: the update amplifies rounding
    keras_gamma, keras_beta = (lambda k: k.gamma.value), (lambda k: k.beta.value)
    ours = _steps(nk.BatchNormalization(**config, dtype=str(dtype)[6:], backward=backward), weights, batches, dys, dtype,
                  lambda m: m.gamma, lambda m: m.beta)
    theirs = _steps(keras.layers.BatchNormalization(**config, dtype=str(dtype)[6:]), weights, batches, dys, dtype,
                    keras_gamma, keras_beta)
    exact = _steps(keras.layers.BatchNormalization(**config, dtype="float64"), weights, batches, dys, torch.float64,
                   keras_gamma, keras_beta)
    assert_within_rule(ours, theirs, exact, dtype)
