"""The Gradients page's experiments: closed form vs autograd vs torch.nn, the identities against
float64 computed here, the Jacobian's block structure, the 1/N scaling and the batch-of-two limit.

Oracles are this file's own: torch.nn layers, and each norm's statistic groups taken by a reshape
(not the lab's ``statistic_ids`` grouping)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings, strategies as st

from normcore.lab import limits
from normcore.lab.experiments import gradients as G
from normcore.lab.experiments.gradients import backprop as B

NORMS = ("batch", "layer", "group", "instance", "rms")
RANDOM = G.GradientOptions(input="random", n=4, c=4, h=2, w=2, groups=2, gamma=1.5, beta=-0.5, seed=3)


def torch_layer(o: G.GradientOptions) -> torch.nn.Module:
    n, c, h, w = o.shape
    layer = {
        "batch": lambda: torch.nn.BatchNorm2d(c, eps=o.eps),
        "instance": lambda: torch.nn.InstanceNorm2d(c, eps=o.eps, affine=True),
        "layer": lambda: torch.nn.LayerNorm((c, h, w), eps=o.eps),
        "group": lambda: torch.nn.GroupNorm(o.groups, c, eps=o.eps),
        "rms": lambda: torch.nn.RMSNorm((c, h, w), eps=o.eps),
    }[o.norm]().double()
    with torch.no_grad():
        layer.weight.fill_(o.gamma)
        if getattr(layer, "bias", None) is not None:
            layer.bias.fill_(o.beta)
    return layer


def torch_dx(o: G.GradientOptions) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x, dy and torch.nn's dx, float64."""
    x, dy = B.make_input(o), B.make_upstream(o)
    xg = x.clone().requires_grad_(True)
    torch_layer(o)(xg).backward(dy)
    return x, dy, xg.grad


def rows(t: torch.Tensor, o: G.GradientOptions) -> torch.Tensor:
    """``t`` as (groups, M): each row the values that share one statistic."""
    n, c, h, w = o.shape
    if o.norm == "batch":
        return t.transpose(0, 1).reshape(c, -1)
    if o.norm in ("layer", "rms"):
        return t.reshape(n, -1)
    if o.norm == "instance":
        return t.reshape(n * c, -1)
    return t.reshape(n * o.groups, -1)


def for_norm(norm: str, **changes) -> G.GradientOptions:
    return replace(RANDOM, norm=norm, **changes)


# -- options, input and problems ------------------------------------------------------------


def test_the_default_is_the_worked_example_normalized_to_plus_minus_root_two():
    o = G.GradientOptions()
    assert o.shape == (5, 5, 1, 1) and not G.problems(o)
    x = B.make_input(o).reshape(5, 5)
    assert torch.equal(x[:, 2], torch.tensor([3.0, 6, 9, 12, 15], dtype=torch.float64))
    y = G.backprop_view(o).values.y.to_numpy().reshape(5, 5)
    expected = torch.tensor([-2, -1, 0, 1, 2], dtype=torch.float64) / 2**0.5
    for k in range(5):
        assert y[:, k] == pytest.approx(expected.numpy(), abs=2e-5)


def test_options_travel_in_the_url_and_a_bad_value_says_so():
    o = replace(RANDOM, norm="rms", eps=1e-2, upstream="ones", mode="eval")
    back, messages = G.GradientOptions.from_query(o.to_query())
    assert back == o and not messages
    assert all(name.startswith("g_") for name in G.FIELDS.url_names)
    _, messages = G.GradientOptions.from_query({"g_n": "999"})
    assert "g_n" in messages[0]


@pytest.mark.parametrize("changes, words", [
    (dict(norm="group", c=4, groups=3), "Valid G for 4 channels: 1, 2, 4"),
    (dict(norm="batch", n=1, h=1, w=1), "more than one value per channel"),
    (dict(norm="group", n=1, c=2, groups=2, h=1, w=1), "more than one value per group"),
    (dict(norm="instance", h=1, w=1), "more than one value per map"),
    (dict(n=8, c=4, h=2, w=2), f"cap of {limits.MAX_GRADIENT_ELEMENTS}"),
])
def test_invalid_combinations_are_problems_that_say_what_to_change(changes, words):
    problems = G.problems(replace(RANDOM, **changes))
    assert any(p.level == "error" and words in p.message for p in problems)


