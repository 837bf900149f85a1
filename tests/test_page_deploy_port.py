"""The Deploy & port page's Port tab through AppTest: its controls at their extremes, the
copyable target code, the axis error, and both branches of the real-Keras button."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from streamlit.testing.v1 import AppTest

from normcore.lab import limits
from normcore.lab.experiments.deploy import port_keras as K
from tests import apptest_pages
from tests.apptest_pages import chart_rows, texts

PAGE = "pages/deploy_port.py"
TAB = "🔁 Port between frameworks"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def open_tab(**query) -> AppTest:
    """The page opened on the Port tab (the tab is bound to the URL's deploy_tab)."""
    return apptest_pages.open_page(PAGE, 120, deploy_tab=TAB, **query)




def test_defaults_then_each_setting_as_typed():
    at = open_tab(p_steps=10, p_depth=3)  # (the defaults, 6 × 50: in benchmarks/port_precision.py and the browser)
    assert len(at.get("vega_lite_chart")) == 2  # the BatchNorm stack and the eps stack
    assert "normcore.BatchNorm1d(16, eps=0.001, momentum=0.01, unbiased_running_var=False)" in texts(at.code)
    rows = chart_rows(at)
    assert set(rows["label"].dropna()) >= {"all converted", "momentum as typed", "eps as typed", "your choices"}
    converted = rows[rows["label"] == "all converted"]["difference"]
    assert converted.max() < 1e-4 and rows[rows["label"] == "eps as typed"]["difference"].min() > 1e-4
    at.radio(key="port_options.momentum").set_value("as_typed").run()
    at.radio(key="port_options.eps").set_value("as_typed").run()
    at.radio(key="port_options.variance").set_value("as_typed").run()
    assert "torch.nn.BatchNorm1d(16, eps=1e-05, momentum=0.99)" in texts(at.code)
    assert not at.error
    at.radio(key="port_options.axis").set_value("as_typed").run()
    assert "running_mean should contain 5 elements not 16" in texts(at.error) and "movedim(-1, 1)" in texts(at.success)
    assert at.query_params["p_momentum"] == "as_typed"
    at.selectbox(key="port_options.source").set_value("pytorch").run()
    at.selectbox(key="port_options.target").set_value("keras").run()
    assert "16 features along axis -1" in texts(at.error) and "axis=1" in texts(at.success)


def test_extremes_and_invalid_choices_say_what_to_change():
    at = open_tab(p_depth=limits.MAX_PORT_DEPTH, p_steps=limits.MAX_PORT_STEPS, p_ln_norm="layer", p_ln_eps="none")
    assert "Use fewer layers or fewer training steps" in texts(at.error)
    assert "Pick RMSNorm" in texts(at.error)
    assert len(at.get("vega_lite_chart")) == 0
    at.slider(key="port_options.steps").set_value(1).run()
    at.radio(key="port_eps_options.norm").set_value("rms").run()
    assert not at.error and len(at.get("vega_lite_chart")) == 2
    assert "torch.nn.RMSNorm(32, eps=None)" in texts(at.code) and "epsilon=1.1920929e-07" in texts(at.code)
    rows = chart_rows(at)
    assert rows["layer"].max() == limits.MAX_PORT_DEPTH
    at.selectbox(key="port_options.target").set_value("keras").run()  # = the source
    assert "Pick another target" in texts(at.error)
    at = open_tab(p_depth=1, p_steps=1, p_batch=2, p_source="d2l_0", p_target="d2l_1", p_ln_depth=limits.MAX_EPS_DEPTH,
                  p_ln_scale="1e-3")
    assert not at.error and len(at.get("vega_lite_chart")) == 2
    assert "momentum=0.1" in texts(at.code)  # d2l 0.x's 0.9 (old value) converted to 1.x's 0.1 (new value)


def test_a_bad_url_parameter_is_named():
    at = open_tab(p_source="jax")
    assert "p_source" in texts(at.warning)


def test_without_keras_the_page_says_so(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None if name == "keras" else real(name, *a, **k))
    at = open_tab(p_depth=2, p_steps=2)
    assert "Keras is not installed here" in texts(at.info)
    assert [b.key for b in at.button] == ["control_reset"]  # no Keras button


def test_the_keras_button_compares_in_a_child_process_beside_normcore():
    if not K.keras_available():
        pytest.skip("keras is not installed (requirements-dev.txt has it)")
    imported_before = "keras" in sys.modules  # the Keras tests, which import it here, run last (tests/conftest.py)
    at = open_tab(p_depth=2, p_steps=3)
    at.button(key="port_keras_button").click().run()
    assert not at.exception, at.exception
    assert "Real Keras 3." in texts(at.markdown) and len(at.get("vega_lite_chart")) == 3
    # Keras ran in its own process: imported here, Streamlit would clear its session (a full
    # gc.collect) after every later script run of every session.
    assert ("keras" in sys.modules) == imported_before
