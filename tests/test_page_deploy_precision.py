"""The Deploy & port page's Precision tab through AppTest: its controls at their extremes, and
what is shown (the charts' rows, the flagged inputs, the overflow, the why per method)."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from normcore.lab import limits
from tests import apptest_pages
from tests.apptest_pages import chart_rows, texts

PAGE = "pages/deploy_port.py"
TAB = "🎯 Precision"


def open_tab(**query) -> AppTest:
    return apptest_pages.open_page(PAGE, 120, deploy_tab=TAB, **query)




def test_defaults_show_every_method_its_algorithm_and_the_overflow():
    at = open_tab()
    assert len(at.get("vega_lite_chart")) == 2
    rows = chart_rows(at)
    assert rows["method"].nunique() == 10 and rows["offset"].max() == 1e8
    shown = texts(at.markdown)
    for algorithm in ("two-pass in a double accumulator", "Welford with cascade sums", "shifted moments",
                      "catastrophic cancellation", "no mean is subtracted"):
        assert algorithm in shown, algorithm
    assert "float16 overflow" in shown and "accumulating in float32" in shown
    assert "Negative variances" in texts(at.warning)
    assert "at 1e+08 (constant)" in texts(at.caption)


def test_extremes_of_every_control():
    at = open_tab(x_dtype="float16", x_view="std", x_offset="1e6", x_points=limits.MAX_PRECISION_POINTS_PER_DECADE,
                  x_eps="1e-12")
    rows = chart_rows(at)
    assert rows["std"].min() == 1e-6 and (rows["input"] == "inf").any()  # 1e6 does not fit in float16
    assert "(inf)" in texts(at.caption)
    at.radio(key="precision_options.view").set_value("offset").run()
    at.slider(key="precision_options.per_decade").set_value(1).run()
    at.radio(key="precision_options.dtype").set_value("bfloat16").run()
    rows = chart_rows(at)
    assert not at.exception and rows["dtype"].eq("bfloat16").all() and rows["x"].nunique() == 10
    layers = {"normcore LayerNorm", "normcore GroupNorm(8)", "normcore RMSNorm"}  # beside torch's, in bfloat16 too
    assert layers < set(rows["label"]) and "the layer as shipped" in texts(at.markdown)
    assert "(constant)" in texts(at.caption)
    at.select_slider(key="precision_options.eps").set_value(1e-3).run()
    assert at.query_params["x_eps"] == "0.001"


def test_a_bad_url_parameter_is_named():
    at = open_tab(x_dtype="float8")
    assert "x_dtype" in texts(at.warning) and len(at.get("vega_lite_chart")) == 2