# -- closed form vs autograd vs torch.nn ----------------------------------------------------


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("upstream", ("random", "one_hot", "ones"))
def test_closed_form_matches_autograd_and_torch_nn(norm, upstream):
    o = for_norm(norm, upstream=upstream)
    view = G.backprop_view(o)
    _, _, expected = torch_dx(o)
    assert set(view.max_delta) == ({"dx", "dγ"} if norm == "rms" else {"dx", "dγ", "dβ"})
    assert max(view.max_delta.values()) < 1e-12 and max(view.max_delta_torch.values()) < 1e-12
    assert view.values.dx_closed_form.to_numpy() == pytest.approx(expected.reshape(-1).numpy(), abs=1e-12)
    assert view.values.dx_autograd.to_numpy() == pytest.approx(expected.reshape(-1).numpy(), abs=1e-12)


@pytest.mark.parametrize("norm", NORMS)
def test_the_terms_assemble_to_torch_nn_gradient(norm):
    o = for_norm(norm)
    x, dy, expected = torch_dx(o)
    graph, _ = B.autograd_grads(x, dy, o)
    assert torch.allclose(B.closed_form_terms(graph, dy, o)["dx"], expected, atol=1e-12)


def test_all_ones_upstream_gives_batchnorm_a_zero_dx():
    view = G.backprop_view(for_norm("batch", upstream="ones"))
    assert abs(view.values.dx_closed_form).max() < 1e-14


# -- the identities, against float64 computed here --------------------------------------------


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("eps", (1e-5, 1e-2, 1.0))
def test_identities_per_group_including_the_eps_term(norm, eps):
    o = for_norm(norm, eps=eps)
    x, dy, dx = torch_dx(o)
    xr, dxr, dyr = rows(x, o), rows(dx, o), rows(dy, o)
    if norm == "rms":
        var = (xr * xr).mean(1, keepdim=True)
        x_hat = xr / (var + eps).sqrt()
    else:
        var = xr.var(1, unbiased=False, keepdim=True)
        x_hat = (xr - xr.mean(1, keepdim=True)) / (var + eps).sqrt()
    istd = (var + eps).rsqrt().squeeze(1)
    predicted = istd * (o.gamma * dyr * x_hat).sum(1) * eps / (var.squeeze(1) + eps)
    measured = (dxr * x_hat).sum(1)
    assert torch.allclose(measured, predicted, rtol=1e-9, atol=1e-14)
    groups = G.backprop_view(o).groups
    assert groups["Σ(dx·x̂)"].to_numpy() == pytest.approx(measured.numpy(), rel=1e-9, abs=1e-14)
    assert groups["istd·Σ(dx̂·x̂)·ε/(σ²+ε)"].to_numpy() == pytest.approx(predicted.numpy(), rel=1e-9, abs=1e-14)
    if norm != "rms":
        assert groups["Σdx"].abs().max() < 1e-13
        assert dxr.sum(1).abs().max() < 1e-13
    else:  # RMSNorm keeps only the second identity
        assert dxr.sum(1).abs().max() > 1e-3


def test_the_eps_term_grows_as_eps_nears_the_variance():
    sweep = G.identity_vs_eps(G.GradientOptions())
    g0 = sweep[sweep.group == 0].set_index("eps")
    assert g0.variance.iloc[0] == pytest.approx(2.0)  # column 1 of the worked example: 1..5
    assert abs(g0.measured[1.0]) > 1e3 * abs(g0.measured[1e-5])
    assert g0.measured.to_numpy() == pytest.approx(g0.predicted.to_numpy(), rel=1e-8)


# -- the Jacobian ------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", NORMS)
def test_block_structure_per_norm(norm):
    blocks = G.coupling_view(for_norm(norm))
    assert blocks.max_within > 0.1
    if norm == "batch":
        assert blocks.max_across > 1e-3
    else:  # one block per sample
        assert blocks.max_across == 0.0
    assert len(blocks.frame) == RANDOM.n ** 2 * (RANDOM.c * RANDOM.h * RANDOM.w) ** 2


