"""Part 3 of the Gradients page (normcore.lab.experiments.gradients.flow), and the small
extensions it made to the training page's model builder and loop: the per-layer statistics
against a two-layer network differentiated by hand in float64, the saturation measure, the
words the page shows, the caps, and a tiny end-to-end comparison."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from normcore.lab import datasets, limits, loop, models
from normcore.lab.experiments import gradients as G
from normcore.lab.experiments.gradients import flow


# -- the per-layer statistics against a hand-computed two-layer case ------------------------------

def _two_layer_by_hand(x, w1, b1, w2, b2, w3, b3, y):
    """Forward and backward of tanh(tanh(x W1ᵀ + b1) W2ᵀ + b2) W3ᵀ + b3 with mean cross-entropy,
    by the chain rule in float64 numpy: (h1, h2, dL/dh1, dL/dh2, dL/dW1, dL/dW2)."""
    h1 = np.tanh(x @ w1.T + b1)
    h2 = np.tanh(h1 @ w2.T + b2)
    logits = h2 @ w3.T + b3
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dlogits = (p - np.eye(w3.shape[0])[y]) / len(x)
    dh2 = dlogits @ w3
    dz2 = dh2 * (1 - h2 ** 2)
    dh1 = dz2 @ w2
    dz1 = dh1 * (1 - h1 ** 2)
    return h1, h2, dh1, dh2, dz1.T @ x, dz2.T @ h1


def test_layer_profile_matches_a_two_layer_network_differentiated_by_hand():
    rng = np.random.default_rng(3)
    x = rng.normal(0, 2, (5, 2))
    y = np.array([0, 1, 2, 1, 0])
    w1, b1, w2, b2 = rng.normal(0, 1.5, (3, 2)), rng.normal(0, 1, 3), rng.normal(0, 1.5, (3, 3)), rng.normal(0, 1, 3)
    w3, b3 = rng.normal(0, 1, (3, 3)), rng.normal(0, 1, 3)
    model = models.make_model("mlp", norm="none", input_shape=(1, 1, 2), num_classes=3, width=3, depth=2,
                              activation="tanh").double()
    with torch.no_grad():
        for layer, (w, b) in zip([model.body[0][0], model.body[1][0], model.head], [(w1, b1), (w2, b2), (w3, b3)]):
            layer.weight.copy_(torch.from_numpy(w))
            layer.bias.copy_(torch.from_numpy(b))
    lr = 0.1
    got = flow.layer_profile(model, torch.from_numpy(x).view(5, 1, 1, 2), torch.from_numpy(y), lr, "tanh")
    h1, h2, dh1, dh2, dw1, dw2 = _two_layer_by_hand(x, w1, b1, w2, b2, w3, b3, y)
    for row, h, dh, dw, w in ((0, h1, dh1, dw1, w1), (1, h2, dh2, dw2, w2)):
        r = got.iloc[row]
        assert r.layer == row + 1
        np.testing.assert_allclose(r.act_mean, h.mean(), rtol=1e-10)
        np.testing.assert_allclose(r.act_std, h.std(ddof=1), rtol=1e-10)
        np.testing.assert_allclose(r.act_grad_std, dh.std(ddof=1), rtol=1e-10)
        np.testing.assert_allclose(r.weight_grad_std, dw.std(ddof=1), rtol=1e-10)
        np.testing.assert_allclose(r.update_ratio, math.log10(lr * dw.std() / w.std()), rtol=1e-10)
        np.testing.assert_allclose(r.saturation_pct, 100 * np.mean(np.abs(h) > 0.97), rtol=1e-12)
    assert model.body[0][0].weight.grad is None  # measured on a copy


def test_saturation_counts_the_flat_tails():
    assert flow.saturation(torch.tensor([0.5, 0.98, -0.99, 0.1]), "tanh") == 50.0
    assert flow.saturation(torch.tensor([0.01, 0.5, 0.99, 0.97, 0.02]), "sigmoid") == 60.0  # 0.97 is not past it
    assert flow.saturation(torch.tensor([0.0, 0.96, -0.96]), "tanh") == 0.0
    assert math.isnan(flow.saturation(torch.tensor([0.0, 5.0]), "relu"))


# -- the words and the ratios come from the measured profile ------------------------------------

def _profile(stds, weight_stds=None):
    n = len(stds)
    return pd.DataFrame(dict(layer=range(1, n + 1), act_grad_std=stds,
                             weight_grad_std=weight_stds if weight_stds is not None else [1.0] * n))


def test_flow_sentence_says_where_gradients_explode_or_vanish():
    exploding = flow.flow_sentence(_profile([1e3, 50.0, 5.0, 1.0]), "batch", "init")
    assert "1e+03× that at layer 4" in exploding and "explode towards the input (past 10× from layer 2 down)" in exploding
    assert "as Yang et al. 2019 predict" in exploding
    vanishing = flow.flow_sentence(_profile([1e-6, 0.5, 0.05, 1.0]), "none", "init")
    assert vanishing.startswith("Without a norm, init") and "vanish towards the input (below 1/10 from layer 3 down)" in vanishing
    flat = flow.flow_sentence(_profile([0.5, 1.0, 2.0, 1.0]), "batch", "init")
    assert "within a factor of 10" in flat and "unlike what Yang et al. 2019 predict" in flat
    weights = flow.flow_sentence(_profile([1.0, 1.0], [40.0, 2.0]), "batch", "trained", "weight_grad_std")
    assert "weight gradients' std at layer 1 is 20×" in weights and "Yang" not in weights
    assert "nothing flows" in flow.flow_sentence(_profile([0.0, 0.0]), "none", "trained")


def test_ratio_table_is_first_over_last_per_run_and_moment():
    p = pd.concat([_profile([8.0, 4.0, 2.0], [3.0, 1.0, 6.0]).assign(run="batch", when="init"),
                   _profile([1e-9, 1.0, 1e3], [1.0, 1.0, 4.0]).assign(run="none", when="trained")])
    table = flow.ratio_table(p).set_index("run")
    assert table.at["batch", "activation grad first/last"] == 4.0 and table.at["batch", "weight grad first/last"] == 0.5
    assert table.at["none", "activation grad first/last"] == pytest.approx(1e-12)
    assert table.at["none", "when"] == "trained"


# -- the model builder's init gain and the loop's step budget and hook ----------------------------

def test_init_gain_draws_xavier_normal_weights_and_zero_biases():
    plain = models.make_model("mlp", norm="batch", width=128, depth=3, seed=1)
    for gain in (0.5, 2.0):
        model = models.make_model("mlp", norm="batch", width=128, depth=3, seed=1, init_gain=gain)
        hidden = model.body[1][0]
        assert float(hidden.weight.detach().std()) == pytest.approx(gain * math.sqrt(2 / (128 + 128)), rel=0.03)
        assert float(model.body[0][0].weight.detach().std()) == pytest.approx(gain * math.sqrt(2 / (64 + 128)), rel=0.05)
        assert not hidden.bias.any()
    same = models.make_model("mlp", norm="batch", width=128, depth=3, seed=1, init_gain=None)
    assert torch.equal(same.body[1][0].weight, plain.body[1][0].weight)  # None: torch's default init, unchanged


def test_max_steps_ends_mid_epoch_and_after_backward_sees_each_steps_gradients():
    data = datasets.load_digits_split(seed=0)
    model = models.make_model("mlp", norm="batch", width=16, depth=2, seed=0)
    seen = []

    def after_backward(step, x, y):
        seen.append((step, x.shape[0], y.shape[0], float(model.head.weight.grad.abs().sum())))

    result = loop.train(model, data, loop.TrainConfig(epochs=3, batch_size=64, log_every=5), max_steps=7,
                        after_backward=after_backward, threads=1)
    assert result.status == "finished" and result.steps == 7
    assert [r["step"] for r in result.rows] == [5, 7]  # the last, partial window is reported
    assert [s for s, *_ in seen] == list(range(7))
    assert all(n == m == 64 and g > 0 for _, n, m, g in seen)


# -- options, caps and a tiny comparison ------------------------------------------------------------

def test_flow_work_cap_says_what_to_change():
    o = G.GradientOptions(depth=limits.MAX_FLOW_DEPTH, width=limits.MAX_FLOW_WIDTH, steps=limits.MAX_FLOW_STEPS)
    [problem] = G.flow_problems(o)
    assert problem.level == "error" and "Use fewer layers, fewer units or fewer steps" in problem.message
    assert not G.flow_problems(G.GradientOptions())
    assert limits.flow_work(20, 64, 200) is None  # the default fits


def test_flow_options_travel_in_the_url():
    o = G.GradientOptions(depth=50, width=128, activation="sigmoid", gain=0.2, flow_norm="rms", steps=1000, flow_lr=1.0)
    query = o.to_query()
    assert query["g_depth"] == "50" and query["g_act"] == "sigmoid" and query["g_fnorm"] == "rms"
    back, messages = G.GradientOptions.from_query(query)
    assert back == o and not messages
    assert back.flow() == flow.FlowSettings(50, 128, "sigmoid", 0.2, "rms", 1000, 1.0)


def test_a_tiny_comparison_profiles_both_runs_at_init_and_after_training():
    s = flow.FlowSettings(depth=3, width=16, steps=12, activation="sigmoid")
    seen = []
    r = flow.compare(s, on_progress=seen.append)
    assert set(r.status) == {"batch", "none"} and not any(r.status.values())
    assert r.profiles.groupby(["run", "when"]).size().to_dict() == {
        ("batch", "init"): 3, ("batch", "trained"): 3, ("none", "init"): 3, ("none", "trained"): 3}
    assert r.profiles.saturation_pct.notna().all()
    assert r.histories.groupby("run").step.max().to_dict() == {"batch": 12, "none": 12}
    assert r.histories.p50.notna().all()  # the loop's pre-activation probe ran
    assert seen and 0 < seen[0] and seen[-1] == pytest.approx(1.0)
    assert set(r.ratios().columns) == {"run", "when", "activation grad first/last", "weight grad first/last"}
    init = r.profiles[(r.profiles.run == "batch") & (r.profiles.when == "init")]
    assert init.act_mean.abs().max() < 0.6 and init.weight_grad_std.gt(0).all()
