"""Part 4 of the Gradients page (normcore.lab.experiments.gradients.landscape / .slices):
Santurkar et al.'s measures on a quadratic whose smoothness is known, the slices on a function
with a known minimum, Li et al.'s filter normalization, the train-mode loss on copied buffers,
and a tiny run end to end. Oracles are closed forms in float64 numpy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from normcore.lab import limits, models
from normcore.lab.experiments import gradients as G
from normcore.lab.experiments.gradients import landscape as L
from normcore.lab.experiments.gradients import slices


def _quadratic(a: np.ndarray):
    """L(w) = ½ wᵀAw and ∇L = Aw, on Params {"w": tensor} in float64."""
    at = torch.from_numpy(a)

    def loss_and_grad(p):
        w = p["w"]
        return float(0.5 * w @ at @ w), {"w": at @ w}
    return loss_and_grad


def _rotated(eigenvalues, seed=0) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(len(eigenvalues),) * 2))
    return q @ np.diag(eigenvalues) @ q.T


def test_the_three_measures_on_a_quadratic_with_known_smoothness():
    a = _rotated([10.0, 1.0, 0.5])
    w = np.linalg.eigh(a)[1] @ np.ones(3)  # equal weight on every eigenvector
    g = a @ w
    lr, scales = 0.01, (0.5, 1.0, 2.0, 4.0)
    got = L.smoothness(_quadratic(a), {"w": torch.from_numpy(w)}, {"w": torch.from_numpy(g)}, lr, scales)
    moved = [w - lr * s * g for s in scales]
    losses = [0.5 * m @ a @ m for m in moved]
    changes = [np.linalg.norm(g - a @ m) for m in moved]  # = η·s·‖A g‖
    assert got["loss_min"] == pytest.approx(min(losses), rel=1e-12)
    assert got["loss_max"] == pytest.approx(max(losses), rel=1e-12)
    assert got["grad_change_min"] == pytest.approx(lr * 0.5 * np.linalg.norm(a @ g), rel=1e-12)
    assert got["grad_change_max"] == pytest.approx(max(changes), rel=1e-12)
    # ‖A g‖/‖g‖ with g = A·(1,1,1) in the eigenbasis: √(10⁴+1+0.5⁴)/√(10²+1+0.5²)
    assert got["beta"] == pytest.approx(np.sqrt(1e4 + 1 + 0.5 ** 4) / np.sqrt(100 + 1 + 0.25), rel=1e-12)
    assert 9.9 < got["beta"] <= 10.0  # ≤ the largest eigenvalue, and close to it


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0.01, 100.0), min_size=2, max_size=6), st.integers(0, 10_000))
def test_effective_smoothness_never_exceeds_the_largest_eigenvalue(eigenvalues, seed):
    a = _rotated(eigenvalues, seed)
    w = np.random.default_rng(seed + 1).normal(size=len(eigenvalues))
    got = L.smoothness(_quadratic(a), {"w": torch.from_numpy(w)}, {"w": torch.from_numpy(a @ w)}, 0.01)
    assert min(eigenvalues) * (1 - 1e-9) <= got["beta"] <= max(eigenvalues) * (1 + 1e-9)


def _bowl(minimum):
    """L(w) = ‖w − m‖² over two tensors, whose minimum is m."""
    def loss(p):
        return float(sum(((p[n] - minimum[n]) ** 2).sum() for n in minimum))
    return loss


def test_the_line_slice_finds_a_known_minimum():
    m = {"a": torch.tensor([1.0, -2.0], dtype=torch.float64), "b": torch.tensor([[0.5]], dtype=torch.float64)}
    start = {"a": torch.tensor([4.0, 2.0], dtype=torch.float64), "b": torch.tensor([[-1.5]], dtype=torch.float64)}
    line = slices.line_slice(_bowl(m), start, m, slices.grid(21, -0.5, 1.5))
    distance2 = 3.0 ** 2 + 4.0 ** 2 + 2.0 ** 2
    np.testing.assert_allclose(line.loss, (1 - line.alpha) ** 2 * distance2, rtol=1e-12, atol=1e-12)
    best = line.loc[line.loss.idxmin()]
    assert best.alpha == pytest.approx(1.0) and best.loss == pytest.approx(0.0, abs=1e-24)


def test_the_plane_slice_is_a_bowl_around_its_centre():
    m = {"w": torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)}
    d1, d2 = {"w": torch.tensor([2.0, 0.0, 0.0], dtype=torch.float64)}, {"w": torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64)}
    plane = slices.plane_slice(_bowl(m), m, d1, d2, slices.grid(5))
    np.testing.assert_allclose(plane.loss, 4 * plane.a ** 2 + 0.25 * plane.b ** 2, rtol=1e-12, atol=1e-15)
    best = plane.loc[plane.loss.idxmin()]
    assert (best.a, best.b, best.loss) == (0.0, 0.0, 0.0)
    assert len(plane) == 25


def test_filter_normalization_matches_each_filters_norm_and_leaves_1d_parameters_alone():
    weights = {"w": torch.tensor([[3.0, 4.0], [0.0, 1.0]]), "conv": torch.ones(2, 1, 2, 2) * torch.tensor([1.0, 2.0]).view(2, 1, 1, 1),
               "bias": torch.tensor([1.0, 2.0]), "bn.weight": torch.ones(2)}
    raw = {"w": torch.tensor([[1.0, 0.0], [2.0, 2.0]]), "conv": torch.arange(8.0).view(2, 1, 2, 2) + 1,
           "bias": torch.tensor([5.0, 5.0]), "bn.weight": torch.tensor([1.0, 1.0])}
    d = slices.filter_normalized(raw, weights)
    torch.testing.assert_close(d["w"], torch.tensor([[5.0, 0.0], [np.sqrt(0.5), np.sqrt(0.5)]], dtype=torch.float32))
    torch.testing.assert_close(d["conv"].flatten(1).norm(dim=1), torch.tensor([2.0, 4.0]))  # ‖filter‖: 2 and 4
    assert not d["bias"].any() and not d["bn.weight"].any()
    again = slices.random_direction(weights, seed=5)
    assert all(torch.equal(again[n], slices.random_direction(weights, seed=5)[n]) for n in weights)


def test_the_slice_loss_runs_batchnorm_in_train_mode_on_copies_of_its_buffers():
    model = models.make_model("mlp", norm="batch", width=8, depth=2, seed=0)
    x, y = torch.randn(16, 1, 8, 8) * 3 + 1, torch.arange(16) % 10
    before = {n: b.clone() for n, b in model.named_buffers()}
    loss = slices.model_loss(model, x, y)(slices.params_of(model))
    _, grads = slices.model_loss_and_grad(model, x, y)(slices.params_of(model))
    assert all(torch.equal(b, before[n]) for n, b in model.named_buffers())  # running statistics untouched
    manual = torch.nn.functional.cross_entropy(model.train()(x), y)  # (this one updates them, last)
    assert loss == pytest.approx(float(manual.detach()), rel=1e-6)
    manual.backward()
    torch.testing.assert_close(grads["head.weight"], model.head.weight.grad)


def test_band_widths_and_the_sentence_from_a_hand_made_frame():
    bands = pd.DataFrame(dict(step=[0, 10, 0, 10], run=["batch", "batch", "none", "none"],
                              loss_min=[1.0, 0.5, 1.0, 0.5], loss_max=[1.5, 0.7, 3.0, 4.5],
                              grad_change_min=[0.0, 0.0, 1.0, 1.0], grad_change_max=[1.0, 1.0, 5.0, 3.0],
                              beta=[2.0, 4.0, 6.0, 12.0]))
    w = L.band_widths(bands).set_index("run")
    assert w.loc["batch"].tolist() == pytest.approx([0.35, 1.0, 3.0, 4.0])
    assert w.loc["none"].tolist() == pytest.approx([3.0, 3.0, 9.0, 12.0])
    text = L.band_sentence(w.reset_index())
    assert "loss band is 8.6× narrower with BatchNorm" in text and "β-smoothness is 3× smaller" in text


def test_a_tiny_run_probes_every_kth_step_and_slices_both_networks():
    s = L.LandscapeSettings(steps=20, every=10, resolution=5)
    seen = []
    r = L.compare(s, on_progress=seen.append)
    assert r.bands.groupby("run").step.apply(list).to_dict() == {"batch": [0, 10], "none": [0, 10]}
    assert (r.bands.loss_max >= r.bands.loss_min).all() and (r.bands.beta > 0).all()
    assert r.line.groupby("run").size().to_dict() == {"batch": 7, "none": 7}  # α = −0.25, 0, …, 1.25
    assert r.plane.groupby("run").size().to_dict() == {"batch": 25, "none": 25}
    for run in L.RUNS:  # the plane's centre and the line's end are the same trained weights on the same batch
        centre = r.plane[(r.plane.run == run) & (r.plane.a == 0) & (r.plane.b == 0)].loss.item()
        end = r.line[(r.line.run == run) & (r.line.alpha == 1.0)].loss.item()
        assert centre == pytest.approx(end, rel=1e-5)
    assert seen[-1] == pytest.approx(1.0)


def test_probe_points_and_slice_resolution_are_capped():
    o = G.GradientOptions(land_steps=limits.MAX_LANDSCAPE_STEPS, land_every=1)
    [problem] = G.landscape_problems(o)
    assert problem.level == "error" and "Probe less often" in problem.message
    assert not G.landscape_problems(G.GradientOptions())
    assert G.FIELDS["resolution"].high == limits.MAX_SLICE_RESOLUTION
    back, messages = G.GradientOptions.from_query({"g_res": str(limits.MAX_SLICE_RESOLUTION + 2)})
    assert back.resolution == G.FIELDS["resolution"].default and messages