def test_jacobian_matches_torch_nn_and_leaves_running_stats_alone():
    o = for_norm("batch")
    x = B.make_input(o)
    layer = B.build_layer(o)
    with torch.no_grad():
        layer(x)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    jac = G.jacobian(layer, x, "train")
    after = layer.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    expected = torch.autograd.functional.jacobian(torch_layer(o), x).reshape(x.numel(), x.numel())
    assert torch.allclose(jac, expected, atol=1e-12)


def test_eval_mode_coupling_vanishes_and_is_diagonal():
    o = for_norm("batch", mode="eval")
    blocks = G.coupling_view(o)
    assert blocks.max_across == 0.0
    x = B.make_input(o)
    var = x.transpose(0, 1).reshape(o.c, -1).var(1, unbiased=True)  # running var after momentum 1
    frame = blocks.frame
    off_diagonal = frame[frame.i != frame.j]
    assert off_diagonal.value.abs().max() == 0.0
    diagonal = frame[frame.i == frame.j].value.to_numpy().reshape(o.shape)
    for c in range(o.c):
        assert diagonal[:, c] == pytest.approx(o.gamma / (var[c].item() + o.eps) ** 0.5, rel=1e-12)


def test_cross_sample_entries_shrink_like_one_over_n_and_the_total_does_not():
    sweep = G.coupling_vs_batch_size(G.GradientOptions()).set_index("N")
    assert sweep["mean |cross-sample entry|"].to_numpy() == pytest.approx(
        sweep["theory −γ·istd·(1+x̂ᵢx̂ⱼ)/N"].to_numpy(), rel=1e-9)
    scaled = sweep["mean |cross-sample entry|"][sweep.index >= 8] * sweep.index[sweep.index >= 8]
    assert scaled.max() / scaled.min() < 2  # ~ 1/N
    assert sweep["mean |cross-sample entry|"][64] < sweep["mean |cross-sample entry|"][8] / 4
    assert sweep["total from batch-mates"][64] > 0.5 * sweep["total from batch-mates"][8]


def test_cross_sample_entry_formula_on_one_channel():
    o = G.GradientOptions(input="random", n=6, c=1, h=1, w=1, gamma=0.7, eps=1e-3)
    x = B.make_input(o).reshape(-1)
    jac = torch.autograd.functional.jacobian(torch_layer(o), x.view(6, 1, 1, 1)).reshape(6, 6)
    var = x.var(unbiased=False)
    x_hat = (x - x.mean()) / (var + o.eps).sqrt()
    formula = -o.gamma / (var + o.eps).sqrt() * (1 + torch.outer(x_hat, x_hat)) / 6
    off = ~torch.eye(6, dtype=torch.bool)
    assert torch.allclose(jac[off], formula[off], atol=1e-12)  # the formula holds for torch.nn
    assert torch.allclose(torch.tensor(G.coupling_view(o).frame.value.to_numpy()).view(6, 6)[off], formula[off], atol=1e-12)


def test_batch_of_two_is_plus_minus_one_up_to_eps_and_carries_no_information():
    eps = 1e-5
    table = G.batch_of_two(G.GradientOptions(eps=eps)).set_index("d")
    for d, row in table.iterrows():
        assert row["y₁ measured"] == pytest.approx(d / (d * d + eps) ** 0.5, rel=1e-9)
        assert row["max |∂y/∂x|"] == pytest.approx(eps / (2 * (d * d + eps) ** 1.5), rel=1e-6)
    assert table["max |∂y/∂x|"][1.0] < 1e-5


# -- over shapes and norms ---------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(norm=st.sampled_from(NORMS), n=st.integers(1, 4), c=st.sampled_from([1, 2, 4]), h=st.integers(1, 3),
       w=st.integers(1, 2), eps=st.sampled_from([1e-5, 1e-2, 1.0]), upstream=st.sampled_from(["random", "one_hot"]))
def test_closed_form_and_identities_over_shapes(norm, n, c, h, w, eps, upstream):
    o = G.GradientOptions(input="random", norm=norm, n=n, c=c, h=h, w=w, eps=eps, groups=min(2, c), upstream=upstream)
    if G.problems(o):
        return
    view = G.backprop_view(o)
    assert max(view.max_delta.values()) < 1e-10 and max(view.max_delta_torch.values()) < 1e-10
    assert view.max_identity_gap < 1e-10
    if norm != "batch":
        assert G.coupling_view(o).max_across == 0.0
