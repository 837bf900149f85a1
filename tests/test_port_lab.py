"""The Port tab's lab (normcore.lab.experiments.deploy.port / port_eps / port_keras / conventions).

Oracles: each convention's update rule written out here in float64; real Keras (torch backend)
for the Keras side, skipped where Keras is not installed; torch.nn for the axis error.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from normcore.lab import limits
from normcore.lab.experiments.deploy import conventions as C
from normcore.lab.experiments.deploy import port as P
from normcore.lab.experiments.deploy import port_eps as E
from normcore.lab.experiments.deploy import port_keras as K

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
SMALL = dict(depth=4, steps=12, batch=16)


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    module = pytest.importorskip("keras")
    assert module.backend.backend() == "torch"
    return module


def ema_oracle(batches: torch.Tensor, new_weight: float, unbiased: bool):
    """running = (1 − w)·running + w·batch from (0, 1), in float64, per the textbook rule."""
    mean, var = torch.zeros(batches.shape[-1], dtype=torch.float64), torch.ones(batches.shape[-1], dtype=torch.float64)
    for x in batches.double():
        mean = (1 - new_weight) * mean + new_weight * x.mean(0)
        var = (1 - new_weight) * var + new_weight * x.var(0, unbiased=unbiased)
    return mean, var


@settings(max_examples=20, deadline=None)
@given(key=st.sampled_from(tuple(C.CONVENTIONS)), momentum=st.floats(0.01, 0.99), unbiased=st.booleans(),
       steps=st.integers(1, 6), seed=st.integers(0, 100))
def test_each_convention_updates_its_running_statistics_by_its_own_rule(key, momentum, unbiased, steps, seed):
    unbiased = unbiased and key != "keras"  # Keras has no unbiased rule
    args = C.Arguments(key, momentum, 1e-5, unbiased, 1)
    layer = C.build(args, 3)
    batches = torch.randn(steps, 8, 3, generator=torch.Generator().manual_seed(seed)) * 2 + 1
    with torch.no_grad():
        for x in batches:
            P.call(layer, x, True)
    mean, var = ema_oracle(batches, C.CONVENTIONS[key].new_weight(momentum), unbiased)
    got_mean = getattr(layer, "running_mean", getattr(layer, "moving_mean", None))
    got_var = next(getattr(layer, n) for n in ("running_var", "moving_variance", "moving_var") if hasattr(layer, n))
    torch.testing.assert_close(got_mean.double(), mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_var.double(), var, rtol=1e-5, atol=1e-5)


def test_converted_arguments_come_from_the_converters_and_as_typed_copies_the_number():
    to_keras = P.converted_arguments("pytorch", "keras")[0]
    assert (to_keras.momentum, to_keras.eps, to_keras.unbiased, to_keras.axis) == (pytest.approx(0.9), 1e-5, False, -1)
    to_torch = P.converted_arguments("keras", "pytorch")[0]
    assert (to_torch.momentum, to_torch.eps, to_torch.unbiased) == (pytest.approx(0.01), 1e-3, False)
    typed = P.target_arguments("pytorch", "keras", {s: "as_typed" for s in P.SETTINGS})
    assert (typed.momentum, typed.eps) == (0.1, 1e-3)
    assert P.converted_arguments("d2l_0", "pytorch")[0].momentum == pytest.approx(0.1)
    assert "normcore.BatchNorm1d(16, eps=0.001, momentum=0.01, unbiased_running_var=False)" == C.code(to_torch, 16)
    assert P.same_in_both("d2l_1", "pytorch") == ["momentum", "eps", "axis"]


def test_every_mismatch_differs_and_converting_everything_leaves_only_rounding():
    table = P.summary(P.differences(P.PortOptions(source="keras", target="pytorch", **SMALL)))
    first, last = table["layer 1"], table[f"layer {SMALL['depth']}"]
    assert first["all converted"] < 1e-5 and last["all converted"] < 1e-4
    for mismatch in ("momentum as typed", "eps as typed", "running variance as typed"):
        assert first[mismatch] > 1e-4, mismatch
        assert last[mismatch] > first[mismatch] / 2, mismatch  # carried through the stack, not washed out
    assert first["momentum as typed"] > first["running variance as typed"] > first["eps as typed"]


def test_the_channel_axis_is_a_shape_error_with_a_fix():
    keras_data = P.axis_check("keras", "pytorch", "as_typed")
    assert keras_data.shape == (8, 5, 16) and "running_mean should contain 5 elements not 16" in keras_data.error
    assert "movedim(-1, 1)" in keras_data.fix
    assert P.axis_check("keras", "pytorch", "converted").error is None
    torch_data = P.axis_check("pytorch", "keras", "as_typed")
    assert "16 features along axis -1" in torch_data.error and "axis=1" in torch_data.fix
    assert P.axis_check("pytorch", "keras", "converted").error is None
    torch.nn.BatchNorm1d(16).eval()(torch.randn(8, 16, 5))  # the oracle: torch takes this layout


def test_problems_say_what_to_change():
    over = P.problems(P.PortOptions(depth=limits.MAX_PORT_DEPTH, steps=limits.MAX_PORT_STEPS))
    assert len(over) == 1 and "Use fewer layers or fewer training steps" in over[0]
    assert "Pick another target" in P.problems(P.PortOptions(source="keras", target="keras"))[0]
    assert P.problems(P.PortOptions()) == []
    assert "Pick RMSNorm" in E.problems(E.EpsOptions(norm="layer", source_eps="none"))[0]


def test_eps_difference_at_the_first_block_matches_the_formula():
    o = E.EpsOptions(norm="layer", source_eps="1e-5", depth=3, scale=1.0)
    frame = E.differences(o)
    assert set(frame["eps"]) == {E.EPS_LABELS[e] for e in ("1e-12", "1e-6", "1e-3")}  # no None for LayerNorm
    w1, w2 = E.blocks(3)[0]
    tokens = torch.randn(E.TOKENS, E.DIM, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def block(eps):  # written out: (h − μ)/sqrt(σ² + eps)
        n = (tokens - tokens.mean(-1, keepdim=True)) / (tokens.var(-1, unbiased=False, keepdim=True) + eps).sqrt()
        return tokens + torch.relu(n @ w1.T) @ w2.T

    a, b = block(1e-5), block(1e-3)
    expected = ((a - b).abs().max() / a.square().mean().sqrt()).item()
    got = frame[(frame.layer == 1) & (frame.eps_value == 1e-3)]["difference"].item()
    assert got == pytest.approx(expected, rel=1e-9)
    smaller = E.differences(E.EpsOptions(norm="rms", source_eps="1e-6", depth=3, scale=1e-2))
    assert "None (torch.nn.RMSNorm: finfo(float32).eps ≈ 1.19e-7)" in set(smaller["eps"])
    assert smaller[smaller.eps_value == 1e-3]["difference"].min() > 100 * got  # eps weighs more on small activations


def test_real_keras_gives_the_same_port_differences(keras):
    for source, target in (("pytorch", "keras"), ("keras", "pytorch")):
        o = P.PortOptions(source=source, target=target, momentum="as_typed", **SMALL)
        comparison = K.compare(o)
        assert comparison.agreement["difference"].max() < 1e-5
        ours, theirs = P.differences(o), comparison.differences
        assert (ours["run"] == theirs["run"]).all()
        torch.testing.assert_close(torch.tensor(theirs["difference"].values), torch.tensor(ours["difference"].values),
                                   rtol=1e-3, atol=2e-5)
    with pytest.raises(ValueError, match="Neither side"):
        K.compare(P.PortOptions(source="pytorch", target="d2l_0", **SMALL))
