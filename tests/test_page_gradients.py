"""The Gradients page in AppTest: every control to its extremes without an exception, and what
the page shows (the max |Δ| and identity readouts, the tables, the charts, the messages).
Parts 1–2 share the first tab; parts 3–4 (training) run on tiny configurations given in the URL."""

from __future__ import annotations

import pytest

from normcore.lab import limits
from tests.apptest_pages import open_page

PAGE = "pages/gradients.py"


def metrics(at) -> dict[str, float]:
    return {m.label: float(m.value) for m in at.metric}


def assert_page_shows_both_parts(at) -> None:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    shown = metrics(at)
    deltas = [v for k, v in shown.items() if k.startswith("max |Δ|")]
    assert deltas and max(deltas) < 1e-12  # closed form vs autograd, float64
    assert shown["max |Σ(dx·x̂) − istd·Σ(dx̂·x̂)·ε/(σ²+ε)|"] < 1e-12
    assert len(at.get("vega_lite_chart")) == 3  # identity vs eps, the Jacobian, coupling vs N
    assert len(at.get("graphviz_chart")) == 1
    assert [h.value for h in at.header] == ["1 · Backprop, step by step", "2 · How samples couple"]


def set_values(at, *changes):
    """Set several widgets (kind, key, value), then rerun once: each on_change commits its own."""
    for kind, key, value in changes:
        getattr(at, kind)(key=key).set_value(value)
    at.run()


@pytest.fixture(scope="module")
def at():
    return open_page(PAGE)


def test_default_is_the_worked_example_with_batchnorm(at):
    assert_page_shows_both_parts(at)
    assert at.subheader[0].value == "BatchNorm on 5×5×1×1 (N×C×H×W)"
    assert any("shared controls" in i.value and "do not apply here" in i.value for i in at.info)
    values = at.dataframe[0].value
    assert values.y[values.c == 0].round(3).tolist() == [-1.414, -0.707, 0.0, 0.707, 1.414]
    shown = metrics(at)
    assert shown["max |Σ(dx·x̂) − istd·Σ(dx̂·x̂)·ε/(σ²+ε)|"] < 1e-12
    assert shown["max over groups |Σdx|"] < 1e-12
    assert shown["max |entry| across samples"] > 0.1  # BatchNorm couples the samples
    assert "normcore/backward.py" in " ".join(m.value for m in at.markdown)


def test_all_ones_upstream_explains_batchnorms_zero_dx(at):
    at.radio(key="grad_upstream").set_value("ones").run()
    assert_page_shows_both_parts(at)
    assert abs(at.dataframe[0].value.dx_closed_form).max() < 1e-14
    assert any("undone by subtracting the mean" in m.value for m in at.markdown)
    at.radio(key="grad_upstream").set_value("random").run()


@pytest.mark.parametrize("norm", ["layer", "group", "rms", "batch"])
def test_every_norm_on_the_worked_example(at, norm):
    at.selectbox(key="grad_norm").set_value(norm).run()
    assert_page_shows_both_parts(at)
    across = metrics(at)["max |entry| across samples"]
    assert (across > 0.1) if norm == "batch" else across == 0.0
    if norm == "rms":
        assert not any(m.label == "max |Δ| dβ" for m in at.metric)  # RMSNorm has no β
        assert metrics(at)["max over groups |Σdx|"] > 1e-3  # no mean: Σdx ≠ 0


def test_eval_mode_has_no_coupling(at):
    at.radio(key="grad_mode").set_value("eval").run()
    assert_page_shows_both_parts(at)
    assert metrics(at)["max |entry| across samples"] == 0.0
    assert any("The coupling vanishes" in m.value for m in at.markdown)
    at.radio(key="grad_mode").set_value("train").run()


def test_instance_norm_on_the_worked_example_says_what_to_change(at):
    at.selectbox(key="grad_norm").set_value("instance").run()
    assert not at.exception
    assert any("Raise H or W" in e.value for e in at.error)
    assert not at.get("vega_lite_chart")
    at.selectbox(key="grad_norm").set_value("batch").run()


