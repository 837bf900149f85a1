"""normcore.keras.BatchNormalization(renorm=True) against the real Keras 3 on its torch backend.

Every step: the training output, the input/γ/β gradients and all seven weights (Keras's
get_weights order); eval at the end; masked batches; clipping validation. (Keras's unclipped
renorm training is not its inference, so that identity is not tested here.)
"""

from __future__ import annotations

import pytest
import torch

import normcore
import normcore.keras as nk
from tests.keras_arrays import arr
from tests.test_keras_layer import LARGEST, close

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

@pytest.fixture(scope="module", autouse=True)
def report_largest_differences():
    yield
    print("\nnormcore.keras renorm vs Keras, largest |difference|:", {k: f"{v:.1e}" for k, v in sorted(LARGEST.items()) if "renorm" in k})


CLIPPINGS = [None, {"rmax": 1.3, "rmin": 0.8, "dmax": 0.4}, {"rmax": 2.0}, {"dmax": 0.1}]


def _steps(keras, shape, axis, clipping, backward="closed_form", masked=False, seed=0):
    gen = torch.Generator().manual_seed(seed)
    config = dict(axis=axis, momentum=0.7, renorm=True, renorm_clipping=clipping, renorm_momentum=0.5)
    k, ours = keras.layers.BatchNormalization(**config), nk.BatchNormalization(**config, backward=backward)
    k.build(shape), ours.build(shape)
    assert len(ours.get_weights()) == len(k.get_weights()) == 7
    start = [w + 0.3 * torch.rand(w.shape, generator=gen).numpy() for w in k.get_weights()]  # off Keras's init
    k.set_weights(start), ours.set_weights(start)
    for step in range(4):
        x = torch.randn(shape, generator=gen) * (1 + step) + step  # statistics that drift: r and d move
        dy = torch.randn(shape, generator=gen)
        mask = (torch.rand(shape[:-1], generator=gen) > 0.3) if masked else None
        xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
        y_ours, y_keras = ours(xs[0], training=True, mask=mask), k(xs[1], training=True, mask=mask)
        close("renorm training output", y_ours, y_keras, atol=1e-5)
        (y_ours * dy).sum().backward(), (y_keras * dy).sum().backward()
        close("renorm gradient", xs[0].grad, xs[1].grad, atol=1e-5)
        close("renorm gradient", ours.gamma.grad, k.gamma.value.grad, atol=1e-5)
        close("renorm gradient", ours.beta.grad, k.beta.value.grad, atol=1e-5)
        ours.gamma.grad = ours.beta.grad = k.gamma.value.grad = k.beta.value.grad = None
        for mine, theirs in zip(ours.get_weights(), k.get_weights(), strict=True):
            close("renorm moving statistics", mine, theirs, atol=1e-5)
    x = torch.randn(shape, generator=gen)
    close("renorm inference output", ours(x, training=False), k(x, training=False), atol=1e-5)


@pytest.mark.parametrize("clipping", CLIPPINGS)
@pytest.mark.parametrize("shape, axis", [((6, 3), -1), ((3, 2, 4, 5), 1)])
def test_renorm_matches_keras_step_by_step(keras, shape, axis, clipping):
    _steps(keras, shape, axis, clipping)


@pytest.mark.parametrize("backward", ["closed_form", "autograd"])
def test_renorm_gradients_either_backward(keras, backward):
    _steps(keras, (5, 4, 3), -1, {"rmax": 1.5, "rmin": 0.7, "dmax": 0.5}, backward=backward, seed=1)


@pytest.mark.parametrize("clipping", [None, {"rmax": 1.2, "dmax": 0.2}])
def test_renorm_with_a_mask_matches_keras(keras, clipping):
    _steps(keras, (4, 5, 3), -1, clipping, masked=True, seed=2)


def test_renorm_clipping_is_validated_as_keras_only_when_renorm(keras):
    for bad in ({"rmax": 1.0, "rmin": 2.0}, {"dmax": -1.0}, {"r_max": 3.0}):
        with pytest.raises(ValueError):
            keras.layers.BatchNormalization(renorm=True, renorm_clipping=bad)
        with pytest.raises(normcore.NormcoreError, match="renorm_clipping"):
            nk.BatchNormalization(renorm=True, renorm_clipping=bad)
        keras.layers.BatchNormalization(renorm_clipping=bad), nk.BatchNormalization(renorm_clipping=bad)  # renorm=False
    assert nk.BatchNormalization(renorm=True).renorm_clipping == keras.layers.BatchNormalization(renorm=True).renorm_clipping == {}


def test_to_torch_gives_a_batch_renorm_and_says_what_it_cannot_carry(keras):
    k = keras.layers.BatchNormalization(axis=1, renorm=True, renorm_clipping={"rmax": 2.0, "dmax": 1.0})
    x = torch.randn(8, 3, 4, 4)
    k(x, training=True)
    bn, notes = nk.to_torch(k, normcore.BatchRenorm2d)
    assert isinstance(bn, normcore.BatchRenorm2d) and (bn.r_max, bn.d_max) == (2.0, 1.0)
    close("converted running_mean", bn.running_mean, arr(k.moving_mean))
    close("converted running_var", bn.running_var, arr(k.moving_variance))
    close("converted eval output", bn.eval()(x), k(x, training=False), atol=1e-5)
    text = " ".join(notes)
    assert "renorm_mean" in text and "renorm_momentum" in text
