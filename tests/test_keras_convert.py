"""normcore.keras.to_torch / from_torch, checked against the real Keras (torch backend) and torch.nn.

A converted layer must give the oracle's outputs: the Keras layer's on channels-last input,
the torch layer's on channels-first input, and keep training as the notes say.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import normcore
import normcore.keras as nk
from tests.keras_arrays import arr

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

LARGEST: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def report_largest_differences():
    yield
    print("\nconverted layers vs Keras / torch.nn, largest |difference|:", {k: f"{v:.1e}" for k, v in sorted(LARGEST.items())})




def close(what: str, ours, theirs, atol: float = 2e-5) -> None:
    ours, theirs = arr(ours), arr(theirs)
    assert ours.shape == theirs.shape, (what, ours.shape, theirs.shape)
    LARGEST[what] = max(LARGEST.get(what, 0.0), float(np.abs(ours - theirs).max()))
    np.testing.assert_allclose(ours, theirs, atol=atol, rtol=1e-5, err_msg=what)


def nhwc(gen, shape=(6, 5, 4, 3)):
    return torch.randn(shape, generator=gen) * 2.0 + 1.0


def trained_keras(keras, steps=4, seed=0, shape=(6, 5, 4, 3), **config):
    layer = keras.layers.BatchNormalization(**config)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        layer(nhwc(gen, shape), training=True)
    return layer, gen


def note_with(notes, text: str) -> str:
    found = [n for n in notes if text in n]
    assert len(found) == 1, (text, notes)
    return found[0]


# -- Keras -> torch ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [torch.nn.BatchNorm2d, normcore.BatchNorm2d])
def test_a_keras_layer_in_torch_gives_keras_s_inference_output(keras, cls):
    k, gen = trained_keras(keras, momentum=0.8, epsilon=1e-2)
    bn, notes = nk.to_torch(k, cls)
    assert isinstance(bn, cls) and bn.eps == 1e-2 and bn.momentum == pytest.approx(0.2, abs=1e-12)
    x = nhwc(gen)
    close("torch BatchNorm2d (NCHW) vs Keras (NHWC)", bn.eval()(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1), k(x, training=False))
    assert "x.movedim(-1, 1)" in note_with(notes, "axis=-1")
    note_with(notes, "num_batches_tracked")


def test_training_on_after_conversion_follows_the_notes(keras):
    k, gen = trained_keras(keras, momentum=0.7)
    ours = nk.to_torch(k, normcore.BatchNorm2d).layer  # biased updates, as Keras
    theirs, notes = nk.to_torch(k, torch.nn.BatchNorm2d)  # unbiased updates
    note_with(notes, "unbiased batch variance")
    for _ in range(3):
        x = nhwc(gen)
        keras_old = arr(k.moving_variance)
        k(x, training=True)
        ours.train()(x.permute(0, 3, 1, 2)), theirs.train()(x.permute(0, 3, 1, 2))
        close("running statistics after conversion", ours.running_mean, k.moving_mean)
        close("running statistics after conversion", ours.running_var, k.moving_variance)
        close("running statistics after conversion", theirs.running_mean, k.moving_mean)
        # torch.nn: 0.3 x the unbiased variance enters where Keras takes 0.3 x the biased one.
        n, biased = x.shape[0] * 5 * 4, x.reshape(-1, 3).var(0, unbiased=False)
        expected = 0.7 * torch.as_tensor(keras_old) + 0.3 * biased * n / (n - 1)
        close("running statistics after conversion", theirs.running_var, expected)
        theirs.running_var.copy_(torch.as_tensor(arr(k.moving_variance)))  # restart from Keras's for the next step


@pytest.mark.parametrize("center, scale", [(True, True), (True, False), (False, True), (False, False)])
def test_center_and_scale_to_torch_and_back(keras, center, scale):
    k, gen = trained_keras(keras, center=center, scale=scale, momentum=0.5)
    if center or scale:  # non-trivial γ and β
        k.set_weights([w + 0.5 for w in k.get_weights()[:-2]] + k.get_weights()[-2:])
    bn, notes = nk.to_torch(k, torch.nn.BatchNorm2d)
    x = nhwc(gen)
    close("torch BatchNorm2d (NCHW) vs Keras (NHWC)", bn.eval()(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1), k(x, training=False))
    assert (bn.weight is not None) == (center or scale) and (bn.bias is not None) == center
    if center and not scale:
        assert not bn.weight.requires_grad and torch.equal(bn.weight, torch.ones(3))
        note_with(notes, "torch has no bias without a weight")
    back, _ = nk.from_torch(bn, axis=-1)
    assert back.center == center and back.scale == (scale or center)  # scale=False came back with γ = 1
    k2 = keras.layers.BatchNormalization(center=back.center, scale=back.scale)  # the Keras twin of what came back
    k2.build(x.shape)
    k2.set_weights(back.get_weights())
    close("round trip Keras -> torch -> Keras", k2(x, training=False), k(x, training=False))


def test_a_weight_list_and_its_configuration(keras):
    k, gen = trained_keras(keras, shape=(7, 5, 4), axis=1, momentum=0.9, epsilon=1e-4, scale=False)
    weights = k.get_weights()  # beta, moving_mean, moving_variance
    with pytest.raises(normcore.NormcoreError, match="say which"):
        nk.to_torch(weights, torch.nn.BatchNorm1d)
    bn, notes = nk.to_torch(weights, torch.nn.BatchNorm1d, momentum=0.9, epsilon=1e-4, scale=False, axis=1)
    x = nhwc(gen, (7, 5, 4))
    close("torch BatchNorm1d vs Keras (axis=1)", bn.eval()(x), k(x, training=False))
    assert not any("axis" in n for n in notes) and not any("assumed" in n for n in notes)
    _, notes = nk.to_torch(weights, torch.nn.BatchNorm1d, scale=False)
    note_with(notes, "momentum: not given"), note_with(notes, "epsilon: not given")
    with pytest.raises(TypeError, match="reads momentum="):
        nk.to_torch(k, torch.nn.BatchNorm1d, momentum=0.9)


def test_keras_only_settings_are_noted(keras):
    k, gen = trained_keras(keras, gamma_regularizer="l2", renorm=True, trainable=False)
    bn, notes = nk.to_torch(k, torch.nn.BatchNorm2d)
    note_with(notes, "gamma_regularizer"), note_with(notes, "renorm=True")
    assert not bn.training and not bn.weight.requires_grad
    note_with(notes, "trainable=False")
    x = nhwc(gen)
    close("torch BatchNorm2d (NCHW) vs Keras (NHWC)", bn(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1), k(x, training=False))


# -- torch -> Keras ---------------------------------------------------------------------------


def trained_torch(steps=4, **kwargs):
    bn = torch.nn.BatchNorm2d(3, **kwargs)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        if bn.weight is not None:
            bn.weight.uniform_(0.5, 2.0, generator=gen)
            bn.bias.normal_(generator=gen)
    for _ in range(steps):
        bn(torch.randn(6, 3, 5, 4, generator=gen) * 2 + 1)
    return bn.eval(), gen


@pytest.mark.parametrize("axis", [1, -1])
def test_a_torch_layer_in_keras_gives_torch_s_output(keras, axis):
    bn, gen = trained_torch(eps=1e-5, momentum=0.3)
    layer, notes = nk.from_torch(bn, axis=axis)
    assert layer.momentum == pytest.approx(0.7) and layer.epsilon == 1e-5
    k = keras.layers.BatchNormalization(axis=axis, momentum=layer.momentum, epsilon=layer.epsilon)
    x = torch.randn(6, 3, 5, 4, generator=gen) * 2 + 1
    x_keras = x if axis == 1 else x.permute(0, 2, 3, 1)
    k.build(x_keras.shape)
    k.set_weights(layer.get_weights())
    expected = bn(x) if axis == 1 else bn(x).permute(0, 2, 3, 1)
    close("Keras with converted weights vs torch.nn", k(x_keras, training=False), expected)
    close("normcore.keras with converted weights vs torch.nn", layer(x_keras, training=False), expected)
    note_with(notes, "unbiased batch variances"), note_with(notes, "num_batches_tracked=4")
    note_with(notes, f"built with axis={axis}")


def test_a_state_dict_inside_a_model():
    bn, gen = trained_torch()
    model = torch.nn.Sequential(torch.nn.Identity(), bn)
    layer, notes = nk.from_torch(model.state_dict(), prefix="1.", eps=1e-5, momentum=0.1)
    x = torch.randn(2, 3, 5, 4, generator=gen)
    close("normcore.keras with converted weights vs torch.nn", layer(x, training=False), bn(x))
    assert not any("assumed" in n for n in notes)
    _, notes = nk.from_torch(bn.state_dict())
    note_with(notes, "eps: not in a state_dict"), note_with(notes, "momentum: not in a state_dict")
    with pytest.raises(normcore.NormcoreError, match="prefix="):
        nk.from_torch(model.state_dict())
    with pytest.raises(TypeError, match="reads eps= and momentum="):
        nk.from_torch(bn, eps=1e-3)


def test_what_keras_cannot_hold_is_noted():
    bn, _ = trained_torch(momentum=None)
    layer, notes = nk.from_torch(bn)
    assert layer.momentum == 0.99
    note_with(notes, "momentum=None")
    free, _ = trained_torch(track_running_stats=False, affine=False)
    layer, notes = nk.from_torch(free)
    assert layer.get_weights()[0].tolist() == [0, 0, 0] and layer.gamma is None and layer.beta is None
    note_with(notes, "track_running_stats=False")
    gamma_only = torch.nn.BatchNorm1d(3, bias=False)
    layer, _ = nk.from_torch(gamma_only)
    assert layer.scale and not layer.center
    keras_like = nk.from_torch(normcore.BatchNorm1d(3, unbiased_running_var=False)).notes
    assert not any("unbiased" in n for n in keras_like)