def test_every_control_to_its_extremes(at):  # last on the shared session: it leaves its state behind
    at.radio(key="grad_input").set_value("random").run()
    assert_page_shows_both_parts(at)
    for name in ("n", "c", "h", "w"):
        at.number_input(key=f"grad_{name}").set_value(limits.MAX_GRADIENT_ELEMENTS).run()
        o = at.session_state["gradient_options"]
        if o.n * o.c * o.h * o.w > limits.MAX_GRADIENT_ELEMENTS:
            assert not at.exception
            assert any(f"cap of {limits.MAX_GRADIENT_ELEMENTS}" in e.value for e in at.error)
        else:  # 64 values along one axis alone: exactly at the cap
            assert_page_shows_both_parts(at)
        at.number_input(key=f"grad_{name}").set_value(1).run()
        assert not at.exception
    # now (1, 1, 1, 1): BatchNorm cannot train on one value per channel
    assert any("more than one value per channel" in e.value for e in at.error)
    at.number_input(key="grad_n").set_value(limits.MAX_GRADIENT_ELEMENTS).run()  # 64 samples of one value
    assert_page_shows_both_parts(at)
    # γ and β each reach both ends (two at a time), and eps both ends of its scale
    for gamma, beta, eps in ((-3.0, 3.0, 1e-8), (3.0, -3.0, 1.0)):
        set_values(at, ("slider", "grad_gamma", gamma), ("slider", "grad_beta", beta), ("select_slider", "grad_eps", eps))
        assert_page_shows_both_parts(at)
        o = at.session_state["gradient_options"]
        assert (o.gamma, o.beta, o.eps) == (gamma, beta, eps)
    set_values(at, ("number_input", "grad_seed", 2**31 - 1), ("radio", "grad_upstream", "one_hot"))
    assert_page_shows_both_parts(at)
    set_values(at, ("number_input", "grad_n", 4), ("number_input", "grad_c", 4), ("selectbox", "grad_norm", "group"))
    for groups, ok in ((limits.MAX_GRADIENT_ELEMENTS, False), (3, False), (4, True), (1, True)):
        at.slider(key="grad_groups").set_value(groups).run()
        assert not at.exception
        if ok:
            assert_page_shows_both_parts(at)
        else:
            assert any("Valid G for 4 channels: 1, 2, 4" in e.value for e in at.error)
    set_values(at, ("selectbox", "grad_norm", "instance"), ("number_input", "grad_h", 2))
    assert_page_shows_both_parts(at)
    assert at.query_params["g_norm"] == "instance" and at.query_params["g_input"] == "random"  # in the URL


def test_a_link_opens_the_page_as_it_describes_and_a_bad_value_is_explained():
    at = open_page(PAGE, g_norm="rms", g_eps="1e-2", g_n="999")
    assert not at.exception
    assert at.subheader[0].value == "RMSNorm on 5×5×1×1 (N×C×H×W)"
    assert any("g_n" in w.value for w in at.warning)
    assert_page_shows_both_parts(at)


# -- parts 3 and 4: tiny trainings, every control to its extremes ----------------------------------

TINY = dict(g_depth=3, g_width=16, g_steps=10, g_lsteps=20, g_every=10, g_res=5)
FLOW_TAB, LANDSCAPE_TAB = "3 · Gradient flow in depth", "4 · The landscape"


@pytest.fixture(scope="module")
def deep():
    return open_page(PAGE, timeout=120, **TINY)


def open_tab(at, title):
    at.session_state["gradient_part"] = title
    at.run()
    assert not at.exception, at.exception
    return at


def assert_flow_shown(at, charts: int, runs: int = 2) -> None:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert [h.value for h in at.header] == ["3 · Gradient flow in depth"]
    assert len(at.get("vega_lite_chart")) == charts
    ratios = at.dataframe[0].value
    assert len(ratios) == 2 * runs and set(ratios.when) == {"init", "trained"}
    words = " ".join(m.value for m in at.markdown)
    assert words.count("std at layer 1 is") == 4 * runs  # two series × init/trained, per run


def test_part_three_shows_the_measured_profile(deep):
    at = open_tab(deep, FLOW_TAB)
    assert_flow_shown(at, charts=7)  # 2 gradients, mean, std, saturation, update:data, percentiles
    words = " ".join(m.value for m in at.markdown)
    assert "Yang et al. 2019 predict for BatchNorm at initialization" in words
    assert "at layer 3" in words  # the tiny URL config: depth 3
    assert at.session_state["gradient_options"].depth == 3


