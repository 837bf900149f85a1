"""normcore.keras.BatchNormalization against the real Keras 3 (torch backend) as the oracle.

Every expected value comes from ``keras.layers.BatchNormalization`` called on the same
tensors. The largest differences seen are printed at the end of the module (``pytest -s``).
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import normcore
import normcore.keras as nk
from tests.keras_arrays import arr
from normcore.keras.arguments import KERAS_ONLY

# Keras 3.15's get_weights() calls np.array on torch tensors, which numpy 2 warns about.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

LARGEST: dict[str, float] = {}  # what the assertions saw, by quantity


@pytest.fixture(scope="module", autouse=True)
def report_largest_differences():
    yield
    print("\nnormcore.keras vs Keras, largest |difference|:", {k: f"{v:.1e}" for k, v in sorted(LARGEST.items())})




def close(what: str, ours, theirs, atol: float = 2e-5, rtol: float = 1e-5) -> None:
    ours, theirs = arr(ours), arr(theirs)
    assert ours.shape == theirs.shape, (what, ours.shape, theirs.shape)
    if ours.size:
        LARGEST[what] = max(LARGEST.get(what, 0.0), float(np.nanmax(np.abs(ours - theirs))))
    np.testing.assert_allclose(ours, theirs, atol=atol, rtol=rtol, err_msg=what)


def twins(keras, **config):
    return keras.layers.BatchNormalization(**config), nk.BatchNormalization(**config)


def random_weights(features: int, center: bool, scale: bool, gen: torch.Generator) -> list[np.ndarray]:
    gamma = torch.rand(features, generator=gen) * 1.5 + 0.5
    beta = torch.randn(features, generator=gen)
    mean, var = torch.randn(features, generator=gen), torch.rand(features, generator=gen) + 0.5
    chosen = ([gamma] if scale else []) + ([beta] if center else []) + [mean, var]
    return [t.numpy() for t in chosen]


def same_weights(keras_layer, layer) -> None:
    for name, ours, theirs in zip(("w0", "w1", "w2", "w3"), layer.get_weights(), keras_layer.get_weights()):
        close("moving statistics", ours, theirs)


# -- outputs and the update rule ------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, axis", [((5, 3), -1), ((4, 6, 3), -1), ((3, 2, 4, 5), 1), ((2, 3, 2, 2, 4), -1), ((4, 3, 5), -2)]
)
def test_training_and_inference_match_keras_over_several_steps(keras, shape, axis):
    gen = torch.Generator().manual_seed(len(shape) * 10 + axis)
    k, ours = twins(keras, axis=axis, momentum=0.6)
    for step in range(4):
        x = torch.randn(shape, generator=gen) * 3 + 2
        close("training output", ours(x, training=True), k(x, training=True))
        same_weights(k, ours)
    x = torch.randn(shape, generator=gen) * 3 + 2
    close("inference output", ours(x, training=False), k(x, training=False))
    assert ours.last_stats.source == "running"


def test_moving_variance_is_biased_and_momentum_weights_the_old_value(keras):
    # Small batches and a momentum far from 1, so either mistake is large.
    k, ours = twins(keras, momentum=0.25)
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        x = torch.randn(3, 2, generator=gen) * 2
        ours(x, training=True), k(x, training=True)
    close("moving statistics", ours.moving_mean, k.moving_mean, atol=1e-6)
    close("moving statistics", ours.moving_variance, k.moving_variance, atol=1e-6)


def test_trainable_false_runs_in_inference_mode_and_freezes(keras):
    k, ours = twins(keras, momentum=0.5)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(6, 4, generator=gen) + 1
    k(x, training=True), ours(x, training=True)
    k.trainable = ours.trainable = False
    x = torch.randn(6, 4, generator=gen) * 2
    frozen = k(x, training=True)
    assert np.allclose(arr(frozen), arr(k(x, training=False))) and np.allclose(arr(k.moving_mean), arr(ours.moving_mean), atol=1e-6)
    close("training output", ours(x, training=True), frozen)
    same_weights(k, ours)  # neither moved
    assert not ours.gamma.requires_grad and not ours.beta.requires_grad
    assert ours.last_stats.source == "running"
    k.trainable = ours.trainable = True
    close("training output", ours(x, training=True), k(x, training=True))
    assert ours.gamma.requires_grad


def test_a_batch_of_one_in_training_gives_beta_as_keras(keras):
    k, ours = twins(keras, momentum=0.9)
    k.build((None, 3)), ours.build((None, 3))
    weights = [np.full(3, 2.0, "float32"), np.array([0.5, -1, 3], "float32"), np.zeros(3, "float32"), np.ones(3, "float32")]
    k.set_weights(weights), ours.set_weights(weights)
    x = torch.tensor([[0.8, -0.2, 7.0]])
    expected = k(x, training=True)
    assert np.allclose(arr(expected), weights[1][None])  # Keras: variance 0 over one value, output = beta
    close("training output", ours(x, training=True), expected, atol=0)
    same_weights(k, ours)  # moving_variance = 0.9 * 1 + 0.1 * 0
    assert ours.last_stats.values_per_stat == 1


def test_training_none_follows_train_and_eval(keras):
    k, ours = twins(keras, momentum=0.5)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(5, 3, generator=gen) * 2 + 1
    direct = k(x)  # a Keras layer called on its own runs in inference
    assert np.allclose(arr(direct), arr(k(x, training=False))) and np.allclose(arr(k.moving_mean), 0)
    close("inference output", ours.eval()(x), direct)
    close("training output", ours.train()(x), k(x, training=True))
    same_weights(k, ours)
    assert ours(x, training=False).equal(ours.eval()(x))


def test_masked_statistics_match_keras(keras):
    gen = torch.Generator().manual_seed(4)
    for shape, axis in (((3, 5, 4), -1), ((4, 3, 2), 1)):
        k, ours = twins(keras, axis=axis, momentum=0.5)
        for _ in range(2):
            x = torch.randn(shape, generator=gen) * 2 + 1
            mask = torch.rand(shape[:-1], generator=gen) > 0.4
            close("masked training output", ours(x, training=True, mask=mask), k(x, training=True, mask=mask))
            same_weights(k, ours)
    with pytest.raises(normcore.NormcoreError, match="one dim less"):
        ours(x, training=True, mask=torch.ones(shape, dtype=torch.bool))


@pytest.mark.parametrize("backward", ["closed_form", "autograd"])
@pytest.mark.parametrize("training", [True, False])
def test_gradients_match_keras(keras, backward, training):
    gen = torch.Generator().manual_seed(5)
    k, ours = keras.layers.BatchNormalization(axis=1), nk.BatchNormalization(axis=1, backward=backward)
    x = torch.randn(4, 3, 5, generator=gen) * 2 + 1
    weights = random_weights(3, True, True, gen)
    k.build(x.shape), ours.build(x.shape)
    k.set_weights(weights), ours.set_weights(weights)
    dy = torch.randn(x.shape, generator=gen)
    xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    (ours(xs[0], training=training) * dy).sum().backward()
    (k(xs[1], training=training) * dy).sum().backward()
    close("gradient", xs[0].grad, xs[1].grad, atol=1e-5)
    close("gradient", ours.gamma.grad, k.gamma.value.grad, atol=1e-5)
    close("gradient", ours.beta.grad, k.beta.value.grad, atol=1e-5)


def test_a_torch_optimizer_trains_it_as_keras_s_variables(keras):
    gen = torch.Generator().manual_seed(8)
    k, ours = twins(keras, axis=1, momentum=0.5)
    k.build((6, 3, 4)), ours.build((6, 3, 4))  # the parameters exist once built, as torch's LazyModules
    theirs_opt = torch.optim.SGD([k.gamma.value, k.beta.value], lr=0.1)  # Keras's torch variables are Parameters
    ours_opt = torch.optim.SGD(ours.parameters(), lr=0.1)
    assert [p.shape for p in ours.parameters()] == [(3,), (3,)]
    for _ in range(3):
        x, target = torch.randn(6, 3, 4, generator=gen) * 2 + 1, torch.randn(6, 3, 4, generator=gen)
        for layer, opt in ((k, theirs_opt), (ours, ours_opt)):
            opt.zero_grad()
            ((layer(x, training=True) - target) ** 2).mean().backward()
            opt.step()
    same_weights(k, ours)


def test_state_dict_loads_into_an_unbuilt_layer():
    built = nk.BatchNormalization(center=False)
    built(torch.randn(4, 5) * 3, training=True)
    fresh = nk.BatchNormalization(center=False)
    assert not fresh.built and fresh.get_weights() == []
    fresh.load_state_dict(built.state_dict())  # Keras's names: gamma, moving_mean, moving_variance
    assert fresh.built and list(built.state_dict()) == ["gamma", "moving_mean", "moving_variance"]
    x = torch.randn(3, 5)
    assert torch.equal(fresh.eval()(x), built.eval()(x))


def test_half_precision_inputs_are_normalized_in_float32(keras):
    k, ours = twins(keras)
    x = (torch.randn(8, 3) * 2 + 1).half()
    y = ours(x, training=True)
    assert y.dtype == torch.float16  # the input's dtype (Keras returns its layer's float32)
    close("half-precision output", y.float(), k(x, training=True).half().float(), atol=2e-3)
    same_weights(k, ours)


# -- over shapes, axes and arguments -------------------------------------------------------


@st.composite
def configurations(draw):
    rank = draw(st.integers(2, 5))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank)))
    axis = draw(st.integers(-rank, rank - 1))
    config = {
        "axis": axis,
        "momentum": draw(st.floats(0.0, 1.0)),
        "epsilon": draw(st.floats(1e-5, 0.1)),
        "center": draw(st.booleans()),
        "scale": draw(st.booleans()),
    }
    return shape, config, draw(st.integers(0, 2**31))


def keras_variance_error(x: torch.Tensor, axis: int) -> tuple[float, float]:
    """How far Keras's own float32 batch variance can be off, absolute and relative to σ² + ε.

    Keras's torch backend takes σ² = E[x²] − E[x]² in float32, which loses digits when a
    feature's |mean| is large against its std (then normcore's two-pass σ² is the closer one;
    a float64 reference agrees with it). The bound: a few float32 roundings of E[x²].
    """
    moved = x.double().movedim(axis, -1).reshape(-1, x.shape[axis])
    absolute = 8 * 2.0**-24 * moved.square().mean(0)
    return float(absolute.max()), absolute, moved.var(0, unbiased=False)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configurations())
def test_parity_over_shapes_axes_and_arguments(keras, drawn):
    shape, config, seed = drawn
    gen = torch.Generator().manual_seed(seed)
    k, ours = twins(keras, **config)
    k.build(shape), ours.build(shape)
    weights = random_weights(shape[config["axis"]], config["center"], config["scale"], gen)
    k.set_weights(weights), ours.set_weights(weights)
    worst_seen = 0.0
    for _ in range(3):
        x = torch.randn(shape, generator=gen) * 2 + torch.randn((), generator=gen)
        worst, absolute, var = keras_variance_error(x, config["axis"])
        worst_seen = max(worst_seen, worst)
        relative = float((absolute / (var + config["epsilon"])).max())  # Keras's output is off by up to this, relatively
        y = ours(x, training=True)
        what = "training output" if relative < 1e-6 else "training output where Keras's E[x²] − E[x]² loses digits"
        close(what, y, k(x, training=True), atol=2e-5 + relative * float(y.detach().abs().max()))
        for ours_w, theirs_w in zip(ours.get_weights(), k.get_weights()):
            close("moving statistics", ours_w, theirs_w, atol=2e-5 + worst)
    # Keras's moving variance carries its float32 variance error into inference: relative to
    # moving_variance + ε, the output can be off by up to that error (an 8-rounding bound).
    y = ours(x, training=False)
    relative = worst_seen / float(ours.moving_variance.min() + config["epsilon"])
    close("inference output", y, k(x, training=False), atol=2e-5 + relative * float(y.detach().abs().max()))


# -- Keras's weights and arguments --------------------------------------------------------------


@pytest.mark.parametrize("center, scale", [(True, True), (True, False), (False, True), (False, False)])
def test_weights_are_in_keras_order_both_ways(keras, center, scale):
    gen = torch.Generator().manual_seed(6)
    k, ours = twins(keras, center=center, scale=scale, axis=1)
    assert ours.get_weights() == [] == k.get_weights()  # nothing before the layer is built
    x = torch.randn(5, 4, 2, generator=gen)
    k(x, training=True), ours(x, training=True)
    k2 = keras.layers.BatchNormalization(center=center, scale=scale, axis=1)
    k2.build(x.shape)
    k2.set_weights(ours.get_weights())  # ours -> Keras
    close("inference output", ours(x, training=False), k2(x, training=False))
    weights = random_weights(4, center, scale, gen)
    k.set_weights(weights), ours.set_weights([torch.as_tensor(w) for w in weights])  # Keras's list -> ours
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in k.get_weights()]
    close("inference output", ours(x, training=False), k(x, training=False))


def test_our_arguments_and_defaults_are_keras_s(keras):
    theirs = inspect.signature(keras.layers.BatchNormalization.__init__).parameters
    ours = inspect.signature(nk.BatchNormalization.__init__).parameters
    for name in ("axis", "momentum", "epsilon", "center", "scale", "renorm", "renorm_clipping", "renorm_momentum"):
        assert ours[name].default == theirs[name].default, name
    keras_only = {n for n, p in theirs.items() if p.kind is p.POSITIONAL_OR_KEYWORD} - {"self", *ours}
    assert keras_only == set(KERAS_ONLY) - {"activity_regularizer"}  # the table names every Keras argument
    for name in keras_only:
        nk.BatchNormalization(**{name: theirs[name].default})  # Keras's default is accepted


@pytest.mark.parametrize(
    "argument, value",
    [("beta_initializer", "ones"), ("gamma_regularizer", "l2"), ("gamma_constraint", "non_neg"),
     ("synchronized", True), ("activity_regularizer", "l1")],
)
def test_keras_only_arguments_are_refused_with_what_to_do(argument, value):
    with pytest.raises(normcore.NormcoreError, match=rf"does not implement {argument}=.*: \w"):
        nk.BatchNormalization(**{argument: value})


def test_unknown_arguments_and_misuse_are_refused():
    with pytest.raises(TypeError, match="unexpected keyword argument.*foo.*It takes axis"):
        nk.BatchNormalization(foo=1)
    with pytest.raises(normcore.NormcoreError, match="one int"):
        nk.BatchNormalization(axis=(1, 2))
    layer = nk.BatchNormalization()
    with pytest.raises(normcore.NormcoreError, match="not built yet"):
        layer.set_weights([np.ones(3)] * 4)
    layer(torch.randn(2, 3))
    with pytest.raises(normcore.NormcoreError, match="expects 4"):
        layer.set_weights([np.ones(3)] * 3)
    with pytest.raises(normcore.NormcoreError, match="built for 3 features along axis -1"):
        layer(torch.randn(2, 4))
    with pytest.raises(normcore.NormcoreIndexError, match="axis 2 is out of range"):
        nk.BatchNormalization(axis=2)(torch.randn(2, 3))
    wide = nk.BatchNormalization(axis=2)
    wide(torch.randn(2, 3, 2))
    with pytest.raises(normcore.NormcoreIndexError, match="axis 2 is out of range for an input of rank 2"):
        wide(torch.randn(2, 2))  # (Keras fixes the rank when it builds; normcore checks the axis per call)
    with pytest.raises(normcore.NormcoreIndexError, match="rank 2 or more"):
        nk.BatchNormalization()(torch.randn(3))
