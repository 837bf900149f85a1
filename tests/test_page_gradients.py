"""The Gradients page in AppTest: every control to its extremes without an exception, and what
the page shows (the max |Δ| and identity readouts, the tables, the charts, the messages)."""

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


def test_every_control_to_its_extremes():
    at = open_page(PAGE)
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
    for name, value in (("gamma", -3.0), ("gamma", 3.0), ("beta", -3.0), ("beta", 3.0)):
        at.slider(key=f"grad_{name}").set_value(value).run()
        assert_page_shows_both_parts(at)
    for eps in (1e-8, 1.0):
        at.select_slider(key="grad_eps").set_value(eps).run()
        assert_page_shows_both_parts(at)
    at.number_input(key="grad_seed").set_value(2**31 - 1).run()
    at.radio(key="grad_upstream").set_value("one_hot").run()
    assert_page_shows_both_parts(at)
    at.number_input(key="grad_n").set_value(4).run()
    at.number_input(key="grad_c").set_value(4).run()
    at.selectbox(key="grad_norm").set_value("group").run()
    for groups, ok in ((limits.MAX_GRADIENT_ELEMENTS, False), (3, False), (4, True), (1, True)):
        at.slider(key="grad_groups").set_value(groups).run()
        assert not at.exception
        if ok:
            assert_page_shows_both_parts(at)
        else:
            assert any("Valid G for 4 channels: 1, 2, 4" in e.value for e in at.error)
    at.selectbox(key="grad_norm").set_value("instance").run()
    at.number_input(key="grad_h").set_value(2).run()
    assert_page_shows_both_parts(at)
    assert at.query_params["g_norm"] == "instance" and at.query_params["g_input"] == "random"  # in the URL


def test_a_link_opens_the_page_as_it_describes_and_a_bad_value_is_explained():
    at = open_page(PAGE, g_norm="rms", g_eps="1e-2", g_n="999")
    assert not at.exception
    assert at.subheader[0].value == "RMSNorm on 5×5×1×1 (N×C×H×W)"
    assert any("g_n" in w.value for w in at.warning)
    assert_page_shows_both_parts(at)