def test_part_three_controls_to_their_extremes(deep):
    at = open_tab(deep, FLOW_TAB)
    for changes, charts, runs in (
            ((("slider", "grad_depth", 50),), 7, 2),
            ((("slider", "grad_depth", 2), ("slider", "grad_width", 128)), 7, 2),
            ((("slider", "grad_width", 8), ("slider", "grad_steps", 100)), 7, 2),  # 1000: at the cap check below
            ((("slider", "grad_steps", 10), ("slider", "grad_gain", 0.2), ("radio", "grad_activation", "relu")), 6, 2),  # no saturation for ReLU
            ((("slider", "grad_gain", 5.0), ("radio", "grad_activation", "sigmoid")), 7, 2),
            ((("selectbox", "grad_flow_norm", "layer"), ("select_slider", "grad_flow_lr", 0.001)), 7, 2),
            ((("selectbox", "grad_flow_norm", "group"),), 7, 2),
            ((("selectbox", "grad_flow_norm", "rms"), ("select_slider", "grad_flow_lr", 1.0)), 7, 2),
            ((("selectbox", "grad_flow_norm", "none"),), 7, 1)):
        set_values(at, *changes)
        assert not at.exception, (changes, at.exception)
        if not any("diverged" in w.value for w in at.warning):
            assert_flow_shown(at, charts, runs)
    assert at.query_params["g_fnorm"] == "none" and at.query_params["g_act"] == "sigmoid"
    set_values(at, ("slider", "grad_depth", limits.MAX_FLOW_DEPTH), ("slider", "grad_width", limits.MAX_FLOW_WIDTH),
               ("slider", "grad_steps", limits.MAX_FLOW_STEPS))
    assert not at.exception
    assert any(f"cap of {limits.MAX_FLOW_WORK:,}" in e.value and "fewer steps" in e.value for e in at.error)
    assert not at.get("vega_lite_chart")
    set_values(at, ("slider", "grad_depth", 3), ("slider", "grad_width", 16), ("slider", "grad_steps", 10))


def test_stop_waits_for_run(deep):
    at = open_tab(deep, FLOW_TAB)
    at.button(key="grad_stop_flow").click().run()
    assert any("Stopped" in i.value for i in at.info) and not at.get("vega_lite_chart")
    at.button(key="grad_run_flow").click().run()
    assert not at.exception and at.get("vega_lite_chart")


def assert_landscape_shown(at) -> None:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert [h.value for h in at.header] == ["4 · The landscape"]
    assert len(at.get("vega_lite_chart")) == 6  # 3 bands, the line, 2 planes
    assert set(at.dataframe[0].value.run) == {"batch", "none"}
    words = " ".join(m.value for m in at.markdown)
    assert "Measured here: the loss band is" in words and "Fig. 4" in words and "Li et al. 2018" in words
    assert any("in train mode on one fixed batch" in i.value for i in at.info)


def test_part_four_controls_to_their_extremes(deep):
    at = open_tab(deep, LANDSCAPE_TAB)
    assert_landscape_shown(at)
    for changes in ((("slider", "grad_resolution", limits.MAX_SLICE_RESOLUTION), ("select_slider", "grad_land_lr", 0.001)),
                    (("slider", "grad_resolution", 5), ("select_slider", "grad_land_lr", 1.0), ("slider", "grad_land_every", 1)),
                    (("slider", "grad_land_every", 100), ("slider", "grad_land_steps", 10))):
        set_values(at, *changes)
        assert not at.exception, (changes, at.exception)
        if not any("diverged" in w.value for w in at.warning):
            assert_landscape_shown(at)
    assert any("Probing every 100 steps in a run of 10 steps" in w.value for w in at.warning)
    set_values(at, ("slider", "grad_land_steps", limits.MAX_LANDSCAPE_STEPS), ("slider", "grad_land_every", 1))
    assert any(f"cap of {limits.MAX_PROBE_POINTS}" in e.value and "Probe less often" in e.value for e in at.error)
    assert not at.get("vega_lite_chart")
    assert at.query_params["g_lsteps"] == str(limits.MAX_LANDSCAPE_STEPS)
